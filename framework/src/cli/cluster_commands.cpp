// slurm, k8s and sweep task|collect|status|cancel: a sweep on a cluster. `slurm task|collect|
// status|cancel` are the same commands under their first names.
#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "cli/command.h"
#include "cluster/kubernetes.h"
#include "cluster/launcher.h"
#include "cluster/slurm.h"
#include "results/results_store.h"
#include "results/sweep_progress.h"
#include "sweep/search.h"
#include "plugin_host/registry.h"

namespace difflab {
namespace {

SubmitOptions submit_options(const po::variables_map& values) {
  SubmitOptions options;
  options.folder = text(values, "folder");
  options.gpus_per_task = integer(values, "gpus-per-task", 0);
  options.cpus_per_task = integer(values, "cpus-per-task", 0);
  options.array_parallelism = integer(values, "array-parallelism", 0);
  options.runs_per_task = integer(values, "runs-per-task", 1);
  options.retry_failed = flag(values, "retry-failed");
  return options;
}

int command_slurm(const po::variables_map& values) {
  SlurmOptions slurm;
  slurm.partition = text(values, "partition");
  slurm.time = text(values, "time");
  slurm.warning_seconds = integer(values, "warning-seconds", 1);
  slurm.nodes = integer(values, "nodes", 1);
  slurm.gpus_per_node = integer(values, "gpus-per-node", 0);
  slurm.tasks_per_node = integer(values, "ntasks-per-node", 0);
  if (values.count("sbatch-arg")) slurm.sbatch_args = values["sbatch-arg"].as<std::vector<std::string>>();
  SubmitOptions options = submit_options(values);
  options.dry_run = flag(values, "dry-run");
  PluginRegistry registry;
  return submit_sweep(text(values, "file"), overrides(values), registry, SlurmLauncher(slurm), options);
}

int command_k8s(const po::variables_map& values) {
  KubernetesOptions kubernetes;
  kubernetes.image = text(values, "image");
  kubernetes.claim = text(values, "claim");
  kubernetes.namespace_name = text(values, "namespace");
  kubernetes.executable = text(values, "executable");
  kubernetes.retries_per_task = integer(values, "retries-per-task", 0);
  SubmitOptions options = submit_options(values);
  options.dry_run = !flag(values, "apply");
  PluginRegistry registry;
  return submit_sweep(text(values, "file"), overrides(values), registry, KubernetesLauncher(kubernetes), options);
}

int command_sweep_task(const po::variables_map& values) {
  SweepTaskOptions options;
  options.folder = text(values, "FOLDER");
  options.submission = integer(values, "submission", 1);
  if (values.count("index")) options.index = integer(values, "index", 0);
  options.threads = integer(values, "threads", 0);
  options.timeout_seconds = static_cast<double>(integer(values, "timeout", 1));
  options.after_epoch = after_epoch_from_environment();
  options.after_step = after_step_from_environment();
  PluginRegistry registry;
  return sweep_task(options, registry);
}

int command_sweep_decide(const po::variables_map& values) {
  return sweep_decide(text(values, "FOLDER"), integer(values, "submission", 1), flag(values, "dry-run"));
}

int command_sweep_collect(const po::variables_map& values) {
  return sweep_collect(text(values, "FOLDER"), text(values, "database"));
}
int command_sweep_status(const po::variables_map& values) { return sweep_status(text(values, "FOLDER")); }
int command_sweep_cancel(const po::variables_map& values) { return sweep_cancel(text(values, "FOLDER")); }

void add_submit_options(Command& command, const std::string& folder_default) {
  add_set_option(command.options);
  command.options.add_options()
      ("folder", po::value<std::string>()->value_name("DIR"),
       ("the sweep folder on a filesystem every task sees (default: " + folder_default + ")").c_str())
      ("cpus-per-task", po::value<int64_t>()->default_value(0)->value_name("C"),
       "CPUs of each task; a task then uses C LibTorch threads")
      ("gpus-per-task", po::value<int64_t>()->default_value(0)->value_name("G"), "GPUs of each task")
      ("array-parallelism", po::value<int64_t>()->default_value(0)->value_name("K"),
       "at most K tasks at once (0: no limit)")
      ("runs-per-task", po::value<int64_t>()->default_value(1)->value_name("R"),
       "points trained one after the other by each task")
      ("retry-failed", po::bool_switch(), "submit points whose last run failed or diverged too");
}

void add_slurm(CommandTable& table) {
  Command& slurm = table.add("slurm", "FILE", "submit a sweep to Slurm as a job array (shard databases, "
                             "preemption with requeue); again: submit only what has not finished", {"file"}, 1,
                             command_slurm);
  add_submit_options(slurm, "<output_dir>/slurm/<name>-<sweep hash>");
  slurm.options.add_options()
      ("partition", po::value<std::string>()->value_name("P"), "sbatch --partition")
      ("time", po::value<std::string>()->value_name("T"), "sbatch --time per task, e.g. 04:00:00")
      ("warning-seconds", po::value<int64_t>()->default_value(120)->value_name("S"),
       "--signal=B:USR2@S: the warning before a time limit or preemption, to checkpoint and requeue")
      ("sbatch-arg", po::value<std::vector<std::string>>()->composing()->value_name("ARG"),
       "one more sbatch option, e.g. --sbatch-arg=--account=abc (repeatable)")
      ("nodes", po::value<int64_t>()->default_value(1)->value_name("N"),
       "data parallel: each point's run across N nodes (srun, c10d)")
      ("gpus-per-node", po::value<int64_t>()->default_value(0)->value_name("G"),
       "data parallel: G GPUs a node, one process each")
      ("ntasks-per-node", po::value<int64_t>()->default_value(0)->value_name("P"),
       "data parallel: P processes a node (default: --gpus-per-node, or 1)")
      ("dry-run", po::bool_switch(), "write the manifest and the sbatch script, do not submit");
}

void add_k8s(CommandTable& table) {
  Command& k8s = table.add("k8s", "FILE", "write a sweep as a Kubernetes Indexed Job (job.yaml; shard databases "
                           "on a shared volume); --apply submits it with kubectl", {"file"}, 1, command_k8s);
  add_submit_options(k8s, "<output_dir>/k8s/<name>-<sweep hash>");
  const KubernetesOptions defaults;
  k8s.options.add_options()
      ("image", po::value<std::string>()->default_value(defaults.image)->value_name("IMAGE"),
       "the container image, with difflab on its PATH and the data at the experiment's paths")
      ("claim", po::value<std::string>()->default_value(defaults.claim)->value_name("PVC"),
       "the PersistentVolumeClaim mounted at the sweep folder's path in every pod")
      ("namespace", po::value<std::string>()->value_name("NS"), "the Job's namespace (default: kubectl's)")
      ("executable", po::value<std::string>()->default_value(defaults.executable)->value_name("PATH"),
       "difflab inside the image")
      ("retries-per-task", po::value<int64_t>()->default_value(defaults.retries_per_task)->value_name("N"),
       "backoffLimit = N x tasks: pods the Job may start again (a preempted pod resumes its point)")
      ("apply", po::bool_switch(), "submit it: kubectl apply -f job.yaml");
}

void add_task(CommandTable& table, const std::string& name, const std::string& summary) {
  Command& task = table.add(name, "FOLDER", summary, {"FOLDER"}, 1, command_sweep_task);
  task.options.add_options()
      ("submission", po::value<int64_t>()->default_value(1)->value_name("N"), "the submission (submit-NNN)")
      ("index", po::value<int64_t>()->value_name("K"),
       "the task (default: SLURM_ARRAY_TASK_ID, then JOB_COMPLETION_INDEX)")
      ("threads", po::value<int64_t>()->default_value(0)->value_name("N"),
       "LibTorch threads (0: SLURM_CPUS_PER_TASK, else the experiment's)")
      ("timeout", po::value<int64_t>()->default_value(300)->value_name("S"),
       "data parallel: a rank silent this long fails the run");
}

void add_collect(CommandTable& table, const std::string& name, const std::string& summary) {
  Command& collect = table.add(name, "FOLDER", summary, {"FOLDER"}, 1, command_sweep_collect);
  collect.options.add_options()("database", po::value<std::string>()->value_name("DB"),
                                "merge into DB instead (e.g. a local path when the experiment's database is on a "
                                "network filesystem)");
}

// The folder commands under `prefix` ("sweep", or "slurm" for their first names).
void add_folder_commands(CommandTable& table, const std::string& prefix) {
  auto summary = [&](const std::string& word, const std::string& text) {
    return prefix == "sweep" ? text : "the same as difflab sweep " + word;
  };
  add_task(table, prefix + " task", summary("task", "one task of a cluster sweep: what job.sbatch and job.yaml run "
                                                    "(its index from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)"));
  add_collect(table, prefix + " collect", summary("collect", "merge a cluster sweep's shard databases into its "
                                                             "experiment's database"));
  Command& decide = table.add(
      prefix + " decide", "FOLDER",
      summary("decide", "successive halving on a cluster: the job after each pass; decides the rung in the shards "
                        "and submits the promoted trials as the next pass"),
      {"FOLDER"}, 1, command_sweep_decide);
  decide.options.add_options()
      ("submission", po::value<int64_t>()->default_value(1)->value_name("N"), "the pass that ended (submit-NNN)")
      ("dry-run", po::bool_switch(), "write the next pass's job, do not submit it");
  table.add(prefix + " status", "FOLDER",
            summary("status", "every point of a cluster sweep: finished, running, pending, failed (with its "
                              "message), from the shards and the scheduler"),
            {"FOLDER"}, 1, command_sweep_status);
  table.add(prefix + " cancel", "FOLDER",
            summary("cancel", "cancel a cluster sweep's last submission (scancel, kubectl delete job)"), {"FOLDER"},
            1, command_sweep_cancel);
}

}  // namespace

// `difflab sweep replay DB`: every proposal and every asha/hyperband decision recomputed from the
// database alone; exit 1 on any disagreement, naming it.
int command_sweep_replay(const po::variables_map& values) {
  const std::string database = text(values, "DB");
  if (!std::filesystem::exists(database)) throw ConfigError("no such database", ErrorContext::in_file(database));
  const ResultsStore store(database, OpenMode::read_only);
  const ReplayOutcome proposals = replay_proposals(store);
  const DecisionReplay decisions = replay_decisions(store);
  fmt::print("{}: {} of {} proposals agree; {} of {} decisions agree{}\n", database, proposals.agreeing,
             proposals.proposals, decisions.agreeing, decisions.decisions - decisions.not_replayed,
             decisions.not_replayed > 0 ? fmt::format(" ({} median or synchronous ones not replayed)",
                                                      decisions.not_replayed)
                                        : "");
  for (const std::string& disagreement : proposals.disagreements) fmt::print("  disagrees: {}\n", disagreement);
  for (const std::string& disagreement : decisions.disagreements) fmt::print("  disagrees: {}\n", disagreement);
  return proposals.disagreements.empty() && decisions.disagreements.empty() ? 0 : 1;
}

// `difflab sweep progress DB`: each sampled sweep's best so far at a quarter, half, three quarters
// and all of its trials, then the mean ± std by sampler (several sweeps of each: several seeds).
int command_sweep_progress(const po::variables_map& values) {
  const std::string database = text(values, "DB");
  if (!std::filesystem::exists(database)) throw ConfigError("no such database", ErrorContext::in_file(database));
  const ResultsStore store(database, OpenMode::read_only);
  const std::vector<SweepProgress> sweeps = sweep_progress(store);
  if (sweeps.empty()) {
    fmt::print("{}: no sampled sweep (grid, random or tpe) recorded\n", database);
    return 1;
  }
  size_t length = 0;
  for (const auto& sweep : sweeps) length = std::max(length, sweep.best_so_far.size());
  std::vector<size_t> at;  // trial counts shown
  for (size_t quarter = 1; quarter <= 4; ++quarter) {
    const size_t n = std::max<size_t>(1, (length * quarter + 3) / 4);
    if (at.empty() || at.back() != n) at.push_back(n);
  }
  const auto cell = [](double value) { return std::isnan(value) ? std::string("-") : fmt::format("{:.5g}", value); };
  std::string header;
  for (size_t n : at) header += fmt::format("  {:>17}", fmt::format("after {}", n));
  fmt::print("best so far (finished trials), by sweep:\n{:<34}{:>8}{}\n", "sweep", "trials", header);
  for (const auto& sweep : sweeps) {
    std::string row;
    for (size_t n : at) row += fmt::format("  {:>17}", n <= sweep.best_so_far.size() ? cell(sweep.best_so_far[n - 1]) : "-");
    fmt::print("{:<34}{:>8}{}\n", sweep.sweep.substr(0, 8) + " " + sweep.label() + " (" + sweep.metric + ")",
               fmt::format("{}/{}", sweep.outcomes.size(), sweep.trials), row);
  }
  fmt::print("\nby sampler: mean ± std over its sweeps\n{:<34}{:>8}{}\n", "sampler", "sweeps", header);
  for (const ProgressStats& label : progress_by_label(sweeps)) {
    std::string row;
    for (size_t n : at)
      row += fmt::format("  {:>17}", n > label.mean.size() ? std::string("-")
                                     : std::isnan(label.std[n - 1]) ? cell(label.mean[n - 1])
                                                                    : cell(label.mean[n - 1]) + " ± " + cell(label.std[n - 1]));
    fmt::print("{:<34}{:>8}{}\n", label.label, label.sweeps, row);
  }
  return 0;
}

void add_cluster_commands(CommandTable& table) {
  add_slurm(table);
  add_k8s(table);
  table.add("sweep replay", "DB",
            "recompute every proposal (sampler = \"tpe\") and every asha and hyperband decision from the database "
            "alone; exit 1 naming any that disagrees",
            {"DB"}, 1, command_sweep_replay);
  table.add("sweep progress", "DB",
            "each sampled sweep's best value so far, trial by trial, and the mean ± std by sampler over several "
            "sweeps (seeds): TPE against random search on the same budget",
            {"DB"}, 1, command_sweep_progress);
  add_folder_commands(table, "sweep");
  add_folder_commands(table, "slurm");
}

}  // namespace difflab
