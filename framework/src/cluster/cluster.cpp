// The commands every launcher shares: submit a sweep, run one of its tasks, collect, status,
// cancel. Only the Launcher's own calls differ between Slurm and Kubernetes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <optional>
#include <set>

#include "cluster/command.h"
#include "cluster/kubernetes.h"
#include "cluster/launcher.h"
#include "cluster/slurm.h"
#include "difflab/error.h"
#include "plugin_host/registry.h"
#include "process/stop_request.h"
#include "sweep/halving.h"
#include "training/trainer.h"

namespace difflab {
namespace fs = std::filesystem;

Launcher::~Launcher() = default;
std::string Launcher::accounting(const Submission&) const { return ""; }
std::string Launcher::submit_decider(const Manifest&, const fs::path& folder, const Submission&) const {
  throw RuntimeError(fmt::format("difflab {} cannot start a job after another", name()),
                     ErrorContext::in_file(folder.string()));
}

std::unique_ptr<Launcher> launcher_of(const fs::path& submission) {
  if (fs::exists(submission / "job.yaml")) return std::make_unique<KubernetesLauncher>();
  return std::make_unique<SlurmLauncher>(read_slurm_options(submission));
}

SubmitOptions submit_options_of(const fs::path& submission) {
  SubmitOptions options;
  const fs::path path = submission / "submit.toml";
  if (!fs::exists(path)) return options;
  const toml::table root = read_toml_file(path, "submit options");
  options.cpus_per_task = root["cpus_per_task"].value_or(int64_t{0});
  options.gpus_per_task = root["gpus_per_task"].value_or(int64_t{0});
  options.array_parallelism = root["array_parallelism"].value_or(int64_t{0});
  options.runs_per_task = root["runs_per_task"].value_or(int64_t{1});
  return options;
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

bool halving(const Manifest& manifest) {
  return manifest.adaptive && manifest.adaptive->synchronous;
}

void write_submit_options(const fs::path& folder, const Submission& submission, const SubmitOptions& options) {
  const toml::table root{{"cpus_per_task", options.cpus_per_task},
                         {"gpus_per_task", options.gpus_per_task},
                         {"array_parallelism", options.array_parallelism},
                         {"runs_per_task", options.runs_per_task}};
  write_toml_file(submission_folder(folder, submission.number) / "submit.toml",
                  "the options of difflab slurm / k8s for this submission; a decider's next pass takes them", root);
}

// Writes a submission and its job; unless a dry run, submits it and, for a successive-halving
// sweep, its decider after it. Returns the job's path.
fs::path launch(const Launcher& launcher, const Manifest& manifest, const fs::path& folder, Submission& submission,
                const SubmitOptions& options) {
  write_submission(folder, submission);
  write_submit_options(folder, submission, options);
  const fs::path job = launcher.write_job(manifest, folder, submission, options);
  if (options.dry_run) return job;
  submission.job_id = launcher.submit(job);
  write_job_id(folder, submission);
  if (halving(manifest)) {
    submission.decider_job_id = launcher.submit_decider(manifest, folder, submission);
    write_decider_job_id(folder, submission);
  }
  return job;
}

std::string list(const std::vector<int64_t>& points) { return fmt::format("{}", fmt::join(points, ", ")); }

}  // namespace

int submit_sweep(const fs::path& file, const std::vector<std::string>& overrides, PluginRegistry& registry,
                 const Launcher& launcher, const SubmitOptions& options) {
  if (options.runs_per_task < 1) throw ConfigError("--runs-per-task must be at least 1");
  std::vector<SweepRun> runs = load_sweep(file, overrides, registry);
  if (runs.front().adaptive && runs.front().adaptive->synchronous &&
      !launcher.chains_jobs()) {
    ErrorContext where = runs.front().adaptive->where.at("sweep.method");
    where.hint = "run it with difflab slurm FILE or difflab run FILE --workers N, or use method = \"asha\", which "
                 "needs no coordinator";
    throw ConfigError(fmt::format("difflab {} cannot run synchronous successive halving: each rung is one job, and "
                                  "the next is started by a job that runs after it, which {} cannot chain",
                                  launcher.name(), launcher.name()),
                      where);
  }
  // Every point's data and components: bad input is exit 2 here, with nothing written.
  check_before_running(runs, registry);
  const Manifest manifest = make_manifest(file, runs, registry, options.folder, launcher.name(), overrides);
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
  std::optional<HalvingPosition> position;
  if (halving(manifest)) {
    position = halving_position(manifest, folder);
    submission.rung = position->rung;
  }
  const fs::path job = launch(launcher, manifest, folder, submission, options);
  if (options.dry_run) {
    fmt::print("difflab: dry run: wrote {} ({} tasks); submit it by hand, or with difflab {} FILE {}\n", job.string(),
               submission.tasks.size(), launcher.name(), launcher.name() == "k8s" ? "--apply" : "without --dry-run");
    if (position)
      fmt::print("difflab: successive halving: after the job, run difflab sweep decide {} --submission {}\n",
                 folder.string(), submission.number);
    fmt::print("folder: {}\n", folder.string());
    return 0;
  }
  fmt::print("difflab: submitted job {} ({} tasks for {} points)\n", submission.job_id, submission.tasks.size(),
             plan.points);
  if (position)
    fmt::print("difflab: successive halving to {}: job {} decides it once job {} has ended, and submits the "
               "promoted trials\n", position->describe(), submission.decider_job_id, submission.job_id);
  fmt::print("folder: {}\nwatch it with: difflab sweep status {}\ncollect with:  difflab sweep collect {}\n",
             folder.string(), folder.string(), folder.string());
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

int sweep_decide(const fs::path& folder_argument, int64_t number, bool dry_run) {
  constexpr int64_t kPassesPerRung = 3;
  const fs::path folder = fs::absolute(folder_argument);
  const Manifest manifest = read_manifest(folder);
  const std::optional<Submission> ended = read_submission(folder, number);
  if (!ended)
    throw ConfigError(fmt::format("the sweep folder has no submission {}", number),
                      ErrorContext::in_file(tasks_path(folder, number).string()));
  // A decider that runs again (requeued after its node failed) finds its pass's successor already
  // submitted: deciding again would submit the same trials twice.
  const std::vector<Submission> all = submissions(folder);
  if (!all.empty() && all.back().number > number) {
    fmt::print("difflab: submission {} came after submission {}: it was decided before; nothing to do\n",
               all.back().number, number);
    return 0;
  }
  HalvingPosition position = halving_position(manifest, folder);
  fmt::print("difflab: sweep \"{}\" after submission {}: {} of {} trials in the running, at {}\n", manifest.name,
             number, position.running.size(), manifest.points.size(), position.describe());
  std::vector<int64_t> next;
  if (!position.behind.empty()) {
    const int64_t passes = std::count_if(all.begin(), all.end(), [&](const Submission& s) { return s.rung == position.rung; });
    if (passes >= kPassesPerRung) {
      fmt::print(stderr, "difflab: point(s) {} have not reached {} in {} passes; see their logs "
                 "(difflab sweep status {}); difflab slurm FILE submits them again\n",
                 list(position.behind), position.describe(), passes, folder.string());
      return 1;
    }
    fmt::print("difflab: point(s) {} have not reached {}: submitting them again\n", list(position.behind),
               position.describe());
    next = position.behind;
  } else if (!position.at_end()) {
    const DecidedRung decided = decide_halving_in_folder(manifest, folder, position);
    next = decided.promoted;
    fmt::print("difflab: rung {} decided: {} of {} trial(s) go on (points {})\n", position.rung, next.size(),
               decided.trials, list(next));
    position = position.next();
  } else {
    fmt::print("difflab: every trial is finished or pruned; collect with: difflab sweep collect {}\n",
               folder.string());
    return 0;
  }
  SubmitOptions options = submit_options_of(submission_folder(folder, number));
  options.dry_run = dry_run;
  Submission submission = new_submission(folder, next, options.runs_per_task);
  submission.rung = position.rung;
  const auto launcher = launcher_of(submission_folder(folder, number));
  const fs::path job = launch(*launcher, manifest, folder, submission, options);
  const std::string tasks = fmt::format("{} task{}", submission.tasks.size(), submission.tasks.size() == 1 ? "" : "s");
  if (dry_run)
    fmt::print("difflab: dry run: wrote {} ({}) for {}\n", job.string(), tasks, position.describe());
  else
    fmt::print("difflab: submitted job {} ({}) for {}, decided by job {} after it\n", submission.job_id, tasks,
               position.describe(), submission.decider_job_id);
  return 0;
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

  // Successive halving: where the sweep stands, and which points wait there for the decider.
  std::optional<HalvingPosition> position;
  std::set<int64_t> waiting;
  if (halving(manifest)) {
    position = halving_position(manifest, folder);
    for (int64_t point : position->running)
      if (std::find(position->behind.begin(), position->behind.end(), point) == position->behind.end())
        waiting.insert(point);
  }
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
      shown = task == task_of.end() ? "not submitted" : manifest.search() && !state.proposed ? "not proposed" : "not run";
    } else if (waiting.count(point.index) > 0 && *state.status == RunStatus::interrupted) {
      shown = "waiting";  // at the rung, for the decider
      detail = fmt::format("at {}", position->describe());
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
                                manifest.search() ? state.proposed.value_or("(proposed when its task starts)")
                                : point.point.empty() ? "(no sweep)" : point.point,
                                detail.empty() ? "" : "\n       " + detail));
  }
  fmt::print("sweep \"{}\" in {}: {} points, {} submission(s){}\n", manifest.name, folder.string(),
             manifest.points.size(), all.size(),
             all.empty() ? "" : fmt::format(" (last: job {})", all.back().job_id.empty() ? "not submitted" : all.back().job_id));
  std::string summary;
  for (const auto& [shown, count] : counts) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", count, shown);
  fmt::print("{}\n", summary);
  if (position) {
    fmt::print("successive halving: {} of {} trials in the running, at {}{}\n", position->running.size(),
               manifest.points.size(), position->describe(),
               position->behind.empty() ? (position->at_end() ? "" : "; every one has reached it")
                                        : fmt::format("; {} not there yet", position->behind.size()));
    if (!all.empty() && !all.back().decider_job_id.empty()) {
      auto decider = queue.find({all.back().decider_job_id, -1});
      fmt::print("decider: job {} {}\n", all.back().decider_job_id,
                 decider == queue.end() ? "ended"
                                        : decider->second.state + (decider->second.reason.empty()
                                                                       ? ""
                                                                       : " (" + decider->second.reason + ")"));
    }
  }
  fmt::print("\npoint  status           run  assignments\n");
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
  fmt::print("difflab: cancelled job {}{} ({}); its interrupted points resume when the sweep is submitted again\n",
             all.back().job_id,
             all.back().decider_job_id.empty() ? "" : " and its decider, job " + all.back().decider_job_id,
             launcher->name());
  return 0;
}

}  // namespace difflab
