// The rules of adaptive sweeps, as pure functions of the values a sweep has recorded: which
// epochs are rungs, and whether a trial at a rung goes on. The sweep runner feeds them what the
// results database holds and records every decision (results: the decisions table), so that a
// decision can be explained and replayed from the data alone.
//
// Golden-tested against Optuna 3.1 (Debian's python3-optuna): asha and each hyperband bracket as
// its SuccessiveHalvingPruner, median as its MedianPruner (tests/sweep/pruning_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "strategy/strategy.h"

namespace difflab {

// The rung epochs of successive halving with minimum resource r, reduction factor η and
// early-stopping rate s: r·η^(s+k) for k = 0, 1, ... while below the maximum R (Li et al. 2020,
// "A System for Massively Parallel Hyperparameter Tuning", Algorithm 2; a trial that reaches R
// has finished and is not compared again).
std::vector<int64_t> rung_epochs(int64_t min_epochs, int64_t reduction_factor, int64_t max_epochs,
                                 int64_t early_stopping_rate = 0);

// Hyperband's number of brackets: ⌊log_η(R/r)⌋ + 1 (Li et al. 2018, "Hyperband", Algorithm 1,
// s_max + 1), computed in integers (no floating-point log at exact powers).
int64_t hyperband_brackets(int64_t min_epochs, int64_t reduction_factor, int64_t max_epochs);
// The bracket of trial i (0-based) of B: i mod B, so that every bracket gets trials from the
// first ones on, whatever the number of workers (documented: docs/sweeps.md).
int64_t hyperband_bracket(int64_t trial, int64_t brackets);

// A trial's decision at a rung.
struct RungDecision {
  bool promote = false;  // goes on; otherwise it is pruned
  double cutoff = 0.0;   // the value it had to match: the k-th best at the rung
  int64_t rank = 0;      // its rank among the values at the rung (1 = best; ties share the best)
  int64_t of = 0;        // how many values the rung had, its own included
};

// Successive halving's promotion rule at a rung, as ASHA applies it asynchronously: among the n
// values recorded at the rung so far, the trial's own included, it goes on when its value is at
// least as good as the k-th best, k = ⌊n/η⌋, or the best while n < η (Optuna's
// SuccessiveHalvingPruner with min_early_stopping_rate 0: _is_trial_promotable_to_next_rung).
// A NaN value is pruned. `peers` are the other trials' values at the rung.
RungDecision asha_decision(double value, const std::vector<double>& peers, int64_t reduction_factor,
                           Direction direction);

// Synchronous successive halving at a rung: every trial of the rung has its value; the best
// max(1, ⌊n/η⌋) are promoted (ties broken by the lower trial index, so that a rung is decided
// the same way every time). Returns, per trial, whether it is promoted.
std::vector<bool> halving_promotions(const std::vector<double>& values, int64_t reduction_factor,
                                     Direction direction);

// The median rule (Golovin et al. 2017, "Google Vizier", §3.2.2; Optuna's MedianPruner with
// interval_steps 1, n_min_trials 1): at an epoch past the warm-up, once `startup_trials` trials
// have finished, a trial is pruned when the best of its own values so far is worse than the
// median of the finished trials' values at that epoch (numpy's linear percentile). Returns the
// median compared with, or nullopt when the rule does not apply (no decision).
struct MedianDecision {
  bool prune = false;
  double median = 0.0;
  double best = 0.0;  // the trial's best value so far
  int64_t of = 0;     // finished trials with a value at this epoch
};
std::optional<MedianDecision> median_decision(const std::vector<double>& own_values, int64_t epoch,
                                              const std::vector<double>& finished_at_epoch, int64_t finished_trials,
                                              int64_t startup_trials, int64_t warmup_epochs, Direction direction);

// The successive-halving family's pruners (asha, hyperband, successive_halving): rungs at
// r·η^(s+k) below R, and at each the promotion rule of asha_decision(). Their keys: min_epochs
// (r) and reduction_factor (η).
std::vector<StrategyKey> rung_keys();
class RungPruner : public Pruner {
 public:
  explicit RungPruner(const StrategySettings& settings);
  std::vector<int64_t> rungs(int64_t bracket, int64_t max_epochs) const override;
  std::optional<PrunerVerdict> decide(const PrunerView& view, Direction direction) const override;
  bool replays() const override { return true; }
  void check(int64_t max_epochs) const override;  // r <= R: some trial reaches the first rung
  int64_t min_epochs() const { return min_epochs_; }
  int64_t reduction_factor() const { return reduction_factor_; }

 protected:
  // The early-stopping rate s of a bracket's rungs: 0 but in hyperband, where it is the bracket.
  virtual int64_t early_stopping_rate(int64_t /*bracket*/) const { return 0; }

 private:
  int64_t min_epochs_ = 1, reduction_factor_ = 3;
  ErrorContext min_epochs_where_;
};

}  // namespace difflab
