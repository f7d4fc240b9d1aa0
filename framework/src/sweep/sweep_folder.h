// The sweep folder: a sweep frozen for a cluster, whatever launcher runs it (Slurm's job arrays,
// Kubernetes' Indexed Jobs). The launchers (cluster/) only submit, query and cancel; everything
// else — which points a task trains, where their results go, where each point stands, which
// points a new submission takes — is here, once.
//
// The folder, on a filesystem every task sees:
//   manifest.toml               every point: index, config hash, assignments, resolved config
//   submit-NNN/tasks.toml       one submission: task -> points, and its options
//   submit-NNN/job_id           what the launcher answered (an array job id, a Job name)
//   submit-NNN/job.sbatch, job.yaml   the launcher's job description
//   submit-NNN/logs/task-K.log  a task's output (Slurm: appended across requeues)
//   shards/point-NNNN.sqlite    the point's shard database (rollback journal, safe on NFS)
//   points/NNNN/                the point's run folder (checkpoints, sample grids)
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <toml++/toml.h>
#include <vector>

#include "config/experiment.h"
#include "results/run_status.h"

namespace difflab {

class PluginRegistry;
class ResultsStore;
struct SweepTrialRecord;

struct ManifestPoint {
  int64_t index = 0;
  std::string config_hash;
  std::string point;    // "loss.plugin=\"mse\", experiment.seed=1"
  std::string variant;  // the same without the seed
  std::string config;   // the resolved experiment (Experiment::to_toml)
};

struct Manifest {
  std::filesystem::path path;
  std::string sweep_hash;
  std::string name;
  std::string experiment_file;
  std::string base_dir;  // the experiment file's folder (its relative plugin_paths)
  std::string database;  // the experiment's database, absolute: where collect merges
  std::vector<std::string> plugin_dirs;
  std::vector<ManifestPoint> points;
  std::optional<AdaptiveSweep> adaptive;  // an adaptive sweep's settings (its points are the trials, in order)
  std::string sweep_method;    // [sweep] method, and the table as TOML (empty in a manifest older than them)
  std::string sweep_settings;
  // A model-based sweep (sampler = "tpe"): the experiment file's text and the command line's
  // --set values, frozen; its points are the trials, empty until a task proposes each (their
  // shards record the proposals). Empty for any other sweep.
  std::string search_text;
  std::vector<std::string> overrides;
  bool search() const { return !search_text.empty(); }
};

// A sweep's identity: the hash of its points' configuration hashes, in order.
std::string sweep_hash(const std::vector<SweepRun>& runs);

// What the database records of a point's sweep (adaptive.h's sweep_trial_record, from the
// manifest); null for a manifest written before the sweep's settings were kept in it.
std::shared_ptr<const SweepTrialRecord> point_sweep_trial(const Manifest& manifest, const ManifestPoint& point,
                                                          const Experiment& experiment);

// A TOML file of the folder, which difflab wrote (manifest, task list, submission options): a
// config Error naming the file, line and column when it is damaged.
toml::table read_toml_file(const std::filesystem::path& path, const char* what);
// Writes `table` atomically, after a comment line saying what it is.
void write_toml_file(const std::filesystem::path& path, const std::string& comment, const toml::table& table);

std::filesystem::path manifest_path(const std::filesystem::path& folder);
std::filesystem::path shard_path(const std::filesystem::path& folder, int64_t point);
std::filesystem::path point_folder(const std::filesystem::path& folder, int64_t point);
std::filesystem::path submission_folder(const std::filesystem::path& folder, int64_t submission);
std::filesystem::path tasks_path(const std::filesystem::path& folder, int64_t submission);

// The manifest of a loaded sweep, for the folder given (or, when empty,
// <output_dir>/<launcher>/<name>-<sweep hash>). A config Error when the points use more than one
// database. A model-based sweep's manifest holds the file and `overrides`, and one empty point a
// trial.
Manifest make_manifest(const std::filesystem::path& file, const std::vector<SweepRun>& runs,
                       const PluginRegistry& registry, const std::string& folder, const std::string& launcher,
                       const std::vector<std::string>& overrides = {});
// A model-based sweep's manifest loaded again (its frozen file and --set values); a config Error
// when it no longer hashes to the manifest's sweep hash (a plugin's schema or defaults changed).
SweepRun manifest_search(const Manifest& manifest, PluginRegistry& registry);
// Writes the manifest into its folder, or checks that the folder's is this sweep's (a config
// Error naming the folder when it holds another).
void freeze_manifest(const Manifest& manifest);
// A config Error naming the file for a folder without a manifest, or a damaged one.
Manifest read_manifest(const std::filesystem::path& folder);
// A manifest point's experiment, parsed again; a config Error when it no longer resolves to the
// manifest's hash (a plugin's schema or defaults changed since the sweep was frozen).
Experiment point_experiment(const Manifest& manifest, const ManifestPoint& point, PluginRegistry& registry);

// One submission: which points each task trains.
struct Submission {
  int64_t number = 0;
  std::vector<std::vector<int64_t>> tasks;
  bool retry_failed = false;
  int64_t rung = -1;   // successive halving: the rung its tasks train to (the rungs' count: the end)
  std::string job_id;  // the launcher's; empty for a dry run, or before it answered
  std::string decider_job_id;  // successive halving: the job that decides the rung after it
};

std::optional<Submission> read_submission(const std::filesystem::path& folder, int64_t number);
std::vector<Submission> submissions(const std::filesystem::path& folder);
// Writes its tasks.toml (and creates its logs folder).
void write_submission(const std::filesystem::path& folder, const Submission& submission);
void write_job_id(const std::filesystem::path& folder, const Submission& submission);
void write_decider_job_id(const std::filesystem::path& folder, const Submission& submission);
// A new submission, numbered after the folder's last one, of these points packed runs_per_task
// to a task (not written yet).
Submission new_submission(const std::filesystem::path& folder, const std::vector<int64_t>& points,
                          int64_t runs_per_task);

// Where a point stands, from its shard (the newest word on it) and the experiment's database.
struct PointState {
  std::optional<RunStatus> status;  // nullopt: no run yet
  int64_t run_id = 0;
  std::string error;
  std::string shard_problem;  // why its shard cannot be read, if it cannot
  std::optional<int64_t> rung;  // an adaptive sweep's: the last rung the point was decided at
  // A model-based sweep's trial: its proposal's assignments ("loss.plugin='mse', ..."), or nullopt
  // before a task proposed it.
  std::optional<std::string> proposed;
};

class PointStates {
 public:
  PointStates(const Manifest& manifest, const std::filesystem::path& folder);
  ~PointStates();
  PointState of(const ManifestPoint& point) const;

 private:
  std::filesystem::path folder_;
  std::string sweep_hash_;
  bool search_ = false;
  std::unique_ptr<ResultsStore> database_;
};

// The resubmission rule: a new submission takes every point that has not finished (or been
// pruned), and those that failed or diverged only with retry_failed; it packs them runs_per_task
// to a task.
struct SubmissionPlan {
  Submission submission;  // numbered after the folder's last one
  int64_t finished = 0;
  int64_t pruned = 0;  // an adaptive sweep's decisions stand: left out
  int64_t failed = 0;  // failed or diverged, and left out
  int64_t points = 0;  // to run
};
SubmissionPlan plan_submission(const Manifest& manifest, const std::filesystem::path& folder, bool retry_failed,
                               int64_t runs_per_task);

// Where a task keeps the databases it writes: DIFFLAB_SHARD_DIR, else SLURM_TMPDIR, else TMPDIR,
// else /tmp (a local disk: SQLite's locks and WAL need one).
std::filesystem::path local_shard_folder();
// Removes a database file and its -wal, -shm and -journal files.
void remove_database(const std::filesystem::path& path);

// The folder's shard databases, in point order.
std::vector<std::filesystem::path> shard_files(const std::filesystem::path& folder);
// Merges the folder's shards into `database`; prints what it did. Returns 1 when a shard was
// skipped (each named), else 0.
int collect_shards(const std::filesystem::path& folder, const std::string& database);

}  // namespace difflab
