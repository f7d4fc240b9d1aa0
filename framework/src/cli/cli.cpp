// The command line: one function per command, each a few lines over the framework's API.
#include "cli/cli.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <functional>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <iostream>
#include <unistd.h>
#include <map>
#include <memory>
#include <thread>
#include <sstream>
#include <torch/torch.h>

#include "cli/new_plugin.h"
#include "cluster/slurm.h"
#include "config/experiment.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "difflab/files.h"
#include "difflab/network.h"
#include "difflab/plugin_test.h"
#include "difflab/version.h"
#include "model/components.h"
#include "plugin_host/registry.h"
#include "report/html_report.h"
#include "results/merge.h"
#include "results/results_report.h"
#include "results/results_store.h"
#include "sweep/processes.h"
#include "sweep/sweep.h"
#include "training/distributed.h"
#include "training/image_io.h"
#include "training/kid.h"
#include "training/run_trainer.h"
#include "training/sampling.h"
#include "training/trainer.h"

namespace difflab {
namespace po = boost::program_options;
namespace {

// One command: its positional arguments and options (Boost.Program_options), and what it does.
// An option that a command does not take is an error naming the command, with a hint.
struct Command {
  std::string name;
  std::string arguments;                // "FILE", "DIR_A DIR_B", "FAMILY NAME [DIR]"
  std::string summary;                  // one line for `difflab --help`
  std::vector<std::string> positionals; // names of the positional arguments, in order
  size_t required = 0;                  // how many of them must be given
  po::options_description options;      // the options, with their documentation
  po::options_description hidden;       // internal options (a sweep worker's --worker)
  std::function<int(const po::variables_map&)> run;
  bool variadic = false;                // the last positional takes any number of values
};

const std::vector<Command>& commands();

// This process's command line (argv[1], ...): what --nproc starts again in each rank.
std::vector<std::string>& command_line() {
  static std::vector<std::string> words;
  return words;
}

// The command line without `--name VALUE` (or --name=VALUE), with `extra` added.
std::vector<std::string> command_line_without(const std::string& name, const std::vector<std::string>& extra) {
  std::vector<std::string> words;
  const std::vector<std::string>& all = command_line();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i] == "--" + name) {
      ++i;
      continue;
    }
    if (all[i].rfind("--" + name + "=", 0) == 0) continue;
    words.push_back(all[i]);
  }
  words.insert(words.end(), extra.begin(), extra.end());
  return words;
}

const Command* find_command(const std::string& name) {
  for (const auto& command : commands())
    if (command.name == name) return &command;
  return nullptr;
}

std::string help_text(const Command& command) {
  std::ostringstream text;
  text << "usage: difflab " << command.name << (command.arguments.empty() ? "" : " " + command.arguments)
       << (command.options.options().empty() ? "" : " [OPTIONS]") << "\n\n"
       << command.summary << "\n";
  if (!command.options.options().empty()) text << "\n" << command.options;
  return text.str();
}

std::string usage() {
  std::string text = "usage: difflab COMMAND [ARGUMENTS] [OPTIONS]\n\ncommands:\n";
  for (const auto& command : commands()) {
    // The summary wrapped to 100 columns, in a column of its own.
    std::string line = fmt::format("  {:<30}", command.name + " " + command.arguments);
    if (line.size() > 32) {
      text += line + "\n";
      line = std::string(32, ' ');
    }
    std::istringstream words(command.summary);
    for (std::string word; words >> word;) {
      if (line.size() + 1 + word.size() > 100) {
        text += line + "\n";
        line = std::string(32, ' ');
      }
      line += (line.size() == 32 ? "" : " ") + word;
    }
    text += line + "\n";
  }
  text += R"(
  difflab help COMMAND (or difflab COMMAND --help) lists a command's options.

options:
  --help       show this message
  --version    print the version of difflab and LibTorch

Plugins are searched in the build's and the installed plugin folder, then in DIFFLAB_PLUGIN_PATH
(colon-separated) and in the experiment's [experiment] plugin_paths.
)";
  return text;
}

// Parses argv[2..] against `command`'s arguments and options.
po::variables_map parse(const Command& command, int argc, char** argv) {
  po::options_description all;
  all.add(command.options).add(command.hidden);
  po::options_description arguments;
  arguments.add_options()("argument", po::value<std::vector<std::string>>()->composing());
  all.add(arguments);
  po::positional_options_description positional;
  positional.add("argument", -1);
  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc - 1, argv + 1).options(all).positional(positional).run(), values);
  } catch (const po::error& error) {
    throw ConfigError(fmt::format("difflab {}: {}", command.name, error.what()),
                      ErrorContext::with_hint("difflab help " + command.name + " lists its options"));
  }
  const auto given = values.count("argument") ? values["argument"].as<std::vector<std::string>>()
                                              : std::vector<std::string>{};
  if (given.size() > command.positionals.size() && !command.variadic)
    throw ConfigError("unexpected argument \"" + given[command.positionals.size()] + "\"",
                      ErrorContext::with_hint("usage: difflab " + command.name + " " + command.arguments));
  if (given.size() < command.required)
    throw ConfigError(fmt::format("difflab {}: missing {}", command.name, command.positionals[given.size()]),
                      ErrorContext::with_hint("usage: difflab " + command.name + " " + command.arguments));
  for (size_t i = 0; i < given.size() && i < command.positionals.size(); ++i)
    values.insert({command.positionals[i], po::variable_value(given[i], false)});
  po::notify(values);
  return values;
}

std::string text(const po::variables_map& values, const std::string& name, const std::string& otherwise = {}) {
  return values.count(name) ? values[name].as<std::string>() : otherwise;
}
int64_t integer(const po::variables_map& values, const std::string& name, int64_t at_least) {
  const int64_t value = values[name].as<int64_t>();
  if (value < at_least) throw ConfigError(fmt::format("--{} must be at least {}", name, at_least));
  return value;
}
bool flag(const po::variables_map& values, const std::string& name) { return values[name].as<bool>(); }
std::vector<std::string> overrides(const po::variables_map& values) {
  return values.count("set") ? values["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
}

// The test seams of the command line:
// - DIFFLAB_TEST_SIGNAL_AFTER_EPOCH="EPOCH SIGNAL [ONCE_FILE]" raises SIGNAL right after that
//   epoch's checkpoint (9: a power cut; 15: an interrupt, noticed at the next step); with
//   ONCE_FILE, only in the process that creates that file first.
// - DIFFLAB_TEST_SIGNAL_AFTER_STEP="STEP SIGNAL [ONCE_FILE]": the same after an optimiser step
//   (a signal inside an epoch).
// - DIFFLAB_TEST_PAUSE_AFTER_STEP="STEP FILE": after that step, the process that creates FILE
//   first writes SLURM_ARRAY_TASK_ID (or "-") into it and waits (at most 120 s) for a signal, so
//   that a test can send one at a known step (a Slurm preemption); other processes go on.
// The trainer only sees RunOptions::after_epoch and after_step.
// DIFFLAB_TEST_HOOK_RANK=R: the hooks act in rank R of a data-parallel run only.
bool hook_rank_matches() {
  const char* only = std::getenv("DIFFLAB_TEST_HOOK_RANK");
  if (only == nullptr) return true;
  const char* rank = std::getenv("RANK");
  return std::string(only) == (rank != nullptr ? rank : "0");
}

std::function<void(int64_t)> signal_hook(const char* variable) {
  const char* hook = std::getenv(variable);
  if (hook == nullptr || !hook_rank_matches()) return {};
  int64_t hook_at = 0, hook_signal = 0;
  char once[4096] = {};
  const int fields = std::sscanf(hook, "%ld %ld %4095s", &hook_at, &hook_signal, once);
  if (fields < 2) return {};
  const std::string once_file = fields >= 3 ? once : "";
  return [=](int64_t at) {
    if (at != hook_at) return;
    if (!once_file.empty() && open(once_file.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644) < 0) return;
    std::raise(static_cast<int>(hook_signal));
  };
}

std::function<void(int64_t)> after_epoch_from_environment() { return signal_hook("DIFFLAB_TEST_SIGNAL_AFTER_EPOCH"); }

std::function<void(int64_t)> after_step_from_environment() {
  std::function<void(int64_t)> raise = signal_hook("DIFFLAB_TEST_SIGNAL_AFTER_STEP");
  const char* pause = hook_rank_matches() ? std::getenv("DIFFLAB_TEST_PAUSE_AFTER_STEP") : nullptr;
  int64_t pause_at = 0;
  char file[4096] = {};
  if (pause == nullptr || std::sscanf(pause, "%ld %4095s", &pause_at, file) != 2) return raise;
  const std::string marker = file;
  return [=](int64_t step) {
    if (raise) raise(step);
    if (step != pause_at) return;
    const int created = open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (created < 0) return;
    const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
    const std::string text = std::string(task != nullptr ? task : "-") + "\n";
    if (write(created, text.data(), text.size()) < 0) std::perror("difflab: test pause marker");
    close(created);
    for (int i = 0; i < 1200 && InterruptGuard::received() == 0; ++i) usleep(100000);
  };
}

std::vector<SweepRun> load_runs(const po::variables_map& values, PluginRegistry& registry) {
  return load_sweep(text(values, "file"), overrides(values), registry);
}

// The report's folder and file, written through a temporary file renamed over it: a browser
// that reloads it mid-write sees the old report or the new one.
void write_report(ResultsStore& store, const ReportOptions& options, bool quiet = false) {
  ReportSummary summary;
  const std::string html = render_report(store, options, &summary);
  if (options.out.has_parent_path()) std::filesystem::create_directories(options.out.parent_path());
  write_file_atomically(options.out, html);
  if (quiet) return;
  fmt::print("wrote {} ({:.1f} kB): {} runs, {} charts, {} series, {} images{}\n", options.out.string(),
             static_cast<double>(html.size()) / 1e3, summary.runs, summary.charts, summary.series, summary.images,
             summary.missing_images > 0 ? fmt::format(" ({} image files missing)", summary.missing_images) : "");
  std::fflush(stdout);
}

// run --report FILE: the report of the run's database, rewritten after every epoch (a live view
// with --workers comes from difflab report --watch) and when the command ends. A report that
// cannot be written is a warning: it never stops a run.
// While the command runs, the page reloads itself every 30 s; the last one stays still.
std::function<void(bool)> report_writer(const po::variables_map& values, const std::string& database) {
  if (!values.count("report")) return {};
  ReportOptions options;
  options.out = text(values, "report");
  return [options, database](bool last) mutable {
    try {
      if (!std::filesystem::is_regular_file(database)) return;
      ResultsStore store(database, OpenMode::read_only);
      options.refresh_seconds = last ? 0 : 30;
      write_report(store, options, true);
    } catch (const std::exception& error) {
      fmt::print(stderr, "difflab: warning: the report {} was not written: {}\n", options.out.string(), describe(error));
    }
  };
}

// Calls a function when the scope ends, however it ends.
struct AtExit {
  std::function<void()> action;
  ~AtExit() {
    if (action) action();
  }
};

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

int command_run(const po::variables_map& values) {
  const int64_t nproc = integer(values, "nproc", 1);
  if (nproc > 1 && rendezvous_from_environment().world <= 1) {
    if (integer(values, "workers", 1) > 1) throw ConfigError("--nproc and --workers exclude each other");
    return launch_ranks(nproc, command_line_without("nproc", {"--threads", std::to_string(threads_per_rank(values, nproc))}),
                        static_cast<double>(integer(values, "timeout", 1)) + 30.0);
  }
  PluginRegistry registry;
  const std::string file = text(values, "file");
  std::vector<SweepRun> runs = load_runs(values, registry);
  const std::unique_ptr<ProcessGroup> group = join_process_group(values, runs.front().experiment);
  const bool leader = group == nullptr || group->rank() == 0;
  // --per-rank-batch: every rank a batch of the experiment's size, so a global batch N times it
  // (another experiment: its identity has the global batch).
  if (flag(values, "per-rank-batch") && group)
    for (auto& run : runs) {
      Params& training = run.experiment.section("training").params;
      training.set("batch_size", training.integer("batch_size") * group->world());
    }
  SweepOptions options;
  options.run.distributed = group.get();
  options.run.report_parameter_checksums = std::getenv("DIFFLAB_TEST_PARAMETER_CHECKSUMS") != nullptr;
  options.run.perturb_initial_weights_by_rank = std::getenv("DIFFLAB_TEST_PERTURB_WEIGHTS_BY_RANK") != nullptr;
  options.new_run = flag(values, "new");
  options.retry_failed = flag(values, "retry-failed");
  options.threads = integer(values, "threads", 0);
  options.workers = integer(values, "workers", 1);
  options.after_step = after_step_from_environment();
  const std::function<void(bool)> report =
      leader && !values.count("worker") ? report_writer(values, runs.front().experiment.settings().experiment.database)
                                        : std::function<void(bool)>();
  const AtExit final_report{[report] {
    if (report) report(true);
  }};
  options.after_epoch = [hook = after_epoch_from_environment(), report](int64_t epoch) {
    if (report) report(false);
    if (hook) hook(epoch);
  };
  if (values.count("worker")) return run_sweep_worker(runs, registry, options, values["worker"].as<int64_t>());
  if (runs.size() > 1 || !runs.front().point.empty()) {
    options.worker_command = {"run", file};
    for (const auto& text : overrides(values)) options.worker_command.insert(options.worker_command.end(), {"--set", text});
    if (options.retry_failed) options.worker_command.push_back("--retry-failed");
    return run_sweep(runs, registry, options);
  }
  if (options.workers > 1) throw ConfigError("--workers is for sweeps; this experiment has one run", ErrorContext::in_file(file));
  RunOptions run_options = options.run;
  run_options.new_run = options.new_run;
  run_options.retry_failed = options.retry_failed;
  run_options.threads = options.threads;
  run_options.after_epoch = options.after_epoch;
  run_options.after_step = options.after_step;
  const RunResult result = run_experiment(runs.front().experiment, registry, run_options);
  const std::string database = runs.front().experiment.settings().experiment.database;
  if (!leader) return 0;  // rank 0 reports
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
  }
  return 0;
}

int command_check(const po::variables_map& values) {
  PluginRegistry registry;
  const std::string file = text(values, "file");
  std::vector<SweepRun> runs = load_runs(values, registry);
  // What `run` would refuse, found now: the data, the components, the split sizes.
  check_before_running(runs, registry);
  if (runs.size() == 1 && runs.front().point.empty()) {
    const Experiment& experiment = runs.front().experiment;
    fmt::print("# {}: valid; resolved experiment (config hash {}):\n{}", file, experiment.config_hash(),
               experiment.to_toml());
    if (experiment.settings().experiment.precision == "auto") {
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
  if (profile) {
    auto print_profile = [](const std::string& title, const std::vector<BenchResult::Operator>& ops, double total) {
      fmt::print("\n{}: {:.1f} ms of operator time per step\n", title, total);
      fmt::print("{:>10} {:>6} {:>8}  {}\n", "ms/step", "%", "calls", "operator");
      for (size_t i = 0; i < ops.size() && i < 25; ++i)
        fmt::print("{:>10.2f} {:>6.1f} {:>8.1f}  {}\n", ops[i].self_ms_per_step, 100.0 * ops[i].self_ms_per_step / total,
                   ops[i].calls_per_step, ops[i].name);
    };
    print_profile(fmt::format("profile of {} training steps", steps), result.profile, result.profiled_ms_per_step);
    print_profile(fmt::format("profile of sampling {} images with {} steps (per network evaluation)",
                              result.batch_shape[0], result.plot_steps),
                  result.sample_profile, result.profiled_ms_per_sample_step);
  }
  return 0;
}

int command_kid(const po::variables_map& values) {
  const std::string folder_a = text(values, "DIR_A"), folder_b = text(values, "DIR_B");
  const std::string features_name = text(values, "features");
  PluginRegistry registry;
  const PluginInfo& info = registry.get(Family::features, features_name, ErrorContext::in_file("--features"));
  auto features = registry.create<FeatureExtractor>(Family::features, features_name,
                                                    plugin_test::with_defaults(info), {});
  torch::Tensor images_a = read_image_folder(folder_a);
  torch::Tensor images_b = read_image_folder(folder_b);
  features->prepare(ImageSplits{images_a, images_b});  // unlabelled: a learned extractor says so
  auto extract = [&](const std::string& folder, const torch::Tensor& images) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> parts;
    for (int64_t start = 0; start < images.size(0); start += 256)
      parts.push_back(features->extract(images.slice(0, start, start + 256)));
    fmt::print("{}: {} images of {}x{}x{}\n", folder, images.size(0), images.size(1), images.size(2),
               images.size(3));
    return torch::cat(parts);
  };
  torch::Tensor a = extract(folder_a, images_a), b = extract(folder_b, images_b);
  if (a.size(1) != b.size(1))
    throw ConfigError(fmt::format("the folders give features of different sizes ({} and {})",
                                  a.size(1), b.size(1)),
                      ErrorContext::with_hint("with --features pixels both folders need one image size"));
  KidEstimate kid = kid_subsets(a, b, integer(values, "subsets", 1), integer(values, "subset-size", 2), /*seed=*/0);
  fmt::print("subsets: {}\nsubset_size: {}\nkid_mean: {:.8g}\nkid_std: {:.8g}\n", kid.subsets,
             kid.subset_size, kid.mean, kid.std);
  return 0;
}

int command_sample(const po::variables_map& values) {
  SampleRequest request;
  request.checkpoint = text(values, "checkpoint");
  request.database = text(values, "database");
  if (values.count("run")) request.run_id = integer(values, "run", 1);
  request.best = flag(values, "best");
  request.out_dir = text(values, "out");
  request.grid = text(values, "grid");
  request.num_images = integer(values, "num-images", 1);
  if (values.count("steps")) request.diffusion_steps = integer(values, "steps", 1);
  request.seed = values["seed"].as<uint64_t>();
  request.interpolate = flag(values, "interpolate");
  request.steps_strip = flag(values, "steps-strip");
  request.overrides = overrides(values);
  PluginRegistry registry;
  for (const auto& path : sample_images(request, registry)) fmt::print("wrote {}\n", path.string());
  return 0;
}

int command_results(const po::variables_map& values) {
  const std::string database = text(values, "DB");
  if (!std::filesystem::is_regular_file(database))
    throw ConfigError("results database not found", ErrorContext::in_file(database));
  const TableFormat format = parse_table_format(text(values, "format"));
  const int64_t run_id = values.count("run") ? integer(values, "run", 1) : 0;
  ResultsStore store(database, OpenMode::read_only);
  if (run_id > 0) {
    fmt::print("{}", run_report(store, run_id, format));
    return 0;
  }
  RunsQuery query;
  query.where = text(values, "where");
  std::stringstream keys(text(values, "group-by"));
  for (std::string key; std::getline(keys, key, ',');)
    if (!key.empty()) query.group_by.push_back(key);
  query.sort = text(values, "sort");
  query.limit = integer(values, "limit", 0);
  query.split_std = format == TableFormat::csv || format == TableFormat::json;
  fmt::print("{}", format_table(runs_table(store, query), format));
  return 0;
}

int command_report(const po::variables_map& values) {
  const std::string database = text(values, "DB");
  ReportOptions options;
  options.where = text(values, "where");
  std::stringstream keys(text(values, "group-by"));
  for (std::string key; std::getline(keys, key, ',');)
    if (!key.empty()) options.group_by.push_back(key);
  if (values.count("baseline")) options.baseline = integer(values, "baseline", 1);
  options.metric = text(values, "metric", "best_kid");
  options.out = text(values, "out", "report.html");
  if (flag(values, "embed-images") && flag(values, "link-images"))
    throw ConfigError("--embed-images and --link-images exclude each other");
  options.embed_images = !flag(values, "link-images");
  options.log_y = flag(values, "log-y");
  options.grid_runs = integer(values, "grid-runs", 0);
  options.grid_epochs = integer(values, "grid-epochs", 1);
  options.thumbnail_width = integer(values, "thumbnail-width", 16);
  const int64_t watch = integer(values, "watch", 0);
  options.refresh_seconds = watch;
  if (!std::filesystem::is_regular_file(database))
    throw ConfigError("results database not found", ErrorContext::in_file(database));
  if (watch == 0) {
    ResultsStore store(database, OpenMode::read_only);
    write_report(store, options);
    return 0;
  }
  // --watch: rewrite the report every `watch` seconds until interrupted; the page reloads itself.
  InterruptGuard interrupt;
  fmt::print("difflab: rewriting {} every {} s; Ctrl-C stops\n", options.out.string(), watch);
  while (InterruptGuard::received() == 0) {
    {
      ResultsStore store(database, OpenMode::read_only);
      write_report(store, options);
    }
    for (int64_t tenth = 0; tenth < watch * 10 && InterruptGuard::received() == 0; ++tenth) usleep(100000);
  }
  return 0;
}

int command_results_merge(const po::variables_map& values) {
  const std::vector<std::string> given = values["argument"].as<std::vector<std::string>>();
  const std::string database = given.front();
  std::vector<std::filesystem::path> shards(given.begin() + 1, given.end());
  ResultsStore store(database);
  const MergeReport report = merge_shards(store, shards);
  fmt::print("merged {} of {} shards into {}: {} runs added, {} updated, {} unchanged\n", report.shards_merged,
             shards.size(), database, report.runs_added, report.runs_updated, report.runs_unchanged);
  for (const auto& problem : report.skipped)
    fmt::print(stderr, "difflab: skipped shard {}: {}\n", problem.shard.string(), problem.message);
  return report.skipped.empty() ? 0 : 1;
}

int command_slurm(const po::variables_map& values) {
  SlurmSubmitOptions options;
  options.folder = text(values, "folder");
  options.partition = text(values, "partition");
  options.time = text(values, "time");
  options.gpus_per_task = integer(values, "gpus-per-task", 0);
  options.cpus_per_task = integer(values, "cpus-per-task", 0);
  options.array_parallelism = integer(values, "array-parallelism", 0);
  options.runs_per_task = integer(values, "runs-per-task", 1);
  options.warning_seconds = integer(values, "warning-seconds", 1);
  options.nodes = integer(values, "nodes", 1);
  options.gpus_per_node = integer(values, "gpus-per-node", 0);
  options.tasks_per_node = integer(values, "ntasks-per-node", 0);
  if (values.count("sbatch-arg")) options.sbatch_args = values["sbatch-arg"].as<std::vector<std::string>>();
  options.dry_run = flag(values, "dry-run");
  options.retry_failed = flag(values, "retry-failed");
  PluginRegistry registry;
  return slurm_submit(text(values, "file"), overrides(values), registry, options);
}

int command_slurm_task(const po::variables_map& values) {
  SlurmTaskOptions options;
  options.folder = text(values, "FOLDER");
  options.submission = integer(values, "submission", 1);
  if (values.count("index")) options.index = integer(values, "index", 0);
  options.threads = integer(values, "threads", 0);
  options.timeout_seconds = static_cast<double>(integer(values, "timeout", 1));
  options.after_epoch = after_epoch_from_environment();
  options.after_step = after_step_from_environment();
  PluginRegistry registry;
  return slurm_task(options, registry);
}

int command_slurm_collect(const po::variables_map& values) {
  return slurm_collect(text(values, "FOLDER"), text(values, "database"));
}
int command_slurm_status(const po::variables_map& values) { return slurm_status(text(values, "FOLDER")); }

int command_new_plugin(const po::variables_map& values) {
  const std::string family = text(values, "FAMILY"), name = text(values, "NAME");
  const std::string dir = text(values, "DIR", name);
  for (const auto& path : write_plugin_project(family, name, dir)) fmt::print("wrote {}\n", path.string());
  fmt::print("build it against the installed difflab:\n  cmake -S {0} -B {0}/build -DCMAKE_PREFIX_PATH=<prefix> && "
             "cmake --build {0}/build && ctest --test-dir {0}/build\n", dir);
  return 0;
}

int command_plugins(const po::variables_map& values) {
  const std::string only = text(values, "family");
  std::vector<std::string> names;
  for (Family family : all_families()) names.emplace_back(to_string(family));
  if (!only.empty() && std::find(names.begin(), names.end(), only) == names.end())
    throw ConfigError("unknown plugin family \"" + only + "\"",
                      ErrorContext::with_hint("families: " + fmt::format("{}", fmt::join(names, ", "))));
  PluginRegistry registry;
  for (Family family : all_families()) {
    if (!only.empty() && only != to_string(family)) continue;
    fmt::print("[{}]\n", to_string(family));
    for (const auto& plugin : registry.list(family)) {
      const PluginInfo& info = *plugin.info;
      fmt::print("  {} {} — {}\n    ({})\n", info.name, info.version, info.description,
                 plugin.path.string());
      for (const auto& spec : info.schema) {
        std::string constraint = spec.constraint_text();
        fmt::print("    {:<26} {:<18} default {:<22}{}\n      {}\n", spec.name,
                   to_string(spec.type), format_value(spec.default_value),
                   constraint.empty() ? "" : "  " + constraint, spec.doc);
      }
    }
  }
  for (const auto& rejected : registry.rejected())
    fmt::print("refused {}: {}\n", rejected.path.string(), rejected.reason);
  return 0;
}


int command_help(const po::variables_map& values);

// The commands, in the order `difflab --help` lists them.
const std::vector<Command>& commands() {
  static const std::vector<Command> all = [] {
    std::vector<Command> list;
    auto add = [&](std::string name, std::string arguments, std::string summary, std::vector<std::string> positionals,
                   size_t required, std::function<int(const po::variables_map&)> run) -> Command& {
      list.push_back({std::move(name), std::move(arguments), std::move(summary), std::move(positionals), required,
                      po::options_description("options"), po::options_description(), std::move(run)});
      return list.back();
    };
    auto set_option = [](po::options_description& options) {
      options.add_options()("set", po::value<std::vector<std::string>>()->composing()->value_name("KEY=VALUE"),
                            "override one key of the experiment, TOML value syntax (repeatable): "
                            "--set training.epochs=3 --set loss.plugin=mse");
    };

    Command& run = add("run", "FILE", "train and record an experiment or a sweep; again: resume what was interrupted "
                       "or killed, skip what finished", {"file"}, 1, command_run);
    set_option(run.options);
    run.options.add_options()
        ("new", po::bool_switch(), "train a new run even if this configuration has one")
        ("retry-failed", po::bool_switch(), "run configurations again whose last run failed or diverged")
        ("workers", po::value<int64_t>()->default_value(1)->value_name("N"),
         "N processes claim the sweep's runs from the database")
        ("threads", po::value<int64_t>()->default_value(0)->value_name("N"),
         "LibTorch threads per process (0: the experiment's [experiment] threads)");
    auto distributed_option_set = [](po::options_description& options) {
      options.add_options()
          ("nproc", po::value<int64_t>()->default_value(1)->value_name("N"),
           "train each run data-parallel in N processes on this machine (c10d; the batch is split)")
          ("backend", po::value<std::string>()->default_value("auto")->value_name("NAME"),
           "c10d backend of a data-parallel run: gloo, nccl or auto (nccl on CUDA)")
          ("timeout", po::value<int64_t>()->default_value(300)->value_name("S"),
           "a data-parallel run fails when a rank is silent this long")
          ("sync-bn-stats", po::bool_switch(), "average BatchNorm running statistics over the ranks (default: "
                                               "rank 0's, as DDP)");
    };
    run.options.add_options()("report", po::value<std::string>()->value_name("FILE.html"),
                              "write the database's report (difflab report) after every epoch and at the end");
    run.options.add_options()("per-rank-batch", po::bool_switch(),
                              "data parallel: each process trains on batch_size images (the global batch is N times "
                              "batch_size; recorded as such)");
    distributed_option_set(run.options);
    run.hidden.add_options()("worker", po::value<int64_t>(), "this process is worker K of run --workers N");

    Command& check = add("check", "FILE", "validate FILE (schemas, plugins, data, network) and print the resolved "
                         "experiment, or the sweep's runs", {"file"}, 1, command_check);
    set_option(check.options);

    Command& bench = add("bench", "FILE", "time training steps, the optimiser's share, and sampling as evaluation samples",
                         {"file"}, 1, command_bench);
    set_option(bench.options);
    bench.options.add_options()
        ("steps", po::value<int64_t>()->default_value(20)->value_name("N"), "training steps to time (after 3 of warm-up)")
        ("profile", po::bool_switch(), "then profile N more steps: the slowest operators of a step")
        ("threads", po::value<int64_t>()->default_value(0)->value_name("N"),
         "LibTorch threads (0: the experiment's; with --nproc, the cores shared out)");
    distributed_option_set(bench.options);
    bench.hidden.add_options()("reference", po::value<double>(), "one process's images per second (--nproc)");

    Command& plugins = add("plugins", "", "list plugins with their parameters", {}, 0, command_plugins);
    plugins.options.add_options()("family", po::value<std::string>()->value_name("NAME"),
                                  "only this family: dataset, network, schedule, loss, sampler, features");

    Command& sample = add("sample", "", "images from a trained model (--checkpoint FILE, or --database DB --run ID), "
                          "with any sampler", {}, 0, command_sample);
    sample.options.add_options()
        ("checkpoint", po::value<std::string>()->value_name("FILE"), "a checkpoint.pt or best.pt")
        ("database", po::value<std::string>()->value_name("DB"), "a results database (with --run)")
        ("run", po::value<int64_t>()->value_name("ID"), "the run of --database whose last checkpoint to use")
        ("best", po::bool_switch(), "its best checkpoint by KID instead")
        ("out", po::value<std::string>()->value_name("DIR"), "write one PNG per image into DIR")
        ("grid", po::value<std::string>()->value_name("FILE.png"), "write one grid PNG")
        ("num-images", po::value<int64_t>()->default_value(16)->value_name("N"), "images to generate")
        ("steps", po::value<int64_t>()->value_name("S"), "sampling steps (default: the run's plot_diffusion_steps)")
        ("seed", po::value<uint64_t>()->default_value(0)->value_name("N"), "seed of the initial noise")
        ("interpolate", po::bool_switch(), "spherical interpolation between two initial noises")
        ("steps-strip", po::bool_switch(), "the same initial noise with 1 to 20 steps");
    set_option(sample.options);

    Command& results = add("results", "DB", "one row per run (the parameters that differ, final losses, best KID), "
                           "the ablation table, or one run in full", {"DB"}, 1, command_results);
    results.options.add_options()
        ("where", po::value<std::string>()->value_name("FILTER"),
         "e.g. 'loss.plugin = \"mae\" and kid < 0.3' (= != < <= > >=, in (...), is null, and/or/not)")
        ("group-by", po::value<std::string>()->value_name("KEY[,KEY]"), "mean ± std over the seeds of each group")
        ("sort", po::value<std::string>()->value_name("[-]COLUMN"), "sort by a column (- for descending)")
        ("limit", po::value<int64_t>()->default_value(0)->value_name("N"), "at most N rows (0: all)")
        ("format", po::value<std::string>()->default_value("table"), "table, csv, json or markdown")
        ("run", po::value<int64_t>()->value_name("ID"), "one run in full: parameters, metrics, KID, artifacts");

    Command& report = add("report", "DB", "one self-contained HTML file: overview, grouped table, learning curves, "
                          "KID against NFE, effects, parallel coordinates, sample grids, every run", {"DB"}, 1,
                          command_report);
    report.options.add_options()
        ("where", po::value<std::string>()->value_name("FILTER"), "only these runs (as in difflab results)")
        ("group-by", po::value<std::string>()->value_name("KEY[,KEY]"),
         "group runs (curves, table) by these parameters; default: every swept one but the seed")
        ("baseline", po::value<int64_t>()->value_name("RUN"), "compare every run's parameters with this run's "
         "(default: the best by --metric)")
        ("metric", po::value<std::string>()->default_value("best_kid")->value_name("KEY"),
         "for effects and parallel coordinates: best_kid, or the final value of a metric (val_n_loss, ...)")
        ("out", po::value<std::string>()->default_value("report.html")->value_name("FILE"), "where to write it")
        ("embed-images", po::bool_switch(), "sample grids as base64 thumbnails inside the file (the default)")
        ("link-images", po::bool_switch(), "sample grids linked relative to the report instead")
        ("log-y", po::bool_switch(), "learning curves on logarithmic y axes")
        ("thumbnail-width", po::value<int64_t>()->default_value(256)->value_name("PIXELS"),
         "embedded grids wider than this are downscaled")
        ("grid-runs", po::value<int64_t>()->default_value(24)->value_name("N"), "sample grids of at most N runs, "
         "best first")
        ("grid-epochs", po::value<int64_t>()->default_value(6)->value_name("N"), "embedded grids per run (evenly "
         "spaced, the last included)")
        ("watch", po::value<int64_t>()->default_value(0)->value_name("SECONDS"), "rewrite the report every SECONDS "
         "(atomically) until Ctrl-C; the page reloads itself");

    Command& merge = add("results merge", "MAIN_DB SHARD...", "merge shard databases into MAIN_DB in one "
                         "transaction: every run attempt once (merging twice adds nothing); bad shards are reported "
                         "and skipped", {"MAIN_DB", "SHARD"}, 2, command_results_merge);
    merge.variadic = true;

    Command& slurm = add("slurm", "FILE", "submit a sweep to Slurm as a job array (shard databases, preemption "
                         "with requeue); again: submit only what has not finished", {"file"}, 1, command_slurm);
    set_option(slurm.options);
    slurm.options.add_options()
        ("folder", po::value<std::string>()->value_name("DIR"),
         "the sweep folder on the shared filesystem (default: <output_dir>/slurm/<name>-<sweep hash>)")
        ("partition", po::value<std::string>()->value_name("P"), "sbatch --partition")
        ("time", po::value<std::string>()->value_name("T"), "sbatch --time per task, e.g. 04:00:00")
        ("gpus-per-task", po::value<int64_t>()->default_value(0)->value_name("G"), "sbatch --gpus-per-task")
        ("cpus-per-task", po::value<int64_t>()->default_value(0)->value_name("C"),
         "sbatch --cpus-per-task; a task then uses C LibTorch threads")
        ("array-parallelism", po::value<int64_t>()->default_value(0)->value_name("K"),
         "at most K tasks at once (--array=0-M%K; 0: no limit)")
        ("runs-per-task", po::value<int64_t>()->default_value(1)->value_name("R"),
         "points trained one after the other by each task")
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
        ("retry-failed", po::bool_switch(), "submit points whose last run failed or diverged too")
        ("dry-run", po::bool_switch(), "write the manifest and the sbatch script, do not submit");

    Command& collect = add("slurm collect", "FOLDER", "merge a Slurm sweep's shard databases into its experiment's "
                           "database", {"FOLDER"}, 1, command_slurm_collect);
    collect.options.add_options()("database", po::value<std::string>()->value_name("DB"),
                                  "merge into DB instead (e.g. a local path when the experiment's database is on a "
                                  "network filesystem)");
    add("slurm status", "FOLDER", "every point of a Slurm sweep: finished, running, pending, failed (with its "
        "message), from the shards and squeue", {"FOLDER"}, 1, command_slurm_status);
    Command& task = add("slurm task", "FOLDER", "one array task of a Slurm sweep (what job.sbatch runs; also a "
                        "Kubernetes Indexed Job's command)", {"FOLDER"}, 1, command_slurm_task);
    task.options.add_options()
        ("submission", po::value<int64_t>()->default_value(1)->value_name("N"), "the submission (submit-NNN)")
        ("index", po::value<int64_t>()->value_name("K"),
         "the task (default: SLURM_ARRAY_TASK_ID, then JOB_COMPLETION_INDEX)")
        ("threads", po::value<int64_t>()->default_value(0)->value_name("N"),
         "LibTorch threads (0: SLURM_CPUS_PER_TASK, else the experiment's)")
        ("timeout", po::value<int64_t>()->default_value(300)->value_name("S"),
         "data parallel: a rank silent this long fails the run");

    add("new-plugin", "FAMILY NAME [DIR]", "write a buildable plugin project (CMake, source, test, example "
        "experiment) into DIR (default: NAME)", {"FAMILY", "NAME", "DIR"}, 2, command_new_plugin);

    Command& kid = add("kid", "DIR_A DIR_B", "KID between two image folders (clean-fid's subsets protocol)",
                       {"DIR_A", "DIR_B"}, 2, command_kid);
    kid.options.add_options()
        ("features", po::value<std::string>()->default_value("pixels")->value_name("NAME"), "feature extractor plugin")
        ("subsets", po::value<int64_t>()->default_value(100)->value_name("K"), "random subsets")
        ("subset-size", po::value<int64_t>()->default_value(1000)->value_name("M"), "rows per subset");

    add("help", "[COMMAND]", "this list, or a command's options", {"COMMAND"}, 0, command_help).variadic = true;
    return list;
  }();
  return all;
}

int command_help(const po::variables_map& values) {
  std::string name;  // one word, or two (help slurm collect)
  if (values.count("argument"))
    for (const auto& word : values["argument"].as<std::vector<std::string>>()) name += (name.empty() ? "" : " ") + word;
  if (name.empty()) {
    std::cout << usage();
    return 0;
  }
  const Command* command = find_command(name);
  if (command == nullptr) throw ConfigError("unknown command \"" + name + "\"", ErrorContext::with_hint("see difflab --help"));
  std::cout << help_text(*command);
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  command_line().assign(argv + 1, argv + argc);
  // A file-size limit (ulimit -f) then makes a write fail with EFBIG, which closes the run as
  // failed naming the file, instead of killing the process with SIGXFSZ.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    if (argc < 2) {
      std::cerr << usage();
      return 2;
    }
    const std::string first = argv[1];
    if (first == "--help" || first == "-h") {
      std::cout << usage();
      return 0;
    }
    if (first == "--version") {
      fmt::print("difflab {} (LibTorch {})\n", DIFFLAB_VERSION, TORCH_VERSION);
      return 0;
    }
    // Two-word commands: difflab slurm collect FOLDER, difflab results merge DB SHARD...
    if (argc >= 3) {
      if (const Command* two = find_command(first + " " + argv[2])) {
        for (int i = 3; i < argc; ++i)
          if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
            std::cout << help_text(*two);
            return 0;
          }
        return two->run(parse(*two, argc - 1, argv + 1));
      }
    }
    const Command* command = find_command(first);
    if (command == nullptr) {
      std::vector<std::string> names;
      for (const auto& known : commands()) names.push_back(known.name);
      const std::string nearest = nearest_name(first, names);
      throw ConfigError("unknown command \"" + first + "\"",
                        ErrorContext::with_hint(nearest.empty() ? "see difflab --help" : "did you mean \"" + nearest + "\"?"));
    }
    for (int i = 2; i < argc; ++i)
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::cout << help_text(*command);
        return 0;
      }
    return command->run(parse(*command, argc, argv));
  } catch (const Error& error) {
    fmt::print(stderr, "difflab: error: {}\n", error.what());
    return error.exit_code();
  } catch (const po::error& error) {
    fmt::print(stderr, "difflab: error: {}\n  hint: see difflab --help\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    fmt::print(stderr, "difflab: error: {}\n", describe(error));
    return 1;
  }
}

}  // namespace difflab
