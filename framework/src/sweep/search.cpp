// Model-based sweeps: proposing, recording and replaying each trial's point (search.h).
#include "sweep/search.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <sstream>
#include <toml++/toml.h>

#include "difflab/cache.h"
#include "difflab/error.h"
#include "strategy/strategy.h"
#include "sweep/adaptive.h"
#include "sweep/sweep_folder.h"

namespace difflab {
namespace {

// splitmix64's finaliser: spreads (seed, trial, draw) over the generator's seeds.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
uint64_t proposal_seed(uint64_t sweep_seed, int64_t trial, int64_t draw) {
  return mix(sweep_seed ^ mix(static_cast<uint64_t>(trial) * 1000003u + static_cast<uint64_t>(draw)));
}

const char* state_text(Observation::State state) {
  switch (state) {
    case Observation::State::complete: return "complete";
    case Observation::State::pruned: return "pruned";
    case Observation::State::running: return "running";
  }
  return "?";
}

// Shortest text that reads back as the same double ("nan" for NaN).
std::string number(double value) { return std::isnan(value) ? "nan" : fmt::format("{}", value); }
double parse_number(const std::string& text) { return text == "nan" ? std::nan("") : std::stod(text); }

// The conditioned trials as text: "trial attempt state step value v1 .. vD" a line.
struct Seen {
  int64_t trial = 0;
  std::string attempt;
  Observation observation;
};
std::string seen_text(const std::vector<Seen>& seen) {
  std::string text;
  for (const Seen& s : seen) {
    text += fmt::format("{} {} {} {} {}", s.trial, s.attempt, state_text(s.observation.state), s.observation.step,
                        number(s.observation.value));
    for (double v : s.observation.values) text += " " + number(v);
    text += "\n";
  }
  return text;
}
std::vector<Observation> parse_seen(const std::string& text, std::vector<std::string>* attempts = nullptr) {
  std::vector<Observation> observations;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    std::istringstream in(line);
    std::string trial, attempt, state, step, value, word;
    in >> trial >> attempt >> state >> step >> value;
    Observation observation;
    // The text back to its state, through the words state_text() writes.
    for (const auto kind : {Observation::State::complete, Observation::State::pruned,
                            Observation::State::running})
      if (state == state_text(kind)) observation.state = kind;
    observation.step = std::stoll(step);
    observation.value = parse_number(value);
    while (in >> word) observation.values.push_back(parse_number(word));
    observations.push_back(std::move(observation));
    if (attempts != nullptr) attempts->push_back(attempt);
  }
  return observations;
}

// A run as TPE sees it: finished (its metric at its last epoch), pruned (the last epoch with the
// metric and its value there), else running.
Observation observation_of(const ResultsStore& store, const RunRecord& run, const std::string& metric_key) {
  Observation observation;
  int64_t last = 0;
  double value = std::nan("");
  for (const MetricRecord& metric : store.metrics(run.id))
    if (metric.key == metric_key && metric.epoch >= last) last = metric.epoch, value = metric.value;
  if (run.status == RunStatus::finished) {
    observation.state = Observation::State::complete;
    observation.value = value;
  } else if (run.status == RunStatus::pruned) {
    observation.state = Observation::State::pruned;
    observation.step = last;
    observation.value = value;
  } else {
    observation.state = Observation::State::running;
  }
  return observation;
}

// A recorded proposal's point, read back from its columns.
SearchPoint recorded_point(const ProposalRecord& recorded) {
  SearchPoint point;
  std::istringstream lines(recorded.assignments);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) point.assignments.push_back(line);
  std::istringstream numbers(recorded.values);
  for (std::string word; numbers >> word;) point.values.push_back(parse_number(word));
  return point;
}

std::string values_text(const std::vector<double>& values) {
  std::string text;
  for (double v : values) text += (text.empty() ? "" : " ") + number(v);
  return text;
}

// The point TPE proposes for `trial` from `observations`: the first draw that neither repeats an
// earlier trial's point nor hits sweep.exclude (after 100, the last draw stands).
struct Drawn {
  SearchPoint point;
  Proposal proposal;
  uint64_t seed = 0;
  int64_t draw = 0;
};
Drawn draw_point(const SearchSpace& space, const std::vector<Observation>& observations,
                 const std::vector<Assignments>& taken, int64_t trial) {
  Drawn drawn;
  for (drawn.draw = 0;; ++drawn.draw) {
    drawn.seed = proposal_seed(space.seed, trial, drawn.draw);
    drawn.proposal = space.sampler->propose(space.dimensions, observations, space.maximize, drawn.seed);
    drawn.point = search_point(space, drawn.proposal.values);
    const bool repeated = std::find(taken.begin(), taken.end(), drawn.point.assignments) != taken.end();
    if ((!repeated && !drawn.point.excluded) || drawn.draw >= 99) return drawn;
  }
}

}  // namespace

std::string search_hash(const SweepRun& sweep) {
  const std::string text = (sweep.sweep_settings ? *sweep.sweep_settings : std::string()) + "\n" +
                           sweep.experiment.config_hash();
  return fmt::format("{:016x}", fnv1a(text));
}

namespace {

// Another trial as a proposal sees it: its recorded point (no trial repeats it), and how its
// newest run stands (none: proposed, not started yet, which counts as running); no observation
// for a failed or diverged run (Optuna leaves failed trials out) or a damaged point.
struct Known {
  Assignments assignments;
  std::optional<Seen> seen;
};
Known known_trial(const SearchSpace& space, const ProposalRecord& recorded, const ResultsStore& store,
                  const std::optional<RunRecord>& run) {
  const SearchPoint point = recorded_point(recorded);
  Known known{point.assignments, std::nullopt};
  if (point.values.size() != space.dimensions.size()) return known;
  if (run && (run->status == RunStatus::failed || run->status == RunStatus::diverged)) return known;
  Seen s;
  s.trial = recorded.trial;
  s.attempt = run ? run->attempt : "-";
  if (run) s.observation = observation_of(store, *run, space.metric);
  else s.observation.state = Observation::State::running;
  s.observation.values = point.values;
  known.seen = std::move(s);
  return known;
}

// A new proposal for `trial` from the other trials (`seen`, in trial order), recorded in `store`
// with the sweep's row (replay reads the settings from it) before it is returned.
SearchPoint propose_from(const SweepRun& sweep, const std::string& hash, int64_t trial,
                         const std::map<int64_t, Known>& others, ResultsStore& store, bool announce) {
  const SearchSpace& space = sweep.search->space;
  std::vector<Seen> seen;
  std::vector<Assignments> taken;
  for (const auto& [other, known] : others) {
    taken.push_back(known.assignments);
    if (known.seen) seen.push_back(*known.seen);
  }
  std::vector<Observation> observations;
  for (const Seen& s : seen) observations.push_back(s.observation);
  const Drawn drawn = draw_point(space, observations, taken, trial);
  ProposalRecord record;
  record.sweep = hash;
  record.trial = trial;
  record.sampler = space.sampler_name;
  record.seed = drawn.seed;
  record.draw = drawn.draw;
  record.random = drawn.proposal.random;
  record.conditioned = seen_text(seen);
  for (const auto& assignment : drawn.point.assignments) record.assignments += assignment + "\n";
  record.values = values_text(drawn.point.values);
  if (!drawn.proposal.random) record.score = drawn.proposal.score;
  if (const auto sweep_row = sweep_trial_record(sweep, space.trials, hash)) store.record_sweep(*sweep_row);
  store.record_proposal(record);
  if (announce) {
    const auto running = std::count_if(observations.begin(), observations.end(), [](const Observation& o) {
      return o.state == Observation::State::running;
    });
    const std::string liars = running > 0 ? fmt::format(", {} still running", running) : "";
    if (drawn.proposal.random)
      fmt::print("   trial {} proposed by {} at random ({} of {} trials to learn from before the model{}): {}\n",
                 trial + 1, space.sampler_name, observations.size(), space.sampler->random_trials(), liars,
                 fmt::join(drawn.point.assignments, ", "));
    else
      fmt::print("   trial {} proposed by {} from {} trials{} (l: {}, g: {}; log l/g {:.3f}): {}\n", trial + 1,
                 space.sampler_name, observations.size(), liars, drawn.proposal.below.size(), drawn.proposal.above.size(),
                 drawn.proposal.score, fmt::join(drawn.point.assignments, ", "));
    std::fflush(stdout);
  }
  return drawn.point;
}

}  // namespace

SweepRun search_trial(const SweepRun& sweep, const SearchPoint& point, int64_t trial) {
  SweepRun run{sweep.search->experiment(point.assignments), "", ""};
  for (const auto& assignment : point.assignments) {
    run.point += (run.point.empty() ? "" : ", ") + assignment;
    if (assignment.rfind("experiment.seed=", 0) != 0) run.variant += (run.variant.empty() ? "" : ", ") + assignment;
  }
  run.adaptive = sweep.adaptive;
  run.trial = trial;
  run.sweep_settings = sweep.sweep_settings;
  run.sweep_method = sweep.sweep_method;
  run.search = sweep.search;
  return run;
}

std::vector<SweepRun> search_trials(const SweepRun& sweep) {
  std::vector<SweepRun> runs(static_cast<size_t>(sweep.search->space.trials), sweep);
  for (size_t t = 0; t < runs.size(); ++t) runs[t].trial = static_cast<int64_t>(t);
  return runs;
}

PeerLookup search_peers(const std::string& hash, const std::filesystem::path& folder) {
  return [hash, folder](ResultsStore& own, size_t trial, const std::string& metric,
                        int64_t epoch) -> std::optional<RungPeer> {
    const auto peer = [&](const ResultsStore& store) -> std::optional<RungPeer> {
      const std::optional<RunRecord> run = store.trial_run(hash, static_cast<int64_t>(trial));
      if (!run) return std::nullopt;
      return RungPeer{run->id, run->attempt, run->status, store.metric_at(run->id, metric, epoch)};
    };
    if (folder.empty()) return peer(own);
    // A shard is replaced by a rename and never written in place: one being replaced or damaged
    // is no peer this time (sweep_task.cpp's shard_peers).
    const std::filesystem::path shard = shard_path(folder, static_cast<int64_t>(trial));
    if (!std::filesystem::exists(shard)) return std::nullopt;
    try {
      return peer(ResultsStore(shard, OpenMode::read_only));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  };
}

std::optional<SearchPoint> recorded_proposal(const ResultsStore& store, const std::string& hash, int64_t trial) {
  for (const ProposalRecord& recorded : store.proposals(hash))
    if (recorded.trial == trial) return recorded_point(recorded);
  return std::nullopt;
}

std::optional<ProposedTrial> propose_next(const SweepRun& sweep, ResultsStore& store, const std::string& hash,
                                          bool announce) {
  std::optional<ProposedTrial> proposed;
  store.write_transaction([&] {
    std::map<int64_t, Known> others;
    for (const ProposalRecord& recorded : store.proposals(hash))
      others[recorded.trial] = known_trial(sweep.search->space, recorded, store, store.trial_run(hash, recorded.trial));
    int64_t trial = 0;
    while (others.count(trial) > 0) ++trial;
    if (trial >= sweep.search->space.trials) return;
    proposed = ProposedTrial{trial, propose_from(sweep, hash, trial, others, store, announce)};
  });
  return proposed;
}

SearchPoint propose_from_shards(const SweepRun& sweep, const std::string& hash, int64_t trial, ResultsStore& local,
                                const std::vector<std::filesystem::path>& shards, bool announce) {
  if (auto recorded = recorded_proposal(local, hash, trial)) return *recorded;
  std::map<int64_t, Known> others;
  for (const auto& path : shards) {
    try {
      const ResultsStore shard(path, OpenMode::read_only);
      for (const ProposalRecord& recorded : shard.proposals(hash))
        if (recorded.trial != trial && others.count(recorded.trial) == 0)
          others[recorded.trial] = known_trial(sweep.search->space, recorded, shard, shard.trial_run(hash, recorded.trial));
    } catch (const std::exception& error) {
      // A shard being replaced or damaged is no trial to learn from this time (its own task
      // reports it); the proposal records what it did see.
      fmt::print(stderr, "difflab: trial {}: shard {} not read: {}\n", trial + 1, path.string(), error.what());
    }
  }
  return propose_from(sweep, hash, trial, others, local, announce);
}

ReplayOutcome replay_proposals(const ResultsStore& store) {
  ReplayOutcome outcome;
  const std::vector<RunRecord> runs = store.runs();
  for (const ProposalRecord& recorded : store.proposals()) {
    ++outcome.proposals;
    const std::string where = fmt::format("sweep {} trial {}", recorded.sweep, recorded.trial);
    const std::optional<std::string> settings = store.sweep_settings(recorded.sweep);
    if (!settings) {
      outcome.disagreements.push_back(where + ": the sweeps table has no settings for it");
      continue;
    }
    std::optional<SearchSpace> space;
    try {
      toml::table table = toml::parse(std::string_view(*settings), std::string_view("sweeps.settings"));
      space = search_space(table, "sweeps.settings of " + recorded.sweep);
    } catch (const std::exception& error) {
      outcome.disagreements.push_back(where + ": its recorded settings do not parse: " + error.what());
      continue;
    }
    if (!space) {
      outcome.disagreements.push_back(where + ": its recorded settings are not a model-based sweep's");
      continue;
    }
    // What it saw is what the database holds of those runs now (a finished or pruned run does not
    // change; a running one may have finished since, and counted as running then).
    std::vector<std::string> attempts;
    const std::vector<Observation> observations = parse_seen(recorded.conditioned, &attempts);
    std::string mismatch;
    for (size_t k = 0; k < observations.size() && mismatch.empty(); ++k) {
      const Observation& saw = observations[k];
      if (saw.state == Observation::State::running) continue;
      const auto run = std::find_if(runs.begin(), runs.end(), [&](const RunRecord& r) { return r.attempt == attempts[k]; });
      if (run == runs.end()) {
        mismatch = fmt::format("it saw attempt {}, which the database does not hold", attempts[k]);
        continue;
      }
      const Observation now = observation_of(store, *run, space->metric);
      const bool same_value = now.value == saw.value || (std::isnan(now.value) && std::isnan(saw.value));
      if (now.state != saw.state || now.step != saw.step || !same_value)
        mismatch = fmt::format("it saw run {} {} with {} {} at epoch {}; the database has {} {} at epoch {}", run->id,
                               state_text(saw.state), space->metric, number(saw.value), saw.step, state_text(now.state),
                               number(now.value), now.step);
    }
    if (!mismatch.empty()) {
      outcome.disagreements.push_back(where + ": " + mismatch);
      continue;
    }
    // The recorded draw's seed, recomputed, and the proposal from the trials it saw.
    const uint64_t seed = proposal_seed(space->seed, recorded.trial, recorded.draw);
    const Proposal proposal = space->sampler->propose(space->dimensions, observations, space->maximize, seed);
    const SearchPoint point = search_point(*space, proposal.values);
    std::string assignments;
    for (const auto& assignment : point.assignments) assignments += assignment + "\n";
    if (seed != recorded.seed || assignments != recorded.assignments || values_text(point.values) != recorded.values) {
      std::string shown = recorded.assignments, again = assignments;
      std::replace(shown.begin(), shown.end(), '\n', ' ');
      std::replace(again.begin(), again.end(), '\n', ' ');
      outcome.disagreements.push_back(fmt::format("{}: recorded {}(seed {}), recomputed {}(seed {})", where, shown,
                                                  recorded.seed, again, seed));
      continue;
    }
    ++outcome.agreeing;
  }
  return outcome;
}

DecisionReplay replay_decisions(const ResultsStore& store) {
  DecisionReplay replay;
  std::map<std::string, std::optional<AdaptiveSweep>> rules;  // by sweep: its pruner, from its recorded settings
  for (const DecisionRecord& decision : store.decisions()) {
    ++replay.decisions;
    const std::optional<SweepTrialRecord> sweep = store.sweep_trial(decision.run_id);
    if (!sweep || sweep->rule.empty()) {
      ++replay.not_replayed;
      continue;
    }
    if (!rules.count(sweep->sweep)) {
      std::optional<AdaptiveSweep> rule;
      try {
        const toml::table table = toml::parse(std::string_view(sweep->settings), std::string_view("sweeps.settings"));
        rule = adaptive_sweep(table, "sweeps.settings of " + sweep->sweep);
      } catch (const std::exception& error) {
        replay.disagreements.push_back(fmt::format("run {} rung {}: its sweep's recorded settings do not parse: {}",
                                                   decision.run_id, decision.rung, error.what()));
        continue;
      }
      rules[sweep->sweep] = std::move(rule);
    }
    const std::optional<AdaptiveSweep>& rule = rules.at(sweep->sweep);
    // A rule that decides from more than the values (the median's finished trials, a synchronous
    // rung's coordinator) is counted, not replayed.
    if (!rule || rule->name != decision.method || !rule->pruner->replays()) {
      ++replay.not_replayed;
      continue;
    }
    const std::optional<double> own = store.metric_at(decision.run_id, decision.metric, decision.epoch);
    if (!own || !(*own == decision.value || (std::isnan(*own) && std::isnan(decision.value)))) {
      replay.disagreements.push_back(fmt::format("run {} rung {} (epoch {}): the decision's {} is {}, the run's row {}",
                                                 decision.run_id, decision.rung, decision.epoch, decision.metric,
                                                 decision.value, own ? fmt::format("{}", *own) : "missing"));
      continue;
    }
    PrunerView view{decision.epoch, decision.value, {}, {}};
    for (const std::string& attempt : decision.peers)
      view.peers.push_back({attempt, true, store.attempt_metric_at(attempt, decision.metric, decision.epoch)});
    const std::optional<PrunerVerdict> again =
        rule->pruner->decide(view, sweep->maximize ? Direction::maximize : Direction::minimize);
    const bool same = again && again->prune == decision.prune && again->rank == decision.rank &&
                      again->of == decision.of &&
                      (again->cutoff == decision.cutoff || (std::isnan(again->cutoff) && std::isnan(decision.cutoff)));
    if (same) {
      ++replay.agreeing;
      continue;
    }
    if (!again) {
      replay.disagreements.push_back(fmt::format("run {} rung {} (epoch {}): recorded {}, recomputed no decision",
                                                 decision.run_id, decision.rung, decision.epoch,
                                                 decision.prune ? "pruned" : "goes on"));
      continue;
    }
    replay.disagreements.push_back(fmt::format(
        "run {} rung {} (epoch {}): recorded {} (cutoff {}, rank {} of {}), recomputed {} (cutoff {}, rank {} of {})",
        decision.run_id, decision.rung, decision.epoch, decision.prune ? "pruned" : "goes on", decision.cutoff,
        decision.rank, decision.of, again->prune ? "pruned" : "goes on", again->cutoff, again->rank, again->of));
  }
  return replay;
}

}  // namespace difflab
