// Where each sweep of a results database stands, trial by trial: the sweep's metric for every
// trial in the order the trials were proposed (a model-based sweep) or drawn, and the best value
// so far. For the report's search view and `difflab sweep progress`, which compare samplers on
// the same space and budget (several sweeps of each, mean ± std).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "results/results_store.h"

namespace difflab {

struct TrialOutcome {
  int64_t trial = 0;  // from 0
  int64_t run_id = 0;
  RunStatus status = RunStatus::running;
  int64_t epoch = 0;  // the last epoch with the metric: a pruned trial's rung
  double value = 0.0; // the metric there; NaN when none was recorded
};

struct SweepProgress {
  std::string sweep;    // the sweep's hash
  std::string name;     // experiment.name
  std::string sampler;  // tpe | random | grid
  std::string pruner;   // asha | hyperband | median | successive_halving | "" (none)
  std::string metric;   // what the sweep optimises: sweep.metric (default val_kid)
  bool maximize = false;
  int64_t trials = 0;   // the sweep's budget (sweeps.trials)
  std::vector<TrialOutcome> outcomes;  // the trials with a run, by trial
  // After the trials 0..k (k = 0 .. trials - 1): the best value of the finished trials among them
  // (Optuna's best value: complete trials only; a pruned trial's value at an early rung is not
  // comparable); NaN until the first finishes.
  std::vector<double> best_so_far;
  std::string label() const { return sampler + (pruner.empty() ? "" : " + " + pruner); }
};

// Every sweep of the database whose trials were sampled (grid, random or tpe; with or without a
// pruner), by sweep hash.
std::vector<SweepProgress> sweep_progress(const ResultsStore& store);

// The sweeps of one label (sampler + pruner) at trial count n (1-based): the mean and sample
// standard deviation of their best-so-far values there, over the sweeps that have one.
struct ProgressStats {
  std::string label;
  int64_t sweeps = 0;
  std::vector<double> mean, std;  // by trial count - 1; NaN where no sweep has a value yet
};
std::vector<ProgressStats> progress_by_label(const std::vector<SweepProgress>& sweeps);

}  // namespace difflab
