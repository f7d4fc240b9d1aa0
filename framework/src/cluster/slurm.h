// The Slurm launcher: a submission is one job array (job.sbatch) whose task K runs
// `difflab sweep task FOLDER --submission N` with SLURM_ARRAY_TASK_ID=K; squeue says what is
// queued, sacct how tasks ended, scancel cancels, and a task warned before its time limit or a
// preemption (--signal=USR2@S) requeues itself with scontrol.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cluster/launcher.h"

namespace difflab {

struct SlurmOptions {
  std::string partition;          // sbatch --partition (default: the cluster's)
  std::string time;               // sbatch --time, e.g. 04:00:00 (default: the partition's)
  int64_t warning_seconds = 120;  // --signal=B:USR2@N: the preemption and time-limit warning
  // Data parallel: each task is one run across nodes x tasks_per_node processes, started by srun
  // (one per GPU with gpus_per_node), which meet through c10d (see training/distributed.h).
  int64_t nodes = 1;
  int64_t gpus_per_node = 0;
  int64_t tasks_per_node = 0;  // 0: gpus_per_node, or 1
  std::vector<std::string> sbatch_args;  // more "#SBATCH" options, e.g. --account=abc
};

// The options a submission's job was written with (slurm.toml in its folder, which write_job
// writes; the defaults without one).
SlurmOptions read_slurm_options(const std::filesystem::path& submission_folder);

class SlurmLauncher : public Launcher {
 public:
  explicit SlurmLauncher(SlurmOptions options = {}) : options_(std::move(options)) {}
  std::string name() const override { return "slurm"; }
  std::filesystem::path write_job(const Manifest& manifest, const std::filesystem::path& folder,
                                  const Submission& submission, const SubmitOptions& options) const override;
  std::string submit(const std::filesystem::path& job) const override;
  std::vector<QueuedTask> queued(const std::vector<Submission>& all) const override;
  void cancel(const Submission& submission) const override;
  bool chains_jobs() const override { return true; }
  std::string submit_decider(const Manifest& manifest, const std::filesystem::path& folder,
                             const Submission& submission) const override;
  bool requeue_this_task() const override;
  std::string accounting(const Submission& submission) const override;

  // The job script of a submission (what write_job writes).
  std::string script(const Manifest& manifest, const std::filesystem::path& folder, const Submission& submission,
                     const SubmitOptions& options) const;
  // The decider's script (decide.sbatch): one task, after the submission's job ended however it did.
  std::string decider_script(const Manifest& manifest, const std::filesystem::path& folder,
                             const Submission& submission) const;

 private:
  SlurmOptions options_;
};

}  // namespace difflab
