// The commands every launcher shares: submit a sweep, run one of its tasks, collect, status,
// cancel. Only the Launcher's own calls differ between Slurm and Kubernetes.
#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <map>

#include "cluster/command.h"
#include "cluster/kubernetes.h"
#include "cluster/launcher.h"
#include "cluster/slurm.h"
#include "difflab/error.h"
#include "plugin_host/registry.h"
#include "process/stop_request.h"
#include "training/trainer.h"

namespace difflab {
namespace fs = std::filesystem;

Launcher::~Launcher() = default;
std::string Launcher::accounting(const Submission&) const { return ""; }

std::unique_ptr<Launcher> launcher_of(const fs::path& submission) {
  if (fs::exists(submission / "job.yaml")) return std::make_unique<KubernetesLauncher>();
  return std::make_unique<SlurmLauncher>();
}

std::unique_ptr<Launcher> launcher_from_environment() {
  if (std::getenv("SLURM_JOB_ID") != nullptr) return std::make_unique<SlurmLauncher>();
  if (std::getenv("JOB_COMPLETION_INDEX") != nullptr) return std::make_unique<KubernetesLauncher>();
  return nullptr;
}

std::vector<std::string> task_command(const std::string& executable, const fs::path& folder, int64_t submission) {
  return {executable, "sweep", "task", folder.string(), "--submission", std::to_string(submission)};
}

namespace {

// The tasks still queued, or none when the folder has no submission; a warning (and none) when
// the scheduler does not answer and `strict` is off.
std::vector<QueuedTask> still_queued(const fs::path& folder, const std::vector<Submission>& all, bool strict) {
  if (all.empty()) return {};
  const auto launcher = launcher_of(submission_folder(folder, all.back().number));
  if (strict) return launcher->queued(all);
  try {
    return launcher->queued(all);
  } catch (const Error& error) {
    fmt::print(stderr, "difflab: warning: {}; the states below are the shards' alone\n", error.what());
    return {};
  }
}

}  // namespace

int submit_sweep(const fs::path& file, const std::vector<std::string>& overrides, PluginRegistry& registry,
                 const Launcher& launcher, const SubmitOptions& options) {
  if (options.runs_per_task < 1) throw ConfigError("--runs-per-task must be at least 1");
  std::vector<SweepRun> runs = load_sweep(file, overrides, registry);
  if (runs.front().adaptive && runs.front().adaptive->method == AdaptiveSweep::Method::successive_halving) {
    ErrorContext where = runs.front().adaptive->where.at("sweep.method");
    where.hint = "run it with difflab run FILE --workers N, or use method = \"asha\" on a cluster";
    throw ConfigError(fmt::format("difflab {} does not run synchronous successive halving yet: each rung would be "
                                  "one job, the next submitted by a job that decides the rung",
                                  launcher.name()),
                      where);
  }
  // Every point's data and components: bad input is exit 2 here, with nothing written.
  check_before_running(runs, registry);
  const Manifest manifest = make_manifest(file, runs, registry, options.folder, launcher.name());
  const fs::path folder = manifest.path.parent_path();
  freeze_manifest(manifest);

  const std::vector<QueuedTask> queued = still_queued(folder, submissions(folder), true);
  if (!queued.empty())
    throw RuntimeError(fmt::format("job {} of this sweep still has {} task(s) in the queue", queued.front().job_id,
                                   queued.size()),
                       ErrorContext::in_file(folder.string(), fmt::format("wait for it (difflab sweep status {}) or "
                                                                          "cancel it (difflab sweep cancel {}), then "
                                                                          "submit again",
                                                                          folder.string(), folder.string())));
  // What is there first (the points' states come from the shards in any case).
  if (!shard_files(folder).empty()) {
    try {
      collect_shards(folder, manifest.database);
    } catch (const Error& error) {
      fmt::print(stderr, "difflab: warning: the shards were not collected: {}\n  (difflab sweep collect {} "
                 "--database DB collects them elsewhere)\n", error.what(), folder.string());
    }
  }

  SubmissionPlan plan = plan_submission(manifest, folder, options.retry_failed, options.runs_per_task);
  fmt::print("difflab: sweep \"{}\": {} points — {} finished, {}{} failed{}, {} to run\n", manifest.name,
             manifest.points.size(), plan.finished, plan.pruned > 0 ? fmt::format("{} pruned, ", plan.pruned) : "",
             plan.failed,
             plan.failed > 0 && !options.retry_failed ? " (--retry-failed submits them again)" : "", plan.points);
  if (plan.points == 0) {
    fmt::print("difflab: nothing to submit; the results are in {}\n", manifest.database);
    return plan.failed > 0 ? 1 : 0;
  }
  Submission& submission = plan.submission;
  write_submission(folder, submission);
  const fs::path job = launcher.write_job(manifest, folder, submission, options);
  if (options.dry_run) {
    fmt::print("difflab: dry run: wrote {} ({} tasks); submit it with difflab {} --apply, or by hand\nfolder: {}\n",
               job.string(), submission.tasks.size(), launcher.name(), folder.string());
    return 0;
  }
  submission.job_id = launcher.submit(job);
  write_job_id(folder, submission);
  fmt::print("difflab: submitted job {} ({} tasks for {} points)\nfolder: {}\n"
             "watch it with: difflab sweep status {}\ncollect with:  difflab sweep collect {}\n",
             submission.job_id, submission.tasks.size(), plan.points, folder.string(), folder.string(),
             folder.string());
  return 0;
}

int sweep_task(const SweepTaskOptions& options, PluginRegistry& registry) {
  const SweepTaskResult result = run_sweep_task(options, registry);
  if (!result.leader) return result.signal != 0 ? 130 : (result.finished == result.points ? 0 : 1);
  int code = result.finished == result.points ? 0 : 1;
  if (result.signal == kWarningSignal) {
    fmt::print("difflab: task {} warned by signal {} (a time limit or a preemption is near)\n", result.index,
               result.signal);
    // The point checkpointed and is interrupted: it resumes wherever the task runs again.
    if (const auto launcher = launcher_from_environment(); launcher == nullptr || !launcher->requeue_this_task())
      fmt::print("difflab: task {} not requeued; its point resumes when the task runs again\n", result.index);
    code = 0;
  } else if (result.signal != 0) {
    code = 130;
  }
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  fmt::print("difflab: task {} end {:.3f} exit {}\n", result.index, now, code);
  return code;
}

int sweep_collect(const fs::path& folder, const std::string& database) {
  const Manifest manifest = read_manifest(fs::absolute(folder));
  return collect_shards(fs::absolute(folder), database.empty() ? manifest.database : database);
}

int sweep_status(const fs::path& folder_argument) {
  const fs::path folder = fs::absolute(folder_argument);
  const Manifest manifest = read_manifest(folder);
  const std::vector<Submission> all = submissions(folder);
  // Each point's newest submission and task, and that task's queue state.
  std::map<int64_t, std::pair<const Submission*, int64_t>> task_of;
  for (const auto& submission : all)
    for (size_t task = 0; task < submission.tasks.size(); ++task)
      for (int64_t point : submission.tasks[task]) task_of[point] = {&submission, static_cast<int64_t>(task)};
  std::map<std::pair<std::string, int64_t>, QueuedTask> queue;
  for (const auto& queued : still_queued(folder, all, false)) queue[{queued.job_id, queued.task}] = queued;

  const PointStates states(manifest, folder);
  std::map<std::string, int64_t> counts;
  std::vector<std::string> lines;
  for (const auto& point : manifest.points) {
    const PointState state = states.of(point);
    std::string shown = state.status ? to_string(*state.status) : "", detail;
    auto task = task_of.find(point.index);
    const QueuedTask* queued = nullptr;
    if (task != task_of.end()) {
      auto found = queue.find({task->second.first->job_id, task->second.second});
      if (found != queue.end()) queued = &found->second;
    }
    if (state.status != RunStatus::finished && queued != nullptr) {
      shown = queued->running ? "running" : "pending";
      detail = fmt::format("job {} task {} {}{}", queued->job_id, queued->task, queued->state,
                           queued->reason.empty() ? "" : " (" + queued->reason + ")");
    } else if (!state.status) {
      shown = task == task_of.end() ? "not submitted" : "not run";
    } else if (*state.status == RunStatus::running) {
      shown = "lost";  // a shard that says running, and no task in the queue: killed hard
      detail = "its task left the queue during the run; submit again to resume it";
    } else if (*state.status != RunStatus::finished && !state.error.empty()) {
      detail = state.error;
    }
    if (state.rung) detail = fmt::format("rung {}{}{}", *state.rung, detail.empty() ? "" : "; ", detail);
    if (!state.shard_problem.empty()) detail += (detail.empty() ? "" : "; ") + std::string("shard: ") + state.shard_problem;
    ++counts[shown];
    lines.push_back(fmt::format("{:>5}  {:<13} {:>6}  {}{}", point.index, shown,
                                state.run_id > 0 ? std::to_string(state.run_id) : "-",
                                point.point.empty() ? "(no sweep)" : point.point,
                                detail.empty() ? "" : "\n       " + detail));
  }
  fmt::print("sweep \"{}\" in {}: {} points, {} submission(s){}\n", manifest.name, folder.string(),
             manifest.points.size(), all.size(),
             all.empty() ? "" : fmt::format(" (last: job {})", all.back().job_id.empty() ? "not submitted" : all.back().job_id));
  std::string summary;
  for (const auto& [shown, count] : counts) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", count, shown);
  fmt::print("{}\n\npoint  status           run  assignments\n", summary);
  for (const auto& line : lines) fmt::print("{}\n", line);
  // Accounting, where the scheduler keeps it: how each task of the last submission ended.
  if (!all.empty())
    if (const std::string accounting = launcher_of(submission_folder(folder, all.back().number))->accounting(all.back());
        !accounting.empty())
      fmt::print("\n{}", accounting);
  return 0;
}

int sweep_cancel(const fs::path& folder_argument) {
  const fs::path folder = fs::absolute(folder_argument);
  read_manifest(folder);  // a config Error for a folder that is not a sweep's
  const std::vector<Submission> all = submissions(folder);
  if (all.empty() || all.back().job_id.empty()) {
    fmt::print("difflab: {} has no submitted job to cancel\n", folder.string());
    return 0;
  }
  const auto launcher = launcher_of(submission_folder(folder, all.back().number));
  launcher->cancel(all.back());
  fmt::print("difflab: cancelled job {} ({}); its interrupted points resume when the sweep is submitted again\n",
             all.back().job_id, launcher->name());
  return 0;
}

}  // namespace difflab
