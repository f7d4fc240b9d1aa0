// Adaptive sweeps on the sweep runner: each trial's decision after its epochs (asha, hyperband,
// the median pruner: taken by the trial's own process, at its rung epochs, from what the database
// holds), and synchronous successive halving's rungs (every trial of a rung reaches it, then the
// rung is decided at once). The rules are strategy/pruning.h's; every decision is a row of the
// decisions table.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/experiment.h"
#include "results/results_store.h"
#include "training/trainer.h"

namespace difflab {

// Where a trial finds another trial's latest run and its value of the metric at an epoch: the
// deciding run's own database (difflab run: one database for the whole sweep) when empty, or
// the other points' shards in the sweep folder (a cluster task).
using PeerLookup =
    std::function<std::optional<RungPeer>(ResultsStore& own, size_t trial, const std::string& metric, int64_t epoch)>;

// Trial i's verdict after each epoch (RunOptions::verdict); empty for a sweep that is not adaptive.
std::function<EpochVerdict(ResultsStore& store, int64_t run_id, int64_t epoch)> adaptive_verdict(
    const std::vector<SweepRun>& runs, size_t trial, PeerLookup lookup = {});

// Synchronous successive halving: after every trial still in the running has reached rung k
// (paused there), decides the rung: the best ⌊n/η⌋ go on, the others are pruned. Returns how many
// were promoted; a rung decided before stands.
int64_t decide_halving_rung(const std::vector<SweepRun>& runs, int64_t rung);

// Whether a trial with these decisions is one of rung k's: decided at every earlier rung and
// promoted at each (its decision at rung k, if taken, does not matter).
bool in_halving_rung(const std::vector<DecisionRecord>& taken, int64_t rung);

// One trial of a synchronous rung: its run and its value at the rung's epoch.
struct HalvingEntry {
  int64_t run_id = 0;  // in the database it is recorded in
  std::string attempt;
  double value = 0.0;
};
// The decisions of rung k (at `epoch`) among its trials, given in trial order: the best ⌊n/η⌋
// are promoted (ties: the earlier trial), the others pruned.
std::vector<DecisionRecord> halving_decisions(const AdaptiveSweep& adaptive, int64_t rung, int64_t epoch,
                                              const std::vector<HalvingEntry>& entries);
// Records a trial's decision in the store that holds its run (a pruned run is closed as pruned);
// a decision recorded before stands. Returns whether the trial goes on.
bool record_halving_decision(ResultsStore& store, const DecisionRecord& decision);

// The rungs of a successive-halving sweep (epochs), for its coordinator.
std::vector<int64_t> halving_rungs(const std::vector<SweepRun>& runs);

// What the database records of a trial's sweep (ResultsStore::record_sweep_trial): its settings,
// the adaptive rule's with hyperband's brackets resolved, and the trial's place. Null for a run
// that is not part of a sweep.
std::shared_ptr<const SweepTrialRecord> sweep_trial_record(const SweepRun& run, int64_t trials,
                                                           const std::string& sweep_hash);

// "N trials, P pruned, E epochs trained = X% of running all to the end", from the database.
std::string adaptive_summary(const std::vector<SweepRun>& runs);

}  // namespace difflab
