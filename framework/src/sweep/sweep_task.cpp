#include "sweep/sweep_task.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <memory>
#include <unistd.h>

#include "difflab/error.h"
#include "model/components.h"
#include "plugin_host/registry.h"
#include "process/crash_point.h"
#include "process/stop_request.h"
#include "results/merge.h"
#include "results/results_store.h"
#include "sweep/adaptive.h"
#include "sweep/search.h"
#include "sweep/sweep_folder.h"
#include "training/distributed.h"
#include "training/trainer.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A point is done with, for this task, when it trained to the end, an adaptive sweep's rule
// stopped it, or it waits at a successive-halving rung for the decider.
bool trained(const RunResult& result) {
  return result.outcome == RunOutcome::trained || result.outcome == RunOutcome::finished_before ||
         result.outcome == RunOutcome::pruned || result.outcome == RunOutcome::pruned_before ||
         result.outcome == RunOutcome::paused;
}

// An adaptive sweep's trials as the manifest froze them (its points, in order), for their
// decisions; empty for a sweep that is not adaptive.
std::vector<SweepRun> adaptive_trials(const Manifest& manifest, PluginRegistry& registry) {
  std::vector<SweepRun> trials;
  if (!manifest.adaptive) return trials;
  const auto adaptive = std::make_shared<const AdaptiveSweep>(*manifest.adaptive);
  for (const auto& point : manifest.points)
    trials.push_back({point_experiment(manifest, point, registry), point.point, point.variant, adaptive, point.index});
  return trials;
}

// A trial's peers on a cluster: each other point's newest run and value, read from its shard in
// the sweep folder. A shard is a plain file that its own task replaces by a rename after every
// epoch and nobody writes in place, so reading it on a network filesystem sees a whole snapshot,
// the old one or the new; one being replaced or damaged just is no peer this time.
PeerLookup shard_peers(const fs::path& folder, const Manifest& manifest) {
  std::vector<std::string> hashes;
  for (const auto& point : manifest.points) hashes.push_back(point.config_hash);
  return [folder, hashes](ResultsStore&, size_t trial, const std::string& metric, int64_t epoch) -> std::optional<RungPeer> {
    const fs::path shard = shard_path(folder, static_cast<int64_t>(trial));
    if (!fs::exists(shard)) return std::nullopt;
    try {
      ResultsStore peer(shard, OpenMode::read_only);
      const std::optional<RunRecord> run = peer.latest_run(hashes[trial]);
      if (!run) return std::nullopt;
      return RungPeer{run->id, run->attempt, run->status, peer.metric_at(run->id, metric, epoch)};
    } catch (const std::exception&) {
      return std::nullopt;
    }
  };
}

// A rank other than 0 of a data-parallel task: trains the point with rank 0, which alone keeps
// its shard.
bool follow_point(const Manifest& manifest, const ManifestPoint& point, const SweepTaskOptions& options,
                  PluginRegistry& registry, ProcessGroup& group, const std::vector<SweepRun>& trials) {
  const Experiment experiment = point_experiment(manifest, point, registry);
  RunOptions run;
  // Rank 0 decides; a follower's verdict is only asked for its kind, which rank 0's replaces.
  if (!trials.empty()) run.verdict = [](ResultsStore&, int64_t, int64_t) { return EpochVerdict{}; };
  run.threads = options.threads;
  run.variant = point.variant;
  run.distributed = &group;
  run.after_epoch = options.after_epoch;
  run.after_step = options.after_step;
  try {
    return trained(run_experiment(experiment, registry, run));
  } catch (const std::exception& error) {
    fmt::print(stderr, "difflab: rank {}: point {} stopped: {}\n", group.rank(), point.index, describe(error));
    return false;
  }
}

// The local shard a point trains into, starting as a copy of the folder's.
fs::path take_shard(const Manifest& manifest, const fs::path& folder, const ManifestPoint& point) {
  const fs::path shared = shard_path(folder, point.index);
  const fs::path local = local_shard_folder() / fmt::format("difflab-{}-point-{:04}-{}.sqlite",
                                                            manifest.sweep_hash.substr(0, 8), point.index, getpid());
  remove_database(local);
  if (fs::exists(shared)) {
    const std::string problem = shard_problem(shared);
    if (problem.empty()) {
      fs::copy_file(shared, local);
    } else {
      const fs::path kept = shared.string() + fmt::format(".damaged-{}", static_cast<int64_t>(unix_time()));
      fs::rename(shared, kept);
      fmt::print(stderr, "difflab: the shard {} is unusable ({}); kept as {}, the point starts a new shard\n",
                 shared.string(), problem, kept.string());
    }
  }
  ResultsStore created(local);
  return local;
}

// This task alone owns the point: a running row of its configuration is a dead earlier instance.
void take_over(const fs::path& local, const ManifestPoint& point, const std::string& config_hash) {
  ResultsStore store(local);
  if (store.abandon_running(config_hash, "its cluster task ended before the run did") > 0)
    fmt::print("difflab: point {}: taking over the run its previous task left running\n", point.index);
}

// A model-based sweep's trial: its proposal, recorded in the local shard and published to the
// folder before anything trains (a requeued task resumes it from there), or the one recorded.
SweepRun proposed_trial(const SweepRun& search, const Manifest& manifest, const fs::path& folder,
                        const ManifestPoint& point, const fs::path& local) {
  std::vector<fs::path> others;
  for (const fs::path& shard : shard_files(folder))
    if (shard != shard_path(folder, point.index)) others.push_back(shard);
  bool recorded = false;
  SearchPoint proposal;
  {
    ResultsStore store(local);
    recorded = recorded_proposal(store, manifest.sweep_hash, point.index).has_value();
    proposal = propose_from_shards(search, manifest.sweep_hash, point.index, store, others, true);
  }
  if (!recorded) {
    snapshot_database(local, shard_path(folder, point.index));
    crash_point("search.proposed");  // published, not yet trained: the trial resumes this proposal
  }
  return search_trial(search, proposal, point.index);
}

// Trains one point into a local shard that starts as the shared one; returns whether it finished.
bool run_point(const Manifest& manifest, const fs::path& folder, const Submission& submission,
               const ManifestPoint& point, const SweepTaskOptions& options, PluginRegistry& registry,
               ProcessGroup* group, const std::vector<SweepRun>& trials, const SweepRun* search) {
  const fs::path shared = shard_path(folder, point.index);
  const fs::path local = take_shard(manifest, folder, point);
  std::optional<SweepRun> trial;
  if (search) trial = proposed_trial(*search, manifest, folder, point, local);
  const Experiment experiment = trial ? trial->experiment : point_experiment(manifest, point, registry);
  take_over(local, point, experiment.config_hash());
  RunOptions run;
  run.retry_failed = submission.retry_failed;
  run.threads = options.threads;
  run.variant = trial ? trial->variant : point.variant;
  run.database = local.string();
  run.output_dir = point_folder(folder, point.index).string();
  run.sweep_trial = trial ? sweep_trial_record(*trial, static_cast<int64_t>(manifest.points.size()), manifest.sweep_hash)
                          : point_sweep_trial(manifest, point, experiment);
  run.distributed = group;
  // What a killed task leaves: the point up to this epoch, in the sweep folder before the
  // checkpoint says the epoch is complete.
  run.publish = [&] { snapshot_database(local, shared); };
  run.after_epoch = options.after_epoch;
  run.after_step = options.after_step;
  if (!trials.empty())
    run.verdict = adaptive_verdict(trials, static_cast<size_t>(point.index),
                                   search ? search_peers(manifest.sweep_hash, folder) : shard_peers(folder, manifest));
  const std::string shown = trial ? trial->point : point.point;
  fmt::print("== point {} ({}): {}\n", point.index, experiment.config_hash(), shown.empty() ? "(no sweep)" : shown);
  std::fflush(stdout);
  bool finished = false;
  std::string failure;
  try {
    const RunResult result = run_experiment(experiment, registry, run);
    finished = trained(result);
    if (result.outcome == RunOutcome::pruned) fmt::print("   pruned: run {}\n", result.run_id);
    else if (result.outcome == RunOutcome::paused) fmt::print("   waits: run {} {}\n", result.run_id, result.detail);
    else if (result.outcome != RunOutcome::trained) fmt::print("   skipped: run {} {}\n", result.run_id, result.detail);
    else fmt::print("   finished: run {}\n", result.run_id);
  } catch (const Error& error) {
    failure = error.what();
    if (error.kind() == ErrorKind::interrupted) {
      fmt::print("difflab: point {} interrupted: {}\n", point.index, failure);
      failure.clear();
    }
  } catch (const std::exception& error) {
    failure = describe(error);
  }
  if (!failure.empty()) fmt::print(stderr, "difflab: point {} failed: {}\n", point.index, failure);
  if (fs::exists(local)) {
    snapshot_database(local, shared);
    crash_point("point.published");
  }
  remove_database(local);
  std::fflush(stdout);
  std::fflush(stderr);
  return finished;
}

// The task's points, checked against the manifest.
const std::vector<int64_t>& task_points(const Manifest& manifest, const fs::path& folder, const Submission& submission,
                                        int64_t index) {
  const std::string where = tasks_path(folder, submission.number).string();
  if (index < 0 || index >= static_cast<int64_t>(submission.tasks.size()))
    throw ConfigError(fmt::format("task {} does not exist: submission {} has tasks 0 to {}", index, submission.number,
                                  submission.tasks.size() - 1),
                      ErrorContext::in_file(where));
  const std::vector<int64_t>& points = submission.tasks[static_cast<size_t>(index)];
  for (int64_t point : points)
    if (point < 0 || point >= static_cast<int64_t>(manifest.points.size()))
      throw ConfigError(fmt::format("task {} names point {}, and the manifest has {}", index, point,
                                    manifest.points.size()),
                        ErrorContext::in_file(where));
  return points;
}

}  // namespace

SweepTaskResult run_sweep_task(const SweepTaskOptions& options, PluginRegistry& registry) {
  // Held for the whole task: a warning that comes between points stops the task as well.
  const StopRequest stop_request({SIGINT, SIGTERM, kWarningSignal});
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const fs::path folder = fs::absolute(options.folder);
  const Manifest manifest = read_manifest(folder);
  const std::optional<Submission> submission = read_submission(folder, options.submission);
  if (!submission)
    throw ConfigError(fmt::format("the sweep folder has no submission {}", options.submission),
                      ErrorContext::in_file(tasks_path(folder, options.submission).string()));
  std::optional<int64_t> index = options.index;
  if (!index) index = environment_integer("SLURM_ARRAY_TASK_ID");
  if (!index) index = environment_integer("JOB_COMPLETION_INDEX");
  if (!index)
    throw ConfigError("which task? none of --index, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX is set",
                      ErrorContext::in_file(tasks_path(folder, options.submission).string()));
  const std::vector<int64_t>& points = task_points(manifest, folder, *submission, *index);
  for (const auto& dir : manifest.plugin_dirs)
    if (std::find(registry.search_dirs().begin(), registry.search_dirs().end(), fs::path(dir)) ==
            registry.search_dirs().end() && fs::is_directory(dir))
      registry.add_search_dir(dir);
  SweepTaskOptions task = options;
  if (task.threads == 0) task.threads = environment_integer("SLURM_CPUS_PER_TASK").value_or(0);

  // Several processes (srun --ntasks-per-node, --nodes): one data-parallel run a point.
  std::unique_ptr<ProcessGroup> group;
  const Rendezvous rendezvous = rendezvous_from_environment();
  if (rendezvous.world > 1 && !points.empty()) {
    const Experiment first = manifest.search() ? manifest_search(manifest, registry).experiment
                                               : point_experiment(manifest, manifest.points[static_cast<size_t>(points.front())], registry);
    DistributedOptions distributed;
    distributed.timeout_seconds = options.timeout_seconds;
    group = std::make_unique<ProcessGroup>(rendezvous, distributed, select_device(first.settings().experiment.device));
  }
  // A model-based sweep: its frozen file loaded again; each point proposes its trial.
  std::optional<SweepRun> search;
  if (manifest.search()) {
    search = manifest_search(manifest, registry);
    if (group)
      throw ConfigError("a model-based sweep's task trains each trial in one process for now: srun started " +
                            std::to_string(group->world()),
                        ErrorContext::in_file(manifest.path.string(), "submit it with one process a task"));
  }
  const std::vector<SweepRun> trials = search ? search_trials(*search) : adaptive_trials(manifest, registry);
  SweepTaskResult result;
  result.index = *index;
  result.points = static_cast<int64_t>(points.size());
  result.leader = !group || group->rank() == 0;
  if (result.leader)
    fmt::print("difflab: task {} start {:.3f} on {} (points {}, restart {}{})\n", *index, unix_time(), host_name(),
               fmt::join(points, ","), environment_integer("SLURM_RESTART_COUNT").value_or(0),
               group ? fmt::format(", {} processes", group->world()) : "");
  for (int64_t point : points) {
    const bool stop = group ? group->max(StopRequest::requested() ? 1 : 0) > 0 : StopRequest::requested();
    if (stop) break;
    const ManifestPoint& entry = manifest.points[static_cast<size_t>(point)];
    result.finished += result.leader ? run_point(manifest, folder, *submission, entry, task, registry, group.get(), trials,
                                                 search ? &*search : nullptr)
                                     : follow_point(manifest, entry, task, registry, *group, trials);
  }
  result.signal = StopRequest::signal();
  return result;
}

}  // namespace difflab
