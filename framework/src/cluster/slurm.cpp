#include "cluster/slurm.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/experiment.h"
#include "difflab/cache.h"
#include "difflab/error.h"
#include "difflab/files.h"
#include "difflab/version.h"
#include "plugin_host/registry.h"
#include "results/merge.h"
#include "results/results_store.h"
#include "model/components.h"
#include "training/distributed.h"
#include "training/run_trainer.h"
#include "training/trainer.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kManifestFormat = 1;
// The warning signal: SIGUSR2, not SIGUSR1, which NCCL takes for itself.
constexpr int kWarningSignal = SIGUSR2;

struct ManifestPoint {
  int64_t index = 0;
  std::string config_hash;
  std::string point;    // "loss.plugin=\"mse\", experiment.seed=1"
  std::string variant;  // the same without the seed
  std::string config;   // the resolved experiment (Experiment::to_toml)
};

struct Manifest {
  fs::path path;
  std::string sweep_hash;
  std::string name;
  std::string experiment_file;
  std::string base_dir;  // the experiment file's folder (its relative plugin_paths)
  std::string database;  // the experiment's database, absolute: where collect merges
  std::vector<std::string> plugin_dirs;
  std::vector<ManifestPoint> points;
};

fs::path manifest_path(const fs::path& folder) { return folder / "manifest.toml"; }
fs::path shard_path(const fs::path& folder, int64_t point) {
  return folder / "shards" / fmt::format("point-{:04}.sqlite", point);
}
fs::path point_folder(const fs::path& folder, int64_t point) { return folder / "points" / fmt::format("{:04}", point); }
fs::path submission_folder(const fs::path& folder, int64_t submission) {
  return folder / fmt::format("submit-{:03}", submission);
}

std::string sweep_hash(const std::vector<SweepRun>& runs) {
  std::string hashes;
  for (const auto& run : runs) hashes += run.experiment.config_hash();
  return fmt::format("{:016x}", fnv1a(hashes.data(), hashes.size()));
}

toml::array strings(const std::vector<std::string>& values) {
  toml::array array;
  for (const auto& value : values) array.push_back(value);
  return array;
}

std::string to_text(const toml::table& table) {
  std::ostringstream text;
  text << table << "\n";
  return text.str();
}

void write_manifest(const Manifest& manifest) {
  toml::table root;
  root.insert("format", kManifestFormat);
  root.insert("difflab_version", std::string(DIFFLAB_VERSION));
  root.insert("sweep_hash", manifest.sweep_hash);
  root.insert("name", manifest.name);
  root.insert("experiment_file", manifest.experiment_file);
  root.insert("base_dir", manifest.base_dir);
  root.insert("database", manifest.database);
  root.insert("plugin_dirs", strings(manifest.plugin_dirs));
  toml::array points;
  for (const auto& point : manifest.points)
    points.push_back(toml::table{{"index", point.index}, {"config_hash", point.config_hash},
                                 {"point", point.point}, {"variant", point.variant}, {"config", point.config}});
  root.insert("points", std::move(points));
  write_file_atomically(manifest.path, "# difflab sweep manifest: written by difflab slurm; do not edit\n" +
                                           to_text(root));
}

template <typename T>
T required(const toml::table& table, const std::string& key, const fs::path& file) {
  const std::optional<T> value = table[key].value<T>();
  if (!value) throw ConfigError("missing or mistyped key", ErrorContext::for_key(file.string(), key, "the manifest is "
                                                                                   "written by difflab slurm"));
  return *value;
}

Manifest read_manifest(const fs::path& folder) {
  Manifest manifest;
  manifest.path = manifest_path(folder);
  if (!fs::is_regular_file(manifest.path))
    throw ConfigError("not a difflab sweep folder (no manifest.toml)",
                      ErrorContext::in_file(folder.string(), "give the folder difflab slurm printed"));
  toml::table root;
  try {
    root = toml::parse_file(manifest.path.string());
  } catch (const toml::parse_error& error) {
    throw ConfigError(std::string("damaged manifest: ") + std::string(error.description()),
                      {manifest.path.string(), static_cast<int64_t>(error.source().begin.line),
                       static_cast<int64_t>(error.source().begin.column), "", ""});
  }
  const std::string file = manifest.path.string();
  if (required<int64_t>(root, "format", file) != kManifestFormat)
    throw ConfigError("a manifest of another format", ErrorContext::for_key(file, "format", "written by another "
                                                                                          "difflab version"));
  manifest.sweep_hash = required<std::string>(root, "sweep_hash", file);
  manifest.name = required<std::string>(root, "name", file);
  manifest.experiment_file = required<std::string>(root, "experiment_file", file);
  manifest.base_dir = required<std::string>(root, "base_dir", file);
  manifest.database = required<std::string>(root, "database", file);
  if (const toml::array* dirs = root["plugin_dirs"].as_array())
    for (const auto& dir : *dirs)
      if (auto text = dir.value<std::string>()) manifest.plugin_dirs.push_back(*text);
  const toml::array* points = root["points"].as_array();
  if (points == nullptr) throw ConfigError("no points", ErrorContext::for_key(file, "points"));
  for (const auto& node : *points) {
    const toml::table* table = node.as_table();
    if (table == nullptr) throw ConfigError("a point that is not a table", ErrorContext::for_key(file, "points"));
    ManifestPoint point;
    point.index = required<int64_t>(*table, "index", file);
    point.config_hash = required<std::string>(*table, "config_hash", file);
    point.point = required<std::string>(*table, "point", file);
    point.variant = required<std::string>(*table, "variant", file);
    point.config = required<std::string>(*table, "config", file);
    if (point.index != static_cast<int64_t>(manifest.points.size()))
      throw ConfigError("points out of order", ErrorContext::for_key(file, "points.index"));
    manifest.points.push_back(std::move(point));
  }
  return manifest;
}

// One submission: which points each array task trains.
struct Submission {
  int64_t number = 0;
  std::vector<std::vector<int64_t>> tasks;
  bool retry_failed = false;
  std::string job_id;  // empty for a dry run, or before sbatch answered
};

fs::path tasks_path(const fs::path& folder, int64_t number) { return submission_folder(folder, number) / "tasks.toml"; }
fs::path job_id_path(const fs::path& folder, int64_t number) { return submission_folder(folder, number) / "job_id"; }

std::optional<Submission> read_submission(const fs::path& folder, int64_t number) {
  const fs::path path = tasks_path(folder, number);
  if (!fs::is_regular_file(path)) return std::nullopt;
  toml::table root;
  try {
    root = toml::parse_file(path.string());
  } catch (const toml::parse_error& error) {
    throw ConfigError(std::string("damaged task list: ") + std::string(error.description()),
                      ErrorContext::in_file(path.string()));
  }
  Submission submission;
  submission.number = number;
  submission.retry_failed = root["retry_failed"].value_or(false);
  const toml::array* tasks = root["tasks"].as_array();
  if (tasks == nullptr) throw ConfigError("no tasks", ErrorContext::for_key(path.string(), "tasks"));
  for (const auto& task : *tasks) {
    std::vector<int64_t> points;
    if (const toml::array* list = task.as_array())
      for (const auto& point : *list) points.push_back(point.value_or(int64_t{-1}));
    submission.tasks.push_back(std::move(points));
  }
  std::ifstream job(job_id_path(folder, number));
  std::getline(job, submission.job_id);
  return submission;
}

std::vector<Submission> submissions(const fs::path& folder) {
  std::vector<Submission> all;
  for (int64_t number = 1;; ++number) {
    if (!fs::exists(submission_folder(folder, number))) break;
    if (auto submission = read_submission(folder, number)) all.push_back(std::move(*submission));
  }
  return all;
}

// Runs a command (no shell: its words are quoted) and returns its exit code and output.
struct CommandOutput {
  int code = -1;
  std::string output;
};

std::string shell_quote(const std::string& word) {
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

CommandOutput run_command(const std::vector<std::string>& words) {
  std::string line;
  for (const auto& word : words) line += (line.empty() ? "" : " ") + shell_quote(word);
  line += " 2>&1";
  CommandOutput result;
  FILE* pipe = popen(line.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t count;
  while ((count = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, count);
  const int status = pclose(pipe);
  result.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

bool have_program(const std::string& name) { return run_command({"sh", "-c", "command -v " + name}).code == 0; }

// Where a point stands, from its shard (the newest word on it) and the database.
struct PointState {
  std::string status = "none";  // none | running | interrupted | finished | failed | diverged
  int64_t run_id = 0;
  std::string error;
  std::string source;  // "shard" or "database"
};

std::string state_of(const RunRecord& run) {
  if (run.status == "failed" && run.error.rfind("interrupted", 0) == 0) return "interrupted";
  return run.status;
}

class PointStates {
 public:
  PointStates(const Manifest& manifest, const fs::path& folder) : folder_(folder) {
    if (fs::is_regular_file(manifest.database)) database_ = std::make_unique<ResultsStore>(manifest.database, OpenMode::read_only);
  }
  PointState of(const ManifestPoint& point, std::string* shard_problem_text = nullptr) const {
    PointState state;
    const fs::path shard = shard_path(folder_, point.index);
    if (fs::exists(shard)) {
      const std::string problem = shard_problem(shard);
      if (!problem.empty()) {
        if (shard_problem_text) *shard_problem_text = problem;
      } else if (auto run = ResultsStore(shard, OpenMode::read_only).latest_run(point.config_hash)) {
        state = {state_of(*run), run->id, run->error, "shard"};
      }
    }
    if (database_ && state.status != "finished")
      if (auto run = database_->latest_run(point.config_hash); run && (run->status == "finished" || state.status == "none"))
        state = {state_of(*run), run->id, run->error, "database"};
    return state;
  }

 private:
  fs::path folder_;
  std::unique_ptr<ResultsStore> database_;
};

fs::path default_folder(const std::vector<SweepRun>& runs, const std::string& hash) {
  const ExperimentSettings settings = runs.front().experiment.settings().experiment;
  std::string safe;
  for (char c : settings.name) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return fs::path(settings.output_dir) / "slurm" / fmt::format("{}-{}", safe, hash.substr(0, 8));
}

std::string executable_path() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? "difflab" : self.string();
}

std::string sbatch_script(const Manifest& manifest, const fs::path& folder, const Submission& submission,
                          const SlurmSubmitOptions& options) {
  const fs::path logs = submission_folder(folder, submission.number) / "logs";
  std::string array = fmt::format("0-{}", submission.tasks.size() - 1);
  if (options.array_parallelism > 0) array += fmt::format("%{}", options.array_parallelism);
  std::string text = "#!/bin/bash\n";
  text += fmt::format("# difflab sweep \"{}\" ({} points), submission {}: {} tasks.\n", manifest.name,
                      manifest.points.size(), submission.number, submission.tasks.size());
  text += fmt::format("# Task K trains the points listed under K in {}.\n", tasks_path(folder, submission.number).string());
  text += fmt::format("#SBATCH --job-name=difflab-{}\n", manifest.name);
  text += fmt::format("#SBATCH --array={}\n", array);
  const int64_t per_node = options.tasks_per_node > 0 ? options.tasks_per_node : std::max<int64_t>(1, options.gpus_per_node);
  const bool parallel = options.nodes * per_node > 1;
  if (parallel) {
    text += fmt::format("#SBATCH --nodes={}\n#SBATCH --ntasks-per-node={}\n", options.nodes, per_node);
    if (options.gpus_per_node > 0) text += fmt::format("#SBATCH --gpus-per-node={}\n", options.gpus_per_node);
  } else {
    text += "#SBATCH --ntasks=1\n";
  }
  text += "#SBATCH --requeue\n";
  // One process: the warning goes to the batch shell, which is difflab itself (exec below).
  // Several: to every process of the step srun starts; they agree to stop at the same step.
  text += fmt::format("#SBATCH --signal={}USR2@{}\n", parallel ? "" : "B:", options.warning_seconds);
  text += "#SBATCH --open-mode=append\n";
  text += fmt::format("#SBATCH --output={}/task-%a.log\n", logs.string());
  text += fmt::format("#SBATCH --chdir={}\n", fs::current_path().string());
  if (options.cpus_per_task > 0) text += fmt::format("#SBATCH --cpus-per-task={}\n", options.cpus_per_task);
  if (options.gpus_per_task > 0) text += fmt::format("#SBATCH --gpus-per-task={}\n", options.gpus_per_task);
  if (!options.partition.empty()) text += fmt::format("#SBATCH --partition={}\n", options.partition);
  if (!options.time.empty()) text += fmt::format("#SBATCH --time={}\n", options.time);
  for (const auto& argument : options.sbatch_args) text += fmt::format("#SBATCH {}\n", argument);
  text += fmt::format("exec {}{} slurm task {} --submission {}\n", parallel ? "srun --kill-on-bad-exit=1 " : "",
                      shell_quote(executable_path()), shell_quote(folder.string()), submission.number);
  return text;
}

void write_submission(const fs::path& folder, const Submission& submission) {
  toml::array tasks;
  for (const auto& points : submission.tasks) {
    toml::array list;
    for (int64_t point : points) list.push_back(point);
    tasks.push_back(std::move(list));
  }
  toml::table root{{"submission", submission.number}, {"retry_failed", submission.retry_failed},
                   {"tasks", std::move(tasks)}};
  write_file_atomically(tasks_path(folder, submission.number), to_text(root));
}

std::vector<fs::path> shard_files(const fs::path& folder) {
  std::vector<fs::path> shards;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder / "shards", error))
    if (entry.path().extension() == ".sqlite") shards.push_back(entry.path());
  std::sort(shards.begin(), shards.end());
  return shards;
}

int collect(const Manifest& manifest, const fs::path& folder, const std::string& database) {
  const std::vector<fs::path> shards = shard_files(folder);
  ResultsStore main(database);
  const MergeReport report = merge_shards(main, shards);
  fmt::print("difflab: collected {} of {} shards into {}: {} runs added, {} updated, {} unchanged\n",
             report.shards_merged, shards.size(), database, report.runs_added, report.runs_updated,
             report.runs_unchanged);
  for (const auto& problem : report.skipped)
    fmt::print(stderr, "difflab: skipped shard {}: {}\n", problem.shard.string(), problem.message);
  std::fflush(stdout);
  return report.skipped.empty() ? 0 : 1;
}

// The submissions' array tasks still in the queue: (job id, task, state, reason).
struct QueuedTask {
  std::string job_id;
  int64_t task = -1;
  std::string state, reason;
};

// Throws a runtime Error when squeue is there but does not answer: without it nobody can tell
// whether a point is still being trained.
std::vector<QueuedTask> queued_tasks(const std::vector<Submission>& all) {
  std::vector<QueuedTask> queued;
  std::vector<std::string> ids;
  for (const auto& submission : all)
    if (!submission.job_id.empty()) ids.push_back(submission.job_id);
  if (ids.empty() || !have_program("squeue")) return queued;
  const CommandOutput output =
      run_command({"squeue", "--noheader", "--array", "--jobs", fmt::format("{}", fmt::join(ids, ",")),
                   "--format=%F|%K|%T|%r"});
  // squeue answers "Invalid job id specified" (exit 1) once every job it is asked about has left
  // the controller's memory (MinJobAge): nothing is queued then.
  if (output.code != 0 && output.output.find("Invalid job id") == std::string::npos)
    throw RuntimeError(fmt::format("squeue failed (exit code {}): {}", output.code, output.output),
                       ErrorContext::with_hint("is the Slurm controller reachable from here?"));
  std::istringstream lines(output.output);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> fields;
    std::stringstream split(line);
    for (std::string field; std::getline(split, field, '|');) fields.push_back(field);
    if (fields.size() != 4) continue;
    QueuedTask task{fields[0], -1, fields[2], fields[3]};
    try {
      task.task = std::stoll(fields[1]);
    } catch (const std::exception&) {
      // "0-5%2": the array's pending tasks, not yet split
      const size_t dash = fields[1].find('-');
      if (dash == std::string::npos) continue;
      const int64_t first = std::stoll(fields[1].substr(0, dash));
      const int64_t last = std::stoll(fields[1].substr(dash + 1, fields[1].find('%') - dash - 1));
      for (int64_t k = first; k <= last; ++k) queued.push_back({fields[0], k, fields[2], fields[3]});
      continue;
    }
    queued.push_back(task);
  }
  return queued;
}

}  // namespace

int slurm_submit(const fs::path& file, const std::vector<std::string>& overrides, PluginRegistry& registry,
                 const SlurmSubmitOptions& options) {
  if (options.runs_per_task < 1) throw ConfigError("--runs-per-task must be at least 1");
  std::vector<SweepRun> runs = load_sweep(file, overrides, registry);
  // Every point's data and components: bad input is exit 2 here, with nothing written.
  check_before_running(runs, registry);
  Manifest manifest;
  manifest.sweep_hash = sweep_hash(runs);
  const fs::path folder = fs::absolute(options.folder.empty() ? default_folder(runs, manifest.sweep_hash)
                                                              : fs::path(options.folder)).lexically_normal();
  manifest.path = manifest_path(folder);
  manifest.name = runs.front().experiment.settings().experiment.name;
  manifest.experiment_file = fs::absolute(file).lexically_normal().string();
  manifest.base_dir = fs::absolute(file).parent_path().lexically_normal().string();
  manifest.database = fs::absolute(runs.front().experiment.settings().experiment.database).lexically_normal().string();
  for (const auto& dir : registry.search_dirs()) manifest.plugin_dirs.push_back(fs::absolute(dir).string());
  for (const auto& run : runs) {
    if (fs::absolute(run.experiment.settings().experiment.database).lexically_normal().string() != manifest.database)
      throw ConfigError("every point of a Slurm sweep must use one database",
                        ErrorContext::for_key(file.string(), "experiment.database"));
    manifest.points.push_back({static_cast<int64_t>(manifest.points.size()), run.experiment.config_hash(), run.point,
                               run.variant, run.experiment.to_toml()});
  }
  if (fs::exists(manifest.path)) {
    const Manifest existing = read_manifest(folder);
    if (existing.sweep_hash != manifest.sweep_hash)
      throw ConfigError(fmt::format("the folder holds another sweep (sweep hash {}, this one's is {})",
                                    existing.sweep_hash, manifest.sweep_hash),
                        ErrorContext::in_file(folder.string(), "give another --folder"));
  } else {
    fs::create_directories(folder / "shards");
    write_manifest(manifest);
  }

  std::vector<Submission> earlier = submissions(folder);
  const std::vector<QueuedTask> queued = queued_tasks(earlier);
  if (!queued.empty())
    throw RuntimeError(fmt::format("job {} of this sweep still has {} task(s) in the queue", queued.front().job_id,
                                   queued.size()),
                       ErrorContext::in_file(folder.string(), fmt::format("wait for it (difflab slurm status {}) or "
                                                                          "scancel {}, then submit again",
                                                                          folder.string(), queued.front().job_id)));
  // What is there first (the points' states come from the shards in any case).
  if (!shard_files(folder).empty()) {
    try {
      collect(manifest, folder, manifest.database);
    } catch (const Error& error) {
      fmt::print(stderr, "difflab: warning: the shards were not collected: {}\n  (difflab slurm collect {} "
                 "--database DB collects them elsewhere)\n", error.what(), folder.string());
    }
  }

  // The points to submit: not finished, and not failed unless asked.
  const PointStates states(manifest, folder);
  std::vector<int64_t> todo;
  int64_t finished = 0, failed = 0;
  for (const auto& point : manifest.points) {
    const PointState state = states.of(point);
    if (state.status == "finished") ++finished;
    else if ((state.status == "failed" || state.status == "diverged") && !options.retry_failed) ++failed;
    else todo.push_back(point.index);
  }
  fmt::print("difflab: sweep \"{}\": {} points — {} finished, {} failed{}, {} to run\n", manifest.name,
             manifest.points.size(), finished, failed, failed > 0 && !options.retry_failed ? " (--retry-failed "
                                                                                             "submits them again)" : "",
             todo.size());
  if (todo.empty()) {
    fmt::print("difflab: nothing to submit; the results are in {}\n", manifest.database);
    return failed > 0 ? 1 : 0;
  }
  Submission submission;
  submission.number = static_cast<int64_t>(earlier.size()) + 1;
  while (fs::exists(submission_folder(folder, submission.number))) ++submission.number;
  submission.retry_failed = options.retry_failed;
  for (size_t i = 0; i < todo.size(); i += static_cast<size_t>(options.runs_per_task))
    submission.tasks.emplace_back(todo.begin() + static_cast<std::ptrdiff_t>(i),
                                  todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), i + options.runs_per_task)));
  const fs::path here = submission_folder(folder, submission.number);
  fs::create_directories(here / "logs");
  write_submission(folder, submission);
  const fs::path script = here / "job.sbatch";
  write_file_atomically(script, sbatch_script(manifest, folder, submission, options));
  fs::permissions(script, fs::perms::owner_exec, fs::perm_options::add);
  if (options.dry_run) {
    fmt::print("difflab: dry run: wrote {} ({} tasks); submit it with: sbatch {}\nfolder: {}\n", script.string(),
               submission.tasks.size(), script.string(), folder.string());
    return 0;
  }
  if (!have_program("sbatch"))
    throw RuntimeError("sbatch not found: this is not a Slurm login node",
                       ErrorContext::in_file(script.string(), "--dry-run writes the script without submitting it"));
  const CommandOutput output = run_command({"sbatch", "--parsable", script.string()});
  std::string job_id = output.output.substr(0, output.output.find_first_of(";\n"));
  if (output.code != 0 || job_id.empty() || !std::all_of(job_id.begin(), job_id.end(), ::isdigit))
    throw RuntimeError(fmt::format("sbatch failed (exit code {}): {}", output.code, output.output),
                       ErrorContext::in_file(script.string()));
  write_file_atomically(job_id_path(folder, submission.number), job_id + "\n");
  fmt::print("difflab: submitted job {} ({} tasks for {} points)\nfolder: {}\n"
             "watch it with: difflab slurm status {}\ncollect with:  difflab slurm collect {}\n",
             job_id, submission.tasks.size(), todo.size(), folder.string(), folder.string(), folder.string());
  return 0;
}

namespace {

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

fs::path local_shard_folder() {
  for (const char* name : {"DIFFLAB_SHARD_DIR", "SLURM_TMPDIR", "TMPDIR"})
    if (const char* dir = std::getenv(name); dir != nullptr && *dir != '\0') return dir;
  return "/tmp";
}

void remove_database(const fs::path& path) {
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(path.string() + suffix, ignored);
}

// Asks Slurm to put this array element (only it) back in the queue.
void requeue_self() {
  std::string job;
  if (auto array_job = environment_integer("SLURM_ARRAY_JOB_ID")) {
    job = fmt::format("{}_{}", *array_job, environment_integer("SLURM_ARRAY_TASK_ID").value_or(0));
  } else if (auto single = environment_integer("SLURM_JOB_ID")) {
    job = std::to_string(*single);
  }
  if (job.empty()) {
    fmt::print("difflab: not under Slurm: not requeued; the point resumes when this task runs again\n");
    return;
  }
  const CommandOutput output = run_command({"scontrol", "requeue", job});
  if (output.code == 0) fmt::print("difflab: requeued {}; it resumes from its checkpoint\n", job);
  else fmt::print(stderr, "difflab: scontrol requeue {} failed: {}\n", job, output.output);
}

Experiment point_experiment(const Manifest& manifest, const ManifestPoint& point, PluginRegistry& registry) {
  const std::string source = fmt::format("{} (point {})", manifest.path.string(), point.index);
  Experiment experiment = parse_experiment(point.config, source, {}, registry, manifest.base_dir);
  if (experiment.config_hash() != point.config_hash)
    throw ConfigError(fmt::format("point {} resolves to config hash {} now, not the manifest's {}: a plugin's "
                                  "schema or defaults changed since the sweep was submitted",
                                  point.index, experiment.config_hash(), point.config_hash),
                      ErrorContext::in_file(manifest.path.string(), "submit the sweep again into a new --folder"));
  return experiment;
}

// A rank other than 0 of a data-parallel task: trains the point with rank 0, which alone keeps
// its shard.
bool follow_point(const Manifest& manifest, const ManifestPoint& point, const SlurmTaskOptions& options,
                  PluginRegistry& registry, ProcessGroup& group) {
  const Experiment experiment = point_experiment(manifest, point, registry);
  RunOptions run;
  run.threads = options.threads;
  run.variant = point.variant;
  run.distributed = &group;
  run.after_epoch = options.after_epoch;
  run.after_step = options.after_step;
  try {
    const RunResult result = run_experiment(experiment, registry, run);
    return result.outcome == RunOutcome::trained || result.outcome == RunOutcome::finished_before;
  } catch (const std::exception& error) {
    fmt::print(stderr, "difflab: rank {}: point {} stopped: {}\n", group.rank(), point.index, describe(error));
    return false;
  }
}

// Trains one point into a local shard that starts as the shared one; returns whether it finished.
bool run_point(const Manifest& manifest, const fs::path& folder, const Submission& submission,
               const ManifestPoint& point, const SlurmTaskOptions& options, PluginRegistry& registry,
               ProcessGroup* group) {
  Experiment experiment = point_experiment(manifest, point, registry);
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
  {
    ResultsStore store(local);
    // This task alone owns the point: a "running" row is a dead earlier instance of it.
    if (store.abandon_running(point.config_hash, "its Slurm task ended before the run did") > 0)
      fmt::print("difflab: point {}: taking over the run its previous task left running\n", point.index);
  }
  RunOptions run;
  run.retry_failed = submission.retry_failed;
  run.threads = options.threads;
  run.variant = point.variant;
  run.database = local.string();
  run.output_dir = point_folder(folder, point.index).string();
  run.distributed = group;
  run.after_epoch = [&](int64_t epoch) {
    snapshot_database(local, shared);  // what a killed task leaves: the point up to this epoch
    if (options.after_epoch) options.after_epoch(epoch);
  };
  run.after_step = options.after_step;
  fmt::print("== point {} ({}): {}\n", point.index, point.config_hash, point.point.empty() ? "(no sweep)" : point.point);
  std::fflush(stdout);
  bool finished = false;
  std::string failure;
  try {
    const RunResult result = run_experiment(experiment, registry, run);
    finished = result.outcome == RunOutcome::trained || result.outcome == RunOutcome::finished_before;
    if (result.outcome != RunOutcome::trained) fmt::print("   skipped: run {} {}\n", result.run_id, result.detail);
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
  if (fs::exists(local)) snapshot_database(local, shared);
  remove_database(local);
  std::fflush(stdout);
  std::fflush(stderr);
  return finished;
}

}  // namespace

int slurm_task(const SlurmTaskOptions& options, PluginRegistry& registry) {
  // Held for the whole task: a warning that comes between points stops the task as well.
  InterruptGuard signals({SIGINT, SIGTERM, kWarningSignal});
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
  if (*index < 0 || *index >= static_cast<int64_t>(submission->tasks.size()))
    throw ConfigError(fmt::format("task {} does not exist: submission {} has tasks 0 to {}", *index,
                                  options.submission, submission->tasks.size() - 1),
                      ErrorContext::in_file(tasks_path(folder, options.submission).string()));
  for (const auto& dir : manifest.plugin_dirs)
    if (std::find(registry.search_dirs().begin(), registry.search_dirs().end(), fs::path(dir)) ==
            registry.search_dirs().end() && fs::is_directory(dir))
      registry.add_search_dir(dir);
  SlurmTaskOptions task = options;
  if (task.threads == 0) task.threads = environment_integer("SLURM_CPUS_PER_TASK").value_or(0);

  const std::vector<int64_t>& points = submission->tasks[static_cast<size_t>(*index)];
  for (int64_t point : points)
    if (point < 0 || point >= static_cast<int64_t>(manifest.points.size()))
      throw ConfigError(fmt::format("task {} names point {}, and the manifest has {}", *index, point,
                                    manifest.points.size()),
                        ErrorContext::in_file(tasks_path(folder, options.submission).string()));
  // Several processes (srun --ntasks-per-node, --nodes): one data-parallel run a point.
  std::unique_ptr<ProcessGroup> group;
  const Rendezvous rendezvous = rendezvous_from_environment();
  if (rendezvous.world > 1 && !points.empty()) {
    const Experiment first = point_experiment(manifest, manifest.points[static_cast<size_t>(points.front())], registry);
    DistributedOptions distributed;
    distributed.timeout_seconds = options.timeout_seconds;
    group = std::make_unique<ProcessGroup>(rendezvous, distributed, select_device(first.settings().experiment.device));
  }
  const bool leader = !group || group->rank() == 0;
  if (leader)
    fmt::print("difflab: task {} start {:.3f} on {} (points {}, restart {}{})\n", *index, unix_time(), host_name(),
               fmt::join(points, ","), environment_integer("SLURM_RESTART_COUNT").value_or(0),
               group ? fmt::format(", {} processes", group->world()) : "");
  int64_t finished = 0;
  for (int64_t point : points) {
    const bool stop = group ? group->max(InterruptGuard::received() != 0 ? 1 : 0) > 0 : InterruptGuard::received() != 0;
    if (stop) break;
    const ManifestPoint& entry = manifest.points[static_cast<size_t>(point)];
    finished += leader ? run_point(manifest, folder, *submission, entry, task, registry, group.get())
                       : follow_point(manifest, entry, task, registry, *group);
  }
  int signal = InterruptGuard::received();
  if (!leader) return signal != 0 ? 130 : (finished == static_cast<int64_t>(points.size()) ? 0 : 1);
  int code = finished == static_cast<int64_t>(points.size()) ? 0 : 1;
  if (signal == kWarningSignal) {
    fmt::print("difflab: task {} warned by signal {} (a time limit or a preemption is near)\n", *index, signal);
    requeue_self();
    code = 0;
  } else if (signal != 0) {
    code = 130;
  }
  fmt::print("difflab: task {} end {:.3f} exit {}\n", *index, unix_time(), code);
  return code;
}

int slurm_collect(const fs::path& folder, const std::string& database) {
  const Manifest manifest = read_manifest(fs::absolute(folder));
  return collect(manifest, fs::absolute(folder), database.empty() ? manifest.database : database);
}

int slurm_status(const fs::path& folder_argument) {
  const fs::path folder = fs::absolute(folder_argument);
  const Manifest manifest = read_manifest(folder);
  const std::vector<Submission> all = submissions(folder);
  // Each point's newest submission and task, and that task's queue state.
  std::map<int64_t, std::pair<const Submission*, int64_t>> task_of;
  for (const auto& submission : all)
    for (size_t task = 0; task < submission.tasks.size(); ++task)
      for (int64_t point : submission.tasks[task]) task_of[point] = {&submission, static_cast<int64_t>(task)};
  std::map<std::pair<std::string, int64_t>, QueuedTask> queue;
  try {
    for (const auto& queued : queued_tasks(all)) queue[{queued.job_id, queued.task}] = queued;
  } catch (const Error& error) {
    fmt::print(stderr, "difflab: warning: {}; the states below are the shards' alone\n", error.what());
  }

  const PointStates states(manifest, folder);
  std::map<std::string, int64_t> counts;
  std::vector<std::string> lines;
  for (const auto& point : manifest.points) {
    std::string problem;
    PointState state = states.of(point, &problem);
    std::string status = state.status, detail;
    auto task = task_of.find(point.index);
    const QueuedTask* queued = nullptr;
    if (task != task_of.end()) {
      auto found = queue.find({task->second.first->job_id, task->second.second});
      if (found != queue.end()) queued = &found->second;
    }
    if (status != "finished" && queued != nullptr) {
      status = queued->state == "RUNNING" ? "running" : "pending";
      detail = fmt::format("job {}_{} {}{}", queued->job_id, queued->task, queued->state,
                           queued->reason.empty() || queued->reason == "None" ? "" : " (" + queued->reason + ")");
    } else if (status == "none") {
      status = task == task_of.end() ? "not submitted" : "not run";
    } else if (status == "running") {
      status = "lost";  // a shard that says running, and no task in the queue: killed hard
      detail = "its task left the queue during the run; submit again to resume it";
    }
    if ((status == "failed" || status == "diverged" || status == "interrupted") && !state.error.empty())
      detail = state.error;
    if (!problem.empty()) detail += (detail.empty() ? "" : "; ") + std::string("shard: ") + problem;
    ++counts[status];
    lines.push_back(fmt::format("{:>5}  {:<13} {:>6}  {}{}", point.index, status,
                                state.run_id > 0 ? std::to_string(state.run_id) : "-",
                                point.point.empty() ? "(no sweep)" : point.point,
                                detail.empty() ? "" : "\n       " + detail));
  }
  fmt::print("sweep \"{}\" in {}: {} points, {} submission(s){}\n", manifest.name, folder.string(),
             manifest.points.size(), all.size(),
             all.empty() ? "" : fmt::format(" (last: job {})", all.back().job_id.empty() ? "not submitted" : all.back().job_id));
  std::string summary;
  for (const auto& [status, count] : counts) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", count, status);
  fmt::print("{}\n\npoint  status           run  assignments\n", summary);
  for (const auto& line : lines) fmt::print("{}\n", line);
  // Accounting, where the cluster keeps it: how each task of the last submission ended.
  if (!all.empty() && !all.back().job_id.empty() && have_program("sacct")) {
    const CommandOutput output = run_command({"sacct", "--noheader", "--parsable2", "--allocations", "--jobs",
                                              all.back().job_id, "--format=JobID,State,ExitCode,Elapsed"});
    if (output.code == 0 && !output.output.empty() && output.output.find("not enabled") == std::string::npos)
      fmt::print("\nsacct (job {}):\n{}", all.back().job_id, output.output);
  }
  return 0;
}

}  // namespace difflab
