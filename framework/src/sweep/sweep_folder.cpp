#include "sweep/sweep_folder.h"

#include "strategy/strategy.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

#include "difflab/cache.h"
#include "difflab/error.h"
#include "difflab/files.h"
#include "difflab/version.h"
#include "plugin_host/registry.h"
#include "results/merge.h"
#include "results/results_store.h"
#include "strategy/strategy.h"
#include "sweep/adaptive.h"
#include "sweep/search.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kManifestFormat = 1;

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
  toml::array dirs;
  for (const auto& dir : manifest.plugin_dirs) dirs.push_back(dir);
  root.insert("plugin_dirs", std::move(dirs));
  toml::array points;
  for (const auto& point : manifest.points)
    points.push_back(toml::table{{"index", point.index}, {"config_hash", point.config_hash},
                                 {"point", point.point}, {"variant", point.variant}, {"config", point.config}});
  root.insert("points", std::move(points));
  if (!manifest.sweep_settings.empty()) {
    root.insert("sweep_method", manifest.sweep_method);
    root.insert("sweep_settings", manifest.sweep_settings);
  }
  if (manifest.search()) {
    root.insert("search_text", manifest.search_text);
    toml::array overrides;
    for (const auto& value : manifest.overrides) overrides.push_back(value);
    root.insert("overrides", std::move(overrides));
  }
  if (const auto& adaptive = manifest.adaptive) {
    // The pruner by name and its keys' values, whatever keys it declares.
    toml::table table{{"method", adaptive->name}, {"metric", adaptive->metric}, {"maximize", adaptive->maximize}};
    for (const auto& [key, value] : adaptive->settings.values()) {
      if (value.type == StrategyKey::Type::number) table.insert(key, value.number);
      else if (value.type == StrategyKey::Type::boolean) table.insert(key, value.number != 0.0);
      else table.insert(key, static_cast<int64_t>(value.number));
    }
    root.insert("adaptive", std::move(table));
  }
  write_toml_file(manifest.path, "difflab sweep manifest: written by difflab slurm / k8s; do not edit", root);
}

template <typename T>
T required(const toml::table& table, const std::string& key, const std::string& file) {
  const std::optional<T> value = table[key].value<T>();
  if (!value) throw ConfigError("missing or mistyped key", ErrorContext::for_key(file, key, "the manifest is written "
                                                                                             "by difflab"));
  return *value;
}

fs::path job_id_path(const fs::path& folder, int64_t number) { return submission_folder(folder, number) / "job_id"; }
fs::path decider_job_id_path(const fs::path& folder, int64_t number) {
  return submission_folder(folder, number) / "decider_job_id";
}

}  // namespace

std::string sweep_hash(const std::vector<SweepRun>& runs) {
  std::string hashes;
  for (const auto& run : runs) hashes += run.experiment.config_hash();
  return fmt::format("{:016x}", fnv1a(hashes.data(), hashes.size()));
}

std::shared_ptr<const SweepTrialRecord> point_sweep_trial(const Manifest& manifest, const ManifestPoint& point,
                                                          const Experiment& experiment) {
  if (manifest.sweep_settings.empty()) return nullptr;
  SweepRun run{experiment, point.point, point.variant, nullptr, point.index,
               std::make_shared<const std::string>(manifest.sweep_settings), manifest.sweep_method};
  if (manifest.adaptive) run.adaptive = std::make_shared<const AdaptiveSweep>(*manifest.adaptive);
  return sweep_trial_record(run, static_cast<int64_t>(manifest.points.size()), manifest.sweep_hash);
}

toml::table read_toml_file(const fs::path& path, const char* what) {
  try {
    return toml::parse_file(path.string());
  } catch (const toml::parse_error& error) {
    throw ConfigError(fmt::format("damaged {}: {}", what, error.description()),
                      ErrorContext::at(path.string(), error.source().begin.line, error.source().begin.column));
  }
}

void write_toml_file(const fs::path& path, const std::string& comment, const toml::table& table) {
  write_file_atomically(path, "# " + comment + "\n" + to_text(table));
}

fs::path manifest_path(const fs::path& folder) { return folder / "manifest.toml"; }
fs::path shard_path(const fs::path& folder, int64_t point) {
  return folder / "shards" / fmt::format("point-{:04}.sqlite", point);
}
fs::path point_folder(const fs::path& folder, int64_t point) { return folder / "points" / fmt::format("{:04}", point); }
fs::path submission_folder(const fs::path& folder, int64_t submission) {
  return folder / fmt::format("submit-{:03}", submission);
}
fs::path tasks_path(const fs::path& folder, int64_t number) { return submission_folder(folder, number) / "tasks.toml"; }

Manifest make_manifest(const fs::path& file, const std::vector<SweepRun>& runs, const PluginRegistry& registry,
                       const std::string& folder, const std::string& launcher,
                       const std::vector<std::string>& overrides) {
  Manifest manifest;
  manifest.sweep_hash = runs.front().search ? search_hash(runs.front()) : sweep_hash(runs);
  const ExperimentSettings& settings = runs.front().experiment.settings().experiment;
  fs::path where = folder;
  if (where.empty()) {
    std::string safe;
    for (char c : settings.name) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
    where = fs::path(settings.output_dir) / launcher / fmt::format("{}-{}", safe, manifest.sweep_hash.substr(0, 8));
  }
  manifest.path = manifest_path(fs::absolute(where).lexically_normal());
  manifest.name = settings.name;
  manifest.experiment_file = fs::absolute(file).lexically_normal().string();
  manifest.base_dir = fs::absolute(file).parent_path().lexically_normal().string();
  manifest.database = fs::absolute(settings.database).lexically_normal().string();
  for (const auto& dir : registry.search_dirs()) manifest.plugin_dirs.push_back(fs::absolute(dir).string());
  if (runs.front().search) {
    std::ifstream in(file);
    std::ostringstream text;
    text << in.rdbuf();
    manifest.search_text = text.str();
    manifest.overrides = overrides;
    for (int64_t trial = 0; trial < runs.front().search->space.trials; ++trial) manifest.points.push_back({trial, "", "", "", ""});
  }
  for (const auto& run : runs) {
    if (run.search) break;
    if (fs::absolute(run.experiment.settings().experiment.database).lexically_normal().string() != manifest.database)
      throw ConfigError("every point of a cluster sweep must use one database",
                        ErrorContext::for_key(file.string(), "experiment.database"));
    manifest.points.push_back({static_cast<int64_t>(manifest.points.size()), run.experiment.config_hash(), run.point,
                               run.variant, run.experiment.to_toml()});
  }
  if (runs.front().adaptive) manifest.adaptive = *runs.front().adaptive;
  if (runs.front().sweep_settings) {
    manifest.sweep_method = runs.front().sweep_method;
    manifest.sweep_settings = *runs.front().sweep_settings;
  }
  return manifest;
}

void freeze_manifest(const Manifest& manifest) {
  const fs::path folder = manifest.path.parent_path();
  if (fs::exists(manifest.path)) {
    const Manifest existing = read_manifest(folder);
    if (existing.sweep_hash != manifest.sweep_hash)
      throw ConfigError(fmt::format("the folder holds another sweep (sweep hash {}, this one's is {})",
                                    existing.sweep_hash, manifest.sweep_hash),
                        ErrorContext::in_file(folder.string(), "give another --folder"));
    return;
  }
  fs::create_directories(folder / "shards");
  write_manifest(manifest);
}

Manifest read_manifest(const fs::path& folder) {
  Manifest manifest;
  manifest.path = manifest_path(folder);
  if (!fs::is_regular_file(manifest.path))
    throw ConfigError("not a difflab sweep folder (no manifest.toml)",
                      ErrorContext::in_file(folder.string(), "give the folder difflab slurm or difflab k8s printed"));
  const toml::table root = read_toml_file(manifest.path, "manifest");
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
  manifest.sweep_method = root["sweep_method"].value_or(std::string());
  manifest.sweep_settings = root["sweep_settings"].value_or(std::string());
  manifest.search_text = root["search_text"].value_or(std::string());
  if (const toml::array* overrides = root["overrides"].as_array())
    for (const auto& value : *overrides)
      if (auto text = value.value<std::string>()) manifest.overrides.push_back(*text);
  if (const toml::table* table = root["adaptive"].as_table()) {
    const std::string method = required<std::string>(*table, "method", file);
    const PrunerKind* kind = find_pruner(method);
    if (kind == nullptr)
      throw ConfigError("unknown pruner \"" + method + "\"",
                        ErrorContext::for_key(file, "adaptive.method", "written by another difflab version"));
    StrategySettings settings(kind->keys, file);
    for (const StrategyKey& key : kind->keys) {
      const ErrorContext where = ErrorContext::for_key(file, "adaptive." + key.name);
      if (key.type == StrategyKey::Type::number) settings.set(key.name, required<double>(*table, key.name, file), where);
      else if (key.type == StrategyKey::Type::boolean) settings.set(key.name, required<bool>(*table, key.name, file), where);
      else settings.set(key.name, static_cast<double>(required<int64_t>(*table, key.name, file)), where);
    }
    manifest.adaptive = make_adaptive(*kind, std::move(settings), required<std::string>(*table, "metric", file),
                                      required<bool>(*table, "maximize", file));
  }
  return manifest;
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

SweepRun manifest_search(const Manifest& manifest, PluginRegistry& registry) {
  std::vector<SweepRun> runs =
      parse_sweep(manifest.search_text, manifest.experiment_file, manifest.overrides, registry, manifest.base_dir);
  if (!runs.front().search || search_hash(runs.front()) != manifest.sweep_hash)
    throw ConfigError(fmt::format("the frozen experiment resolves to sweep hash {} now, not the manifest's {}: a "
                                  "plugin's schema or defaults changed since the sweep was submitted",
                                  runs.front().search ? search_hash(runs.front()) : "(not a model-based sweep)",
                                  manifest.sweep_hash),
                      ErrorContext::in_file(manifest.path.string(), "submit the sweep again into a new --folder"));
  return std::move(runs.front());
}

std::optional<Submission> read_submission(const fs::path& folder, int64_t number) {
  const fs::path path = tasks_path(folder, number);
  if (!fs::is_regular_file(path)) return std::nullopt;
  const toml::table root = read_toml_file(path, "task list");
  Submission submission;
  submission.number = number;
  submission.retry_failed = root["retry_failed"].value_or(false);
  submission.rung = root["rung"].value_or(int64_t{-1});
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
  std::ifstream decider(decider_job_id_path(folder, number));
  std::getline(decider, submission.decider_job_id);
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

void write_submission(const fs::path& folder, const Submission& submission) {
  fs::create_directories(submission_folder(folder, submission.number) / "logs");
  toml::array tasks;
  for (const auto& points : submission.tasks) {
    toml::array list;
    for (int64_t point : points) list.push_back(point);
    tasks.push_back(std::move(list));
  }
  toml::table root{{"submission", submission.number}, {"retry_failed", submission.retry_failed},
                   {"tasks", std::move(tasks)}};
  if (submission.rung >= 0) root.insert("rung", submission.rung);
  write_file_atomically(tasks_path(folder, submission.number), to_text(root));
}

void write_job_id(const fs::path& folder, const Submission& submission) {
  write_file_atomically(job_id_path(folder, submission.number), submission.job_id + "\n");
}

void write_decider_job_id(const fs::path& folder, const Submission& submission) {
  write_file_atomically(decider_job_id_path(folder, submission.number), submission.decider_job_id + "\n");
}

Submission new_submission(const fs::path& folder, const std::vector<int64_t>& points, int64_t runs_per_task) {
  Submission submission;
  submission.number = static_cast<int64_t>(submissions(folder).size()) + 1;
  while (fs::exists(submission_folder(folder, submission.number))) ++submission.number;
  const size_t per_task = static_cast<size_t>(std::max<int64_t>(1, runs_per_task));
  for (size_t i = 0; i < points.size(); i += per_task)
    submission.tasks.emplace_back(points.begin() + static_cast<std::ptrdiff_t>(i),
                                  points.begin() + static_cast<std::ptrdiff_t>(std::min(points.size(), i + per_task)));
  return submission;
}

PointStates::PointStates(const Manifest& manifest, const fs::path& folder)
    : folder_(folder), sweep_hash_(manifest.sweep_hash), search_(manifest.search()) {
  if (fs::is_regular_file(manifest.database))
    database_ = std::make_unique<ResultsStore>(manifest.database, OpenMode::read_only);
}

PointStates::~PointStates() = default;

PointState PointStates::of(const ManifestPoint& point) const {
  PointState state;
  const fs::path shard = shard_path(folder_, point.index);
  if (fs::exists(shard)) {
    state.shard_problem = shard_problem(shard);
    if (state.shard_problem.empty()) {
      ResultsStore store(shard, OpenMode::read_only);
      if (search_)
        if (const auto proposal = recorded_proposal(store, sweep_hash_, point.index))
          state.proposed = fmt::format("{}", fmt::join(proposal->assignments, ", "));
      if (auto run = search_ ? store.trial_run(sweep_hash_, point.index) : store.latest_run(point.config_hash)) {
        state.status = run->status, state.run_id = run->id, state.error = run->error;
        for (const DecisionRecord& decision : store.decisions(run->id))
          state.rung = std::max(state.rung.value_or(0), decision.rung);
      }
    }
  }
  // The database has the last word only for a point finished there (collected, or run there).
  if (database_ && state.status != RunStatus::finished) {
    auto run = search_ ? database_->trial_run(sweep_hash_, point.index) : database_->latest_run(point.config_hash);
    if (run && (run->status == RunStatus::finished || !state.status))
      state.status = run->status, state.run_id = run->id, state.error = run->error;
    if (search_ && !state.proposed)
      if (const auto proposal = recorded_proposal(*database_, sweep_hash_, point.index))
        state.proposed = fmt::format("{}", fmt::join(proposal->assignments, ", "));
  }
  return state;
}

SubmissionPlan plan_submission(const Manifest& manifest, const fs::path& folder, bool retry_failed,
                               int64_t runs_per_task) {
  SubmissionPlan plan;
  const PointStates states(manifest, folder);
  std::vector<int64_t> todo;
  for (const auto& point : manifest.points) {
    const PointState state = states.of(point);
    if (state.status == RunStatus::finished) ++plan.finished;
    else if (state.status == RunStatus::pruned) ++plan.pruned;
    else if (state.status && ended_in_error(*state.status) && !retry_failed) ++plan.failed;
    else todo.push_back(point.index);
  }
  plan.points = static_cast<int64_t>(todo.size());
  plan.submission = new_submission(folder, todo, runs_per_task);
  plan.submission.retry_failed = retry_failed;
  return plan;
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

std::vector<fs::path> shard_files(const fs::path& folder) {
  std::vector<fs::path> shards;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder / "shards", error))
    if (entry.path().extension() == ".sqlite") shards.push_back(entry.path());
  std::sort(shards.begin(), shards.end());
  return shards;
}

int collect_shards(const fs::path& folder, const std::string& database) {
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

}  // namespace difflab
