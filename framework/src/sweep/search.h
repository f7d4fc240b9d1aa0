// Model-based sweeps ([sweep] sampler = "tpe"): each trial's point is proposed when the trial
// starts, from the trials recorded before it, and recorded (the proposals table) before it trains;
// a trial whose proposal is recorded resumes it and never proposes again. A proposal records what
// it was computed from, so that `difflab sweep replay` recomputes every one from the database alone.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/experiment.h"
#include "results/results_store.h"
#include "sweep/adaptive.h"

namespace difflab {

// The sweep's hash (sweeps.sweep): of its [sweep] table and of its first point's configuration.
std::string search_hash(const SweepRun& sweep);

// Trial `trial` of the sweep at `point`: its experiment (the sweep's file with the point's values),
// its point's text and variant, and the sweep's settings.
SweepRun search_trial(const SweepRun& sweep, const SearchPoint& point, int64_t trial);

// Every trial of the space as the sweep runner holds them, those not proposed yet standing as the
// first point (an adaptive rule reads only the trials' count and epochs from them; their peers
// come through search_peers).
std::vector<SweepRun> search_trials(const SweepRun& sweep);

// A rung's peers: each other trial's newest run (sweep_trials), whatever process proposed and
// trains it — in the deciding run's database, or (`folder` given) in the trial's shard there.
PeerLookup search_peers(const std::string& hash, const std::filesystem::path& folder = {});

// A trial's recorded proposal (the proposals table), or nullopt when it has none yet.
std::optional<SearchPoint> recorded_proposal(const ResultsStore& store, const std::string& hash, int64_t trial);

// One database (difflab run, --workers): in one IMMEDIATE transaction, so that two workers never
// propose one trial, the lowest trial without a proposal gets one — TPE over every other trial
// with a proposal (in trial order: finished and pruned ones by their metric; running, interrupted
// and proposed-not-started ones as running: the constant liar; failed and diverged ones left out,
// as Optuna leaves failures out), drawn again while it repeats another trial's point or hits
// sweep.exclude — recorded with the sweep's row before the transaction commits. Nullopt when
// every trial has one. `announce` prints how it was made.
struct ProposedTrial {
  int64_t trial = 0;
  SearchPoint point;
};
std::optional<ProposedTrial> propose_next(const SweepRun& sweep, ResultsStore& store, const std::string& hash,
                                          bool announce);

// A cluster task's trial: its proposal recorded in its own shard (`local`, a copy of the folder's:
// a requeued task resumes it), else a new one, as propose_next makes it, from the trials the
// other shards in the sweep folder hold now (each task's shard records its own trial's proposal
// and runs), recorded in `local`.
SearchPoint propose_from_shards(const SweepRun& sweep, const std::string& hash, int64_t trial, ResultsStore& local,
                                const std::vector<std::filesystem::path>& shards, bool announce);

// Recomputes every proposal of `store` from what it recorded (the sweep's settings, the trials it
// saw, its seed) and compares the point.
struct ReplayOutcome {
  int64_t proposals = 0, agreeing = 0;
  std::vector<std::string> disagreements;  // "sweep S trial T: recorded ..., recomputed ..."
};
ReplayOutcome replay_proposals(const ResultsStore& store);

// Recomputes every asha and hyperband decision of `store` from the database alone: the run's
// recorded value, its peers' values at the rung's epoch (decisions.peers, by attempt), η and the
// direction from the sweeps table; compares go on / pruned, the cutoff, the rank and the count.
// The median rule's and synchronous halving's decisions are counted as not replayed.
struct DecisionReplay {
  int64_t decisions = 0, agreeing = 0, not_replayed = 0;
  std::vector<std::string> disagreements;  // "run R rung K (epoch E): recorded ..., recomputed ..."
};
DecisionReplay replay_decisions(const ResultsStore& store);

}  // namespace difflab
