// One task of a frozen sweep (sweep_folder.h), whatever launcher started it: `difflab sweep task
// FOLDER --submission N` trains the points that submission gave task K (--index K, else
// SLURM_ARRAY_TASK_ID, else Kubernetes' JOB_COMPLETION_INDEX), each as `difflab run` would, into a
// shard database on the task's local disk that is copied into the folder at every epoch's end,
// before the epoch's checkpoint, and when the point ends. A point interrupted (a signal) or killed
// resumes from its checkpoint in the next task that runs it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>

namespace difflab {

class PluginRegistry;

struct SweepTaskOptions {
  std::filesystem::path folder;
  int64_t submission = 1;
  std::optional<int64_t> index;  // the task; default SLURM_ARRAY_TASK_ID, then JOB_COMPLETION_INDEX
  int64_t threads = 0;           // 0: SLURM_CPUS_PER_TASK, else the experiment's threads
  double timeout_seconds = 300;  // data parallel: a rank silent this long fails the run
  std::function<void(int64_t)> after_epoch;  // the command line's test seams (RunOptions)
  std::function<void(int64_t)> after_step;
};

struct SweepTaskResult {
  int64_t index = 0;
  int64_t points = 0;
  int64_t finished = 0;
  int signal = 0;       // the stop signal that ended it early (StopRequest), or 0
  bool leader = true;   // rank 0 of a data-parallel task, or the only process
};

// Runs the task while holding the stop signals (SIGINT, SIGTERM and the warning signal): a
// signal stops the current point at its next step (checkpoint, interrupted) and the task after
// it. Config Errors (exit 2) for a task or submission that does not exist.
SweepTaskResult run_sweep_task(const SweepTaskOptions& options, PluginRegistry& registry);

}  // namespace difflab
