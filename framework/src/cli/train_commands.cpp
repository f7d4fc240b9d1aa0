// run, check, bench: training an experiment or a sweep, validating one, timing one.
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <memory>
#include <thread>
#include <torch/torch.h>

#include "cli/command.h"
#include "config/experiment.h"
#include "difflab/error.h"
#include "model/components.h"
#include "plugin_host/registry.h"
#include "sweep/processes.h"
#include "sweep/sweep.h"
#include "training/distributed.h"
#include "training/trainer.h"

namespace difflab {
namespace {

DistributedOptions distributed_options(const po::variables_map& values) {
  DistributedOptions options;
  options.backend = text(values, "backend", "auto");
  if (options.backend != "auto" && options.backend != "gloo" && options.backend != "nccl")
    throw ConfigError("--backend must be gloo, nccl or auto, not \"" + options.backend + "\"");
  options.timeout_seconds = static_cast<double>(integer(values, "timeout", 1));
  options.sync_batchnorm_statistics = flag(values, "sync-bn-stats");
  return options;
}

// Threads for each of N ranks on this machine: the cores shared out, unless --threads says.
int64_t threads_per_rank(const po::variables_map& values, int64_t nproc) {
  const int64_t threads = integer(values, "threads", 0);
  if (threads > 0) return threads;
  return std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()) / nproc);
}

// This process's rank in a data-parallel job, when a launcher (--nproc, torchrun, srun) started
// it as one; null in a world of one.
std::unique_ptr<ProcessGroup> join_process_group(const po::variables_map& values, const Experiment& experiment) {
  const Rendezvous rendezvous = rendezvous_from_environment();
  if (rendezvous.world <= 1) return nullptr;
  return std::make_unique<ProcessGroup>(rendezvous, distributed_options(values),
                                        select_device(experiment.settings().experiment.device));
}

// --nproc N started from outside a data-parallel job: N ranks of this command line, each with its
// share of the cores.
int launch_data_parallel(const po::variables_map& values, int64_t nproc) {
  if (values.count("workers") && integer(values, "workers", 1) > 1)
    throw ConfigError("--nproc and --workers exclude each other");
  return launch_ranks(nproc, command_line_without("nproc", {"--threads", std::to_string(threads_per_rank(values, nproc))}),
                      static_cast<double>(integer(values, "timeout", 1)) + 30.0);
}

// --per-rank-batch: every rank a batch of the experiment's size, so a global batch N times it
// (another experiment: its identity has the global batch).
void scale_batches(std::vector<SweepRun>& runs, int64_t world) {
  for (auto& run : runs) {
    Params& training = run.experiment.section("training").params;
    training.set("batch_size", training.integer("batch_size") * world);
  }
}

SweepOptions sweep_options(const po::variables_map& values, ProcessGroup* group, std::function<void(bool)> report) {
  SweepOptions options;
  options.run.distributed = group;
  options.run.report_parameter_checksums = std::getenv("DIFFLAB_TEST_PARAMETER_CHECKSUMS") != nullptr;
  options.run.perturb_initial_weights_by_rank = std::getenv("DIFFLAB_TEST_PERTURB_WEIGHTS_BY_RANK") != nullptr;
  options.new_run = flag(values, "new");
  options.retry_failed = flag(values, "retry-failed");
  options.threads = integer(values, "threads", 0);
  options.workers = integer(values, "workers", 1);
  options.after_step = after_step_from_environment();
  options.after_epoch = [hook = after_epoch_from_environment(), report](int64_t epoch) {
    if (report) report(false);
    if (hook) hook(epoch);
  };
  // What each worker process runs (--worker K --threads T are appended).
  options.worker_command = {"run", text(values, "file")};
  for (const auto& text : overrides(values)) options.worker_command.insert(options.worker_command.end(), {"--set", text});
  if (options.retry_failed) options.worker_command.push_back("--retry-failed");
  return options;
}

RunOptions single_run_options(const SweepOptions& options) {
  RunOptions run = options.run;
  run.new_run = options.new_run;
  run.retry_failed = options.retry_failed;
  run.threads = options.threads;
  run.after_epoch = options.after_epoch;
  run.after_step = options.after_step;
  return run;
}

int print_run_outcome(const RunResult& result, const std::string& database) {
  switch (result.outcome) {
    case RunOutcome::trained:
      if (result.trained_by > 0)
        fmt::print("run {} finished: evaluated the network trained by run {}; last grid {}\n", result.run_id,
                   result.trained_by, result.last_grid.string());
      else
        fmt::print("run {} finished: n_loss {:.4f}  i_loss {:.4f}  last grid {}\n", result.run_id,
                   result.noise_loss, result.image_loss, result.last_grid.string());
      return 0;
    case RunOutcome::finished_before:
      fmt::print("difflab: this experiment already finished as run {} in {}; nothing to do "
                 "(--new trains it again)\n", result.run_id, database);
      return 0;
    case RunOutcome::busy:
      throw RuntimeError(fmt::format("run {}: {}", result.run_id, result.detail),
                         ErrorContext::in_file(database, "wait for it, or use --new"));
    case RunOutcome::failed_before:
      throw RuntimeError(fmt::format("run {} of this experiment {}", result.run_id, result.detail), ErrorContext::in_file(database));
    case RunOutcome::pruned:
    case RunOutcome::pruned_before:
    case RunOutcome::paused:
      fmt::print("run {}: {}\n", result.run_id, result.detail);
      return 0;
  }
  return 0;
}

int command_run(const po::variables_map& values) {
  const int64_t nproc = integer(values, "nproc", 1);
  if (nproc > 1 && rendezvous_from_environment().world <= 1) return launch_data_parallel(values, nproc);
  PluginRegistry registry;
  std::vector<SweepRun> runs = load_sweep(text(values, "file"), overrides(values), registry);
  const std::unique_ptr<ProcessGroup> group = join_process_group(values, runs.front().experiment);
  const bool leader = group == nullptr || group->rank() == 0;
  if (flag(values, "per-rank-batch") && group) scale_batches(runs, group->world());
  const std::string database = runs.front().experiment.settings().experiment.database;
  const std::function<void(bool)> report = leader && !values.count("worker") ? report_writer(values, database)
                                                                             : std::function<void(bool)>();
  const AtExit final_report{[report] {
    if (report) report(true);
  }};
  const SweepOptions options = sweep_options(values, group.get(), report);
  if (values.count("worker")) return run_sweep_worker(runs, registry, options, values["worker"].as<int64_t>());
  if (runs.size() > 1 || !runs.front().point.empty()) return run_sweep(runs, registry, options);
  if (options.workers > 1)
    throw ConfigError("--workers is for sweeps; this experiment has one run", ErrorContext::in_file(text(values, "file")));
  const RunResult result = run_experiment(runs.front().experiment, registry, single_run_options(options));
  return leader ? print_run_outcome(result, database) : 0;
}

int command_check(const po::variables_map& values) {
  PluginRegistry registry;
  const std::string file = text(values, "file");
  std::vector<SweepRun> runs = load_sweep(file, overrides(values), registry);
  // What `run` would refuse, found now: the data, the components, the split sizes.
  check_before_running(runs, registry);
  if (runs.size() == 1 && runs.front().point.empty()) {
    const Experiment& experiment = runs.front().experiment;
    fmt::print("# {}: valid; resolved experiment (config hash {}):\n{}", file, experiment.config_hash(),
               experiment.to_toml());
    if (experiment.settings().experiment.precision == PrecisionSetting::automatic) {
      const ResolvedPrecision precision =
          resolve_precision(experiment, select_device(experiment.settings().experiment.device));
      fmt::print("# precision here: {} ({})\n", precision.precision == Precision::bf16 ? "bf16" : "fp32",
                 precision.reason);
    }
    return 0;
  }
  fmt::print("# {}: valid; the sweep expands to {} runs:\n", file, runs.size());
  for (size_t i = 0; i < runs.size(); ++i)
    fmt::print("{:>4}. {}  (config hash {})\n", i + 1, runs[i].point, runs[i].experiment.config_hash());
  return 0;
}

void print_bench(const BenchResult& result, const ProcessGroup* group, const po::variables_map& values) {
  fmt::print("cpu: {}\n", result.cpu);
  fmt::print("precision: {}\n", result.precision);
  fmt::print("threads: {}\n", torch::get_num_threads());
  fmt::print("batch_shape: {}\n", fmt::join(result.batch_shape, "x"));
  fmt::print("train_images_per_second: {:.2f}\n", result.train_images_per_second);
  fmt::print("optimizer_share: {:.6f}  (AdamW step and EMA update, of a training step)\n", result.optimizer_share);
  fmt::print("sample_images_per_second: {:.2f}  ({} steps, plot_diffusion_steps, batches of {}, {})\n",
             result.sample_images_per_second, result.plot_steps,
             result.sample_batch_size > 0 ? std::to_string(result.sample_batch_size) : "all",
             result.inference_path ? "inference path" : "forward()");
  fmt::print("kid_sample_images_per_second: {:.2f}  ({} steps, kid_diffusion_steps)\n",
             result.kid_sample_images_per_second, result.kid_steps);
  fmt::print("forward_sample_images_per_second: {:.2f}  ({} steps through forward() in one batch)\n",
             result.forward_sample_images_per_second, result.plot_steps);
  if (result.metrics_share >= 0.0)
    fmt::print("metrics_share: {:.4f}  (sample metrics [{}] every {} epoch(s): {:.2f} s an evaluation = generating {} "
               "images {:.2f} s + features {:.2f} s + metrics of {}-d features {:.3f} s; an epoch's training {:.2f} s)\n",
               result.metrics_share, result.metrics_names, result.kid_every,
               result.evaluation_seconds, result.metric_samples, result.generation_seconds, result.features_seconds,
               result.feature_dims, result.metric_seconds, result.epoch_train_seconds);
  else
    fmt::print("metrics_share: not measured ({})\n", result.metrics_note);
  fmt::print("peak_rss_mb: {:.1f}\n", result.peak_rss_mb);
  if (group) {
    fmt::print("processes: {} ({})\n", group->world(), group->backend());
    if (values.count("reference")) {
      const double alone = values["reference"].as<double>();
      fmt::print("scaling_efficiency: {:.3f}  ({:.2f} images/s of {} processes over {} x {:.2f} of one)\n",
                 result.train_images_per_second / (static_cast<double>(group->world()) * alone),
                 result.train_images_per_second, group->world(), group->world(), alone);
    }
  }
}

void print_profile(const std::string& title, const std::vector<BenchResult::Operator>& ops, double total) {
  fmt::print("\n{}: {:.1f} ms of operator time per step\n", title, total);
  fmt::print("{:>10} {:>6} {:>8}  {}\n", "ms/step", "%", "calls", "operator");
  for (size_t i = 0; i < ops.size() && i < 25; ++i)
    fmt::print("{:>10.2f} {:>6.1f} {:>8.1f}  {}\n", ops[i].self_ms_per_step, 100.0 * ops[i].self_ms_per_step / total,
               ops[i].calls_per_step, ops[i].name);
}

int command_bench(const po::variables_map& values) {
  PluginRegistry registry;
  Experiment experiment = load_experiment(text(values, "file"), overrides(values), registry);
  const int64_t steps = integer(values, "steps", 1);
  const bool profile = flag(values, "profile");
  const int64_t nproc = integer(values, "nproc", 1);
  if (nproc > 1 && rendezvous_from_environment().world <= 1) {
    // The reference first, in this process: one rank's batch and threads, alone; then N ranks.
    const int64_t threads = threads_per_rank(values, nproc);
    const BenchResult alone = bench_experiment(experiment, registry, steps, false, threads);
    fmt::print("one process ({} thread{}): train_images_per_second: {:.2f}\n", threads, threads == 1 ? "" : "s",
               alone.train_images_per_second);
    std::fflush(stdout);
    return launch_ranks(nproc, command_line_without("nproc", {"--threads", std::to_string(threads), "--reference",
                                                              fmt::format("{:.6f}", alone.train_images_per_second)}),
                        static_cast<double>(integer(values, "timeout", 1)) + 30.0);
  }
  const std::unique_ptr<ProcessGroup> group = join_process_group(values, experiment);
  BenchResult result = bench_experiment(experiment, registry, steps, profile, integer(values, "threads", 0), group.get());
  if (group && group->rank() != 0) return 0;
  print_bench(result, group.get(), values);
  if (profile) {
    print_profile(fmt::format("profile of {} training steps", steps), result.profile, result.profiled_ms_per_step);
    print_profile(fmt::format("profile of sampling {} images with {} steps (per network evaluation)",
                              result.batch_shape[0], result.plot_steps),
                  result.sample_profile, result.profiled_ms_per_sample_step);
  }
  return 0;
}

void add_distributed_options(po::options_description& options) {
  options.add_options()
      ("nproc", po::value<int64_t>()->default_value(1)->value_name("N"),
       "train each run data-parallel in N processes on this machine (c10d; the batch is split)")
      ("backend", po::value<std::string>()->default_value("auto")->value_name("NAME"),
       "c10d backend of a data-parallel run: gloo, nccl or auto (nccl on CUDA)")
      ("timeout", po::value<int64_t>()->default_value(300)->value_name("S"),
       "a data-parallel run fails when a rank is silent this long")
      ("sync-bn-stats", po::bool_switch(), "average BatchNorm running statistics over the ranks (default: "
                                           "rank 0's, as DDP)");
}

void add_run(CommandTable& table) {
  Command& run = table.add("run", "FILE", "train and record an experiment or a sweep; again: resume what was "
                           "interrupted or killed, skip what finished", {"file"}, 1, command_run);
  add_set_option(run.options);
  run.options.add_options()
      ("new", po::bool_switch(), "train a new run even if this configuration has one")
      ("retry-failed", po::bool_switch(), "run configurations again whose last run failed or diverged")
      ("workers", po::value<int64_t>()->default_value(1)->value_name("N"),
       "N processes claim the sweep's runs from the database")
      ("threads", po::value<int64_t>()->default_value(0)->value_name("N"),
       "LibTorch threads per process (0: the experiment's [experiment] threads)")
      ("report", po::value<std::string>()->value_name("FILE.html"),
       "write the database's report (difflab report) after every epoch and at the end")
      ("per-rank-batch", po::bool_switch(),
       "data parallel: each process trains on batch_size images (the global batch is N times batch_size; "
       "recorded as such)");
  add_distributed_options(run.options);
  run.hidden.add_options()("worker", po::value<int64_t>(), "this process is worker K of run --workers N");
}

void add_check(CommandTable& table) {
  Command& check = table.add("check", "FILE", "validate FILE (schemas, plugins, data, network) and print the "
                             "resolved experiment, or the sweep's runs", {"file"}, 1, command_check);
  add_set_option(check.options);
}

void add_bench(CommandTable& table) {
  Command& bench = table.add("bench", "FILE", "time training steps, the optimiser's share, and sampling as "
                             "evaluation samples", {"file"}, 1, command_bench);
  add_set_option(bench.options);
  bench.options.add_options()
      ("steps", po::value<int64_t>()->default_value(20)->value_name("N"), "training steps to time (after 3 of warm-up)")
      ("profile", po::bool_switch(), "then profile N more steps: the slowest operators of a step")
      ("threads", po::value<int64_t>()->default_value(0)->value_name("N"),
       "LibTorch threads (0: the experiment's; with --nproc, the cores shared out)");
  add_distributed_options(bench.options);
  bench.hidden.add_options()("reference", po::value<double>(), "one process's images per second (--nproc)");
}

}  // namespace

void add_train_commands(CommandTable& table) {
  add_run(table);
  add_check(table);
  add_bench(table);
}

}  // namespace difflab
