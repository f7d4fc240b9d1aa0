// Launchers: how a frozen sweep (sweep/sweep_folder.h) reaches a cluster. A launcher only writes
// its job description, submits it, asks the scheduler which tasks are still queued or running,
// and cancels; what a task trains, where results go and which points a submission takes are the
// sweep folder's, the same for every launcher. Two are built in: Slurm (cluster/slurm.h: a job
// array) and Kubernetes (cluster/kubernetes.h: an Indexed Job). Both run the same task command,
// `difflab sweep task FOLDER --submission N`, which finds its index in SLURM_ARRAY_TASK_ID or
// JOB_COMPLETION_INDEX.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "sweep/sweep_folder.h"
#include "sweep/sweep_task.h"

namespace difflab {

class PluginRegistry;

// What every launcher takes.
struct SubmitOptions {
  std::string folder;             // the sweep folder; default <output_dir>/<launcher>/<name>-<sweep hash>
  int64_t cpus_per_task = 0;      // 0: the scheduler's default; a task uses as many LibTorch threads
  int64_t gpus_per_task = 0;
  int64_t array_parallelism = 0;  // at most K tasks at once; 0: no limit
  int64_t runs_per_task = 1;      // points packed into one task, trained one after the other
  bool dry_run = false;           // write the job description, do not submit
  bool retry_failed = false;      // submit points whose last run failed or diverged too
};

// A task of a submission that the scheduler still holds.
struct QueuedTask {
  std::string job_id;
  int64_t task = -1;     // -1: a job that is not an array (a successive-halving sweep's decider)
  bool running = false;  // running now (else waiting)
  std::string state;     // the scheduler's own word for it (PENDING, Running, ...), shown as is
  std::string reason;    // why it waits, when the scheduler says
};

class Launcher {
 public:
  virtual ~Launcher();
  // "slurm", "k8s": the default sweep folder's parent and the word in messages.
  virtual std::string name() const = 0;
  // Writes the submission's job description into its submission folder; returns its path.
  virtual std::filesystem::path write_job(const Manifest& manifest, const std::filesystem::path& folder,
                                          const Submission& submission, const SubmitOptions& options) const = 0;
  // Submits a written job; returns the scheduler's id for it. A runtime Error when there is no
  // scheduler here or it refuses.
  virtual std::string submit(const std::filesystem::path& job) const = 0;
  // The tasks of these submissions still queued or running. A runtime Error when the scheduler
  // is there and does not answer (nobody can then tell whether a point is being trained).
  virtual std::vector<QueuedTask> queued(const std::vector<Submission>& all) const = 0;
  // Cancels what a submission still has queued or running (its decider too).
  virtual void cancel(const Submission& submission) const = 0;
  // Whether the scheduler starts a job once another has ended (what synchronous successive
  // halving needs: each rung's pass is one job, decided by a job that runs after it).
  virtual bool chains_jobs() const { return false; }
  // Submits the decider of a submitted pass, `difflab sweep decide FOLDER --submission N`, as one
  // small job that starts once the pass's job has ended, however it ended; returns its id. A
  // runtime Error for a launcher that does not chain jobs.
  virtual std::string submit_decider(const Manifest& manifest, const std::filesystem::path& folder,
                                     const Submission& submission) const;
  // What a task does on the warning signal (kWarningSignal) after its point checkpointed: put
  // itself back in the queue. Returns whether it did.
  virtual bool requeue_this_task() const { return false; }
  // The scheduler's accounting of a submission, for status (empty when it keeps none).
  virtual std::string accounting(const Submission& submission) const;
};

// The launcher whose job description a submission folder holds (job.sbatch, job.yaml), with the
// options it was made with; Slurm's for a folder with none.
std::unique_ptr<Launcher> launcher_of(const std::filesystem::path& submission_folder);
// The options a submission was made with (submit.toml in its folder; the defaults without one).
SubmitOptions submit_options_of(const std::filesystem::path& submission_folder);
// The launcher that started this process, from its environment; null when none did.
std::unique_ptr<Launcher> launcher_from_environment();

// The task command of a submission, as a job runs it: executable, "sweep", "task", FOLDER, ...
std::vector<std::string> task_command(const std::string& executable, const std::filesystem::path& folder,
                                      int64_t submission);

// `difflab slurm FILE`, `difflab k8s FILE`: validates the whole sweep (a config Error: exit 2,
// nothing written or submitted), freezes it into the folder (or checks that the folder's is this
// sweep), collects the shards there, and submits the points that have not finished as one job.
// Refuses while an earlier submission still has tasks queued. Returns the exit code.
int submit_sweep(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                 PluginRegistry& registry, const Launcher& launcher, const SubmitOptions& options);
// `difflab sweep task`: runs the task (sweep_task.h); on the warning signal, requeues it through
// the launcher that started it. Returns the exit code: 0 when every point finished or the task
// requeued itself, 130 after another stop signal, 1 otherwise.
int sweep_task(const SweepTaskOptions& options, PluginRegistry& registry);
// `difflab sweep decide` (and `slurm decide`), the job after each pass of a successive-halving
// sweep (sweep/halving.h): reads where the sweep stands; when every trial in the running has
// reached the rung, decides it into the shards and submits the promoted trials as the next pass,
// with its own decider; when some have not (a task that died), submits them again, at most three
// times a rung. With dry_run, writes the next pass's job without submitting it. Returns the exit
// code: 0, or 1 when trials are stuck behind the rung.
int sweep_decide(const std::filesystem::path& folder, int64_t submission, bool dry_run);
// `difflab sweep collect` (and `slurm collect`): the shards into `database` (default: the
// experiment's); exit code 1 when a shard was skipped.
int sweep_collect(const std::filesystem::path& folder, const std::string& database = "");
// `difflab sweep status`: every point's state (finished / running / pending / interrupted / failed
// with its message / not submitted) from the shards, the database and the scheduler.
int sweep_status(const std::filesystem::path& folder);
// `difflab sweep cancel`: cancels the folder's last submission.
int sweep_cancel(const std::filesystem::path& folder);

}  // namespace difflab
