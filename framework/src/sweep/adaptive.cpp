#include "sweep/adaptive.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <memory>

#include "results/results_store.h"
#include "strategy/pruning.h"
#include "strategy/strategy.h"

namespace difflab {
namespace {

Direction direction_of(const AdaptiveSweep& adaptive) {
  return adaptive.maximize ? Direction::maximize : Direction::minimize;
}

int64_t max_epochs(const std::vector<SweepRun>& runs) { return runs.front().experiment.settings().training.epochs; }

// The trials that are peers of trial i: its bracket's (every trial but in hyperband), itself left out.
std::vector<size_t> peer_trials(size_t count, size_t trial, int64_t brackets) {
  std::vector<size_t> peers;
  for (size_t j = 0; j < count; ++j)
    if (j != trial && hyperband_bracket(static_cast<int64_t>(j), brackets) ==
                          hyperband_bracket(static_cast<int64_t>(trial), brackets))
      peers.push_back(j);
  return peers;
}

// The peers' latest runs and values, through `lookup` or the deciding run's database.
std::function<std::vector<RungPeer>()> peers_of(ResultsStore& store, const std::vector<std::string>& hashes,
                                                const std::vector<size_t>& trials, const PeerLookup& lookup,
                                                const std::string& metric, int64_t epoch) {
  return [&store, &hashes, &trials, &lookup, metric, epoch] {
    std::vector<RungPeer> peers;
    for (size_t trial : trials) {
      std::optional<RungPeer> peer;
      if (lookup) {
        peer = lookup(store, trial, metric, epoch);
      } else if (const std::optional<RunRecord> run = store.latest_run(hashes[trial])) {
        peer = RungPeer{run->id, run->attempt, run->status, store.metric_at(run->id, metric, epoch)};
      }
      if (peer) peers.push_back(*peer);
    }
    return peers;
  };
}

EpochVerdict verdict_of(const std::optional<DecisionRecord>& decision) {
  if (!decision || !decision->prune) return {};
  return {EpochVerdict::Kind::prune,
          fmt::format("pruned at rung {} (epoch {}): {} {:.6g} is worse than the cutoff {:.6g} (rank {} of {})",
                      decision->rung, decision->epoch, decision->metric, decision->value, decision->cutoff,
                      decision->rank, decision->of)};
}

}  // namespace

std::function<EpochVerdict(ResultsStore&, int64_t, int64_t)> adaptive_verdict(const std::vector<SweepRun>& runs,
                                                                             size_t trial, PeerLookup lookup) {
  if (!runs[trial].adaptive) return {};
  std::vector<std::string> hashes;
  for (const auto& run : runs) hashes.push_back(run.experiment.config_hash());
  const AdaptiveSweep adaptive = *runs[trial].adaptive;
  const int64_t epochs = max_epochs(runs);
  if (adaptive.synchronous) {
    // Wait at the next rung this trial has not been promoted past; the coordinator decides.
    const std::vector<int64_t> rungs = halving_rungs(runs);
    return [rungs](ResultsStore& store, int64_t run_id, int64_t epoch) -> EpochVerdict {
      const std::vector<DecisionRecord> taken = store.decisions(run_id);
      const size_t next = taken.size();
      if (next >= rungs.size() || epoch != rungs[next]) return {};
      return {EpochVerdict::Kind::pause,
              fmt::format("waiting at rung {} (epoch {}) for the other trials of the rung", next, epoch)};
    };
  }
  // Each trial decides at its bracket's rungs against its bracket's trials, by the pruner's rule.
  const int64_t brackets = adaptive.pruner->brackets(epochs);
  const int64_t bracket = hyperband_bracket(static_cast<int64_t>(trial), brackets);
  const std::vector<size_t> trials = peer_trials(runs.size(), trial, brackets);
  return [hashes, trials, lookup, adaptive, bracket, epochs](ResultsStore& store, int64_t run_id,
                                                            int64_t epoch) -> EpochVerdict {
    const std::optional<int64_t> rung = adaptive.pruner->rung_at(bracket, epoch, epochs);
    if (!rung) return {};
    const auto peers = peers_of(store, hashes, trials, lookup, adaptive.metric, epoch);
    return verdict_of(store.decide(run_id, *rung, epoch, adaptive.metric, peers, [&](const RungView& view) {
      PrunerView seen{epoch, view.value, view.history, {}};
      for (const RungPeer& peer : view.peers)
        seen.peers.push_back({peer.attempt, peer.status == RunStatus::finished, peer.value});
      const std::optional<PrunerVerdict> verdict = adaptive.pruner->decide(seen, direction_of(adaptive));
      if (!verdict) return std::optional<DecisionRecord>();
      DecisionRecord record;
      record.method = adaptive.name;
      record.bracket = bracket;
      record.value = verdict->value;
      record.cutoff = verdict->cutoff;
      record.rank = verdict->rank;
      record.of = verdict->of;
      record.peers = verdict->compared;
      record.prune = verdict->prune;
      return std::optional<DecisionRecord>(record);
    }));
  };
}

std::vector<int64_t> halving_rungs(const std::vector<SweepRun>& runs) {
  return runs.front().adaptive->pruner->rungs(0, max_epochs(runs));
}

bool in_halving_rung(const std::vector<DecisionRecord>& taken, int64_t rung) {
  if (static_cast<int64_t>(taken.size()) < rung) return false;
  return std::none_of(taken.begin(), taken.end(), [rung](const DecisionRecord& d) { return d.rung < rung && d.prune; });
}

std::vector<DecisionRecord> halving_decisions(const AdaptiveSweep& adaptive, int64_t rung, int64_t epoch,
                                              const std::vector<HalvingEntry>& entries) {
  std::vector<double> values;
  for (const HalvingEntry& entry : entries) values.push_back(entry.value);
  const std::vector<bool> promoted = halving_promotions(values, adaptive.settings.integer("reduction_factor"), direction_of(adaptive));
  // The cutoff: the worst promoted value.
  double cutoff = std::nan("");
  for (size_t i = 0; i < values.size(); ++i)
    if (promoted[i] && (std::isnan(cutoff) || (adaptive.maximize ? values[i] < cutoff : values[i] > cutoff)))
      cutoff = values[i];
  std::vector<DecisionRecord> decisions;
  for (size_t i = 0; i < entries.size(); ++i) {
    DecisionRecord record;
    record.run_id = entries[i].run_id;
    record.rung = rung;
    record.epoch = epoch;
    record.method = "successive_halving";
    record.metric = adaptive.metric;
    record.value = values[i];
    record.cutoff = cutoff;
    record.rank = 1;
    for (double other : values)
      if (adaptive.maximize ? other > values[i] : other < values[i]) ++record.rank;
    record.of = static_cast<int64_t>(values.size());
    for (size_t j = 0; j < entries.size(); ++j)
      if (j != i) record.peers.push_back(entries[j].attempt);
    record.prune = !promoted[i];
    decisions.push_back(std::move(record));
  }
  return decisions;
}

bool record_halving_decision(ResultsStore& store, const DecisionRecord& decision) {
  const std::optional<DecisionRecord> recorded =
      store.decide(decision.run_id, decision.rung, decision.epoch, decision.metric,
                   [] { return std::vector<RungPeer>(); }, [&](const RungView&) { return std::optional(decision); });
  return recorded && !recorded->prune;
}

int64_t decide_halving_rung(const std::vector<SweepRun>& runs, int64_t rung) {
  const AdaptiveSweep& adaptive = *runs.front().adaptive;
  const int64_t epoch = halving_rungs(runs)[static_cast<size_t>(rung)];
  ResultsStore store(runs.front().database());
  // The rung's trials: promoted past every earlier rung, with the metric at this one.
  std::vector<HalvingEntry> entries;
  for (const auto& run : runs) {
    const std::optional<RunRecord> record = store.latest_run(run.experiment.config_hash());
    if (!record || !in_halving_rung(store.decisions(record->id), rung)) continue;
    if (const std::optional<double> value = store.metric_at(record->id, adaptive.metric, epoch))
      entries.push_back({record->id, record->attempt, *value});
  }
  int64_t kept = 0;
  for (const DecisionRecord& decision : halving_decisions(adaptive, rung, epoch, entries))
    kept += record_halving_decision(store, decision);
  return kept;
}

std::shared_ptr<const SweepTrialRecord> sweep_trial_record(const SweepRun& run, int64_t trials,
                                                           const std::string& sweep_hash) {
  if (!run.sweep_settings) return nullptr;
  auto record = std::make_shared<SweepTrialRecord>();
  const Settings settings = run.experiment.settings();
  record->sweep = sweep_hash;
  record->name = settings.experiment.name;
  record->trials = trials;
  record->trial = run.trial;
  record->method = run.sweep_method;
  record->settings = *run.sweep_settings;
  if (const auto& adaptive = run.adaptive) {
    const int64_t epochs = settings.training.epochs;
    record->rule = adaptive->name;
    record->metric = adaptive->metric;
    record->maximize = adaptive->maximize;
    record->max_epochs = epochs;
    // The columns of the successive-halving family's and the median rule's keys, where the rule
    // takes them; the [sweep] table in `settings` holds every key of every strategy.
    const auto key = [&](const char* name) {
      return adaptive->settings.has(name) ? std::optional<int64_t>(adaptive->settings.integer(name)) : std::nullopt;
    };
    record->min_epochs = key("min_epochs");
    record->reduction_factor = key("reduction_factor");
    record->startup_trials = key("startup_trials");
    record->warmup_epochs = key("warmup_epochs");
    record->brackets = adaptive->pruner->brackets(epochs);
    record->bracket = hyperband_bracket(run.trial, record->brackets);
  }
  return record;
}

std::string adaptive_summary(const std::vector<SweepRun>& runs) {
  if (!runs.front().adaptive) return "";
  ResultsStore store(runs.front().database(), OpenMode::read_only);
  int64_t pruned = 0, trained = 0;
  for (const auto& run : runs) {
    const std::optional<RunRecord> record = store.latest_run(run.experiment.config_hash());
    if (!record) continue;
    pruned += record->status == RunStatus::pruned;
    int64_t last = 0;
    for (const MetricRecord& metric : store.metrics(record->id)) last = std::max(last, metric.epoch);
    trained += last;
  }
  const int64_t all = static_cast<int64_t>(runs.size()) * max_epochs(runs);
  return fmt::format("{} ({}): {} trials, {} pruned, {} epochs trained = {:.0f}% of running all to the end ({})",
                     runs.front().adaptive->name, runs.front().adaptive->metric, runs.size(), pruned,
                     trained, 100.0 * static_cast<double>(trained) / static_cast<double>(all), all);
}

}  // namespace difflab
