// Running a sweep: its points one after the other, or by N worker processes that claim them
// from the results database; then a summary of what the database says about every point.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config/experiment.h"
#include "training/trainer.h"

namespace difflab {

class PluginRegistry;

struct SweepOptions {
  bool new_run = false;       // a new run for every point (one process only)
  bool retry_failed = false;  // run points again whose last run failed or diverged
  int64_t threads = 0;        // LibTorch threads per process; 0 = [experiment] threads, or
                              // cores / workers with several workers
  int64_t workers = 1;
  // The command line that starts one worker (without the executable): "--worker K --threads T"
  // is appended.
  std::vector<std::string> worker_command;
  std::function<void(int64_t epoch)> after_epoch;  // passed to every run (RunOptions::after_epoch)
  std::function<void(int64_t step)> after_step;    // (RunOptions::after_step)
  RunOptions run;  // what every point's run gets besides the above (data parallel, test seams)
};

// Runs every point and prints the summary: finished / skipped / failed / diverged / not done, the
// failures' messages, and the best run by KID. With workers > 1, starts that many processes of
// this executable, each running `worker_command` (their output prefixed "[worker K]"); a worker
// killed by a signal is replaced (at most `workers` times). Returns the exit code: 0 when every
// point finished, 1 otherwise, 130 when interrupted (SIGINT, SIGTERM).
int run_sweep(const std::vector<SweepRun>& runs, const PluginRegistry& registry, const SweepOptions& options);

// One worker process: passes over the points, from its own starting point, training whatever it
// can claim, until a pass finds nothing left to claim. Returns the exit code.
int run_sweep_worker(const std::vector<SweepRun>& runs, const PluginRegistry& registry,
                     const SweepOptions& options, int64_t worker);

}  // namespace difflab
