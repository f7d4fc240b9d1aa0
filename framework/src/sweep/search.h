// Model-based sweeps ([sweep] sampler = "tpe"): each trial's point is proposed when the trial
// starts, from the trials recorded before it, and recorded (the proposals table) before it trains;
// a trial whose proposal is recorded resumes it and never proposes again. A proposal records what
// it was computed from, so that `difflab sweep replay` recomputes every one from the database alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/experiment.h"
#include "results/results_store.h"

namespace difflab {

// The sweep's hash (sweeps.sweep): of its [sweep] table and of its first point's configuration.
std::string search_hash(const SweepRun& sweep);

// Trial `trial`'s point: the proposal `store` holds for it, or a new one — TPE over the trials
// before it (`earlier`: their runs, in order; finished, pruned, running or interrupted ones count,
// failed ones do not, as Optuna leaves failures out), drawn again while it repeats an earlier
// trial or hits sweep.exclude — recorded before it is returned. `announce` prints how it was made.
SearchPoint propose_trial(const SweepRun& sweep, const std::vector<SweepRun>& earlier, ResultsStore& store,
                          const std::string& hash, int64_t trial, bool announce);

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
