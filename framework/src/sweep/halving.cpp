#include "sweep/halving.h"

#include <algorithm>
#include <fmt/format.h>
#include <optional>
#include <toml++/toml.h>
#include <unistd.h>

#include "difflab/error.h"
#include "results/merge.h"
#include "results/results_store.h"
#include "sweep/adaptive.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

const AdaptiveSweep& halving_of(const Manifest& manifest) {
  if (!manifest.adaptive || !manifest.adaptive->synchronous)
    throw ConfigError("not a successive-halving sweep: its tasks decide their rungs themselves",
                      ErrorContext::for_key(manifest.path.string(), "adaptive.method"));
  return *manifest.adaptive;
}

// R: training.epochs, the same for every trial (config/experiment.cpp checks it).
int64_t epochs_of(const Manifest& manifest) {
  const std::string where = fmt::format("{} (point 0)", manifest.path.string());
  try {
    const toml::table config = toml::parse(manifest.points.front().config, where);
    if (const std::optional<int64_t> epochs = config["training"]["epochs"].value<int64_t>()) return *epochs;
  } catch (const toml::parse_error& error) {
    throw ConfigError(fmt::format("damaged point config: {}", error.description()), ErrorContext::in_file(where));
  }
  throw ConfigError("the point's config has no training.epochs", ErrorContext::for_key(where, "training.epochs"));
}

// A point's newest run in its shard, and that run's decisions.
struct ShardRun {
  std::optional<RunRecord> run;
  std::vector<DecisionRecord> decisions;
};

ShardRun read_shard(const fs::path& shard, const ManifestPoint& point) {
  ShardRun read;
  if (!fs::exists(shard) || !shard_problem(shard).empty()) return read;
  ResultsStore store(shard, OpenMode::read_only);
  read.run = store.latest_run(point.config_hash);
  if (read.run) read.decisions = store.decisions(read.run->id);
  return read;
}

}  // namespace

std::string HalvingPosition::describe() const {
  return at_end() ? fmt::format("the end (epoch {})", epoch) : fmt::format("rung {} (epoch {})", rung, epoch);
}

HalvingPosition HalvingPosition::next() const {
  HalvingPosition position = *this;
  if (!at_end()) ++position.rung;
  position.epoch = position.at_end() ? epochs : rungs[static_cast<size_t>(position.rung)];
  position.running.clear();
  position.behind.clear();
  return position;
}

HalvingPosition halving_position(const Manifest& manifest, const fs::path& folder) {
  const AdaptiveSweep& adaptive = halving_of(manifest);
  HalvingPosition position;
  const int64_t epochs = epochs_of(manifest);
  position.epochs = epochs;
  position.rungs = adaptive.pruner->rungs(0, epochs);
  std::vector<ShardRun> shards;
  for (const auto& point : manifest.points) shards.push_back(read_shard(shard_path(folder, point.index), point));
  // The rung now: the fewest decisions among the points in the running (a decider that died
  // half-way leaves some points decided at a rung and others not).
  position.rung = static_cast<int64_t>(position.rungs.size());
  for (const auto& point : manifest.points) {
    const ShardRun& shard = shards[static_cast<size_t>(point.index)];
    if (shard.run && (shard.run->status == RunStatus::pruned || ended_in_error(shard.run->status))) continue;
    position.running.push_back(point.index);
    position.rung = std::min(position.rung, static_cast<int64_t>(shard.decisions.size()));
  }
  position.epoch = position.at_end() ? epochs : position.rungs[static_cast<size_t>(position.rung)];
  for (int64_t index : position.running) {
    const ShardRun& shard = shards[static_cast<size_t>(index)];
    if (static_cast<int64_t>(shard.decisions.size()) > position.rung) continue;  // decided there already
    bool reached = false;
    if (shard.run && position.at_end()) {
      reached = shard.run->status == RunStatus::finished;
    } else if (shard.run) {
      ResultsStore store(shard_path(folder, index), OpenMode::read_only);
      reached = store.metric_at(shard.run->id, adaptive.metric, position.epoch).has_value();
    }
    if (!reached) position.behind.push_back(index);
  }
  return position;
}

DecidedRung decide_halving_in_folder(const Manifest& manifest, const fs::path& folder,
                                     const HalvingPosition& position) {
  const AdaptiveSweep& adaptive = halving_of(manifest);
  if (position.at_end()) return {};
  if (!position.behind.empty())
    throw RuntimeError(fmt::format("rung {} cannot be decided: {} point(s) have not reached it", position.rung,
                                   position.behind.size()),
                       ErrorContext::in_file(folder.string()));
  // The rung's trials, in point order: every point promoted at each earlier rung, pruned at this
  // one by a decider that died half-way included (its value counts for the cutoff).
  std::vector<HalvingEntry> entries;
  std::vector<int64_t> points;
  for (const auto& point : manifest.points) {
    const fs::path shard = shard_path(folder, point.index);
    if (!fs::exists(shard) || !shard_problem(shard).empty()) continue;
    ResultsStore read(shard, OpenMode::read_only);
    const std::optional<RunRecord> run = read.latest_run(point.config_hash);
    if (!run || !in_halving_rung(read.decisions(run->id), position.rung)) continue;
    // None: it failed before the rung.
    if (const std::optional<double> value = read.metric_at(run->id, adaptive.metric, position.epoch))
      entries.push_back({run->id, run->attempt, *value}), points.push_back(point.index);
  }
  // Then one shard at a time (a sweep of thousands of trials holds one connection, not thousands).
  const std::vector<DecisionRecord> decisions = halving_decisions(adaptive, position.rung, position.epoch, entries);
  DecidedRung decided;
  decided.trials = static_cast<int64_t>(decisions.size());
  for (size_t i = 0; i < decisions.size(); ++i) {
    const fs::path shard = shard_path(folder, points[i]);
    const fs::path local = local_shard_folder() / fmt::format("difflab-{}-decide-{:04}-{}.sqlite",
                                                              manifest.sweep_hash.substr(0, 8), points[i], getpid());
    remove_database(local);
    fs::copy_file(shard, local);
    bool goes_on = false;
    {
      ResultsStore store(local);
      goes_on = record_halving_decision(store, decisions[i]);
    }
    snapshot_database(local, shard);
    remove_database(local);
    if (goes_on) decided.promoted.push_back(points[i]);
  }
  return decided;
}

}  // namespace difflab
