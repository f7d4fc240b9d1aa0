// Sweeps on a Slurm cluster: `difflab slurm FILE` freezes the sweep into a manifest in a sweep
// folder on the shared filesystem and submits one job array; each array task trains its points
// as `difflab run` would, into shard databases on its own local disk, copied into the sweep
// folder as each epoch and each point ends; `difflab slurm collect` merges the shards into the
// experiment's database; `difflab slurm status` says where every point is.
//
// The sweep folder:
//   manifest.toml             every point: index, config hash, assignments, resolved config
//   submit-NNN/job.sbatch     one submission's script; job_id; tasks.toml (task -> points)
//   submit-NNN/logs/task-K.log  the task's output, appended across requeues
//   shards/point-NNNN.sqlite  the point's shard database (rollback journal, safe on NFS)
//   points/NNNN/              the point's run folder (checkpoints, sample grids)
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace difflab {

class PluginRegistry;

struct SlurmSubmitOptions {
  std::string folder;     // the sweep folder; default: <output_dir>/slurm/<name>-<sweep hash>
  std::string partition;  // sbatch --partition (default: the cluster's)
  std::string time;       // sbatch --time, e.g. 04:00:00 (default: the partition's)
  int64_t gpus_per_task = 0;
  int64_t cpus_per_task = 0;      // 0: sbatch's default; a task uses as many LibTorch threads
  int64_t array_parallelism = 0;  // at most K tasks at once (--array=...%K); 0: no limit
  int64_t runs_per_task = 1;      // points packed into one task, trained one after the other
  int64_t warning_seconds = 120;  // --signal=B:USR2@N: the preemption and time-limit warning
  // Data parallel: each task is one run across nodes x tasks_per_node processes, started by srun
  // (one per GPU with gpus_per_node), which meet through c10d (see training/distributed.h).
  int64_t nodes = 1;
  int64_t gpus_per_node = 0;
  int64_t tasks_per_node = 0;  // 0: gpus_per_node, or 1
  std::vector<std::string> sbatch_args;  // more "#SBATCH" options, e.g. --account=abc
  bool dry_run = false;                  // write the script, do not submit
  bool retry_failed = false;             // submit points whose last run failed or diverged too
};

// Validates the whole sweep (a config Error: exit 2, nothing written, nothing submitted),
// writes the manifest (or checks that the folder's is this sweep's), collects the shards there,
// and submits the points that have not finished (and are not failed, unless retry_failed) as a
// job array. Refuses while an earlier submission of the folder still has tasks in the queue.
// Returns the exit code.
int slurm_submit(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                 PluginRegistry& registry, const SlurmSubmitOptions& options);

struct SlurmTaskOptions {
  std::filesystem::path folder;
  int64_t submission = 1;
  std::optional<int64_t> index;  // the task; default SLURM_ARRAY_TASK_ID, then JOB_COMPLETION_INDEX
  int64_t threads = 0;           // 0: SLURM_CPUS_PER_TASK, else the experiment's threads
  double timeout_seconds = 300;  // data parallel: a rank silent this long fails the run
  std::function<void(int64_t)> after_epoch;  // the command line's test seams (RunOptions)
  std::function<void(int64_t)> after_step;
};

// One array task: trains its points of the submission. On SIGUSR2 (the warning --signal sends
// before a time limit or a preemption) it finishes the current step, writes a checkpoint, records
// the point as interrupted and requeues its own array element (scontrol requeue JOB_TASK); on
// SIGTERM (scancel, the end itself) it does the same without requeueing. Returns the exit code.
int slurm_task(const SlurmTaskOptions& options, PluginRegistry& registry);

// Merges the folder's shards into `database` (default: the experiment's); reports the shards it
// skipped (exit code 1).
int slurm_collect(const std::filesystem::path& folder, const std::string& database = "");

// Every point's state (finished / running / pending / interrupted / failed with its message / not
// submitted) from the shards, the database and squeue (and sacct where the cluster has it).
int slurm_status(const std::filesystem::path& folder);

}  // namespace difflab
