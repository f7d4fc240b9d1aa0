// The command line: one function per command, each a few lines over the framework's API.
#include "difflab/cli.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <iostream>
#include <sstream>
#include <torch/torch.h>

#include "difflab/components.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/experiment.h"
#include "difflab/features.h"
#include "difflab/image_io.h"
#include "difflab/kid.h"
#include "difflab/network.h"
#include "difflab/new_plugin.h"
#include "difflab/registry.h"
#include "difflab/results_report.h"
#include "difflab/results_store.h"
#include "difflab/sampling.h"
#include "difflab/sweep.h"
#include "difflab/trainer.h"
#include "difflab/version.h"

namespace difflab {
namespace po = boost::program_options;
namespace {

constexpr const char* kUsage = R"(usage: difflab COMMAND [OPTIONS]

commands:
  run FILE [--set section.key=value]... [--new] [--retry-failed] [--workers N] [--threads N]
                                           train and record an experiment or a sweep; again:
                                           resume what was interrupted or killed, skip what
                                           finished (or failed, unless --retry-failed);
                                           --workers N: N processes claim the sweep's runs
  check FILE [--set section.key=value]...  validate FILE and print the resolved experiment
  bench FILE [--set ...] [--steps N] [--profile]
                                           time training steps and one sampling pass;
                                           --profile: the slowest operators of a step
  plugins [--family NAME]                  list plugins with their parameters
  sample (--checkpoint FILE | --database DB --run ID [--best]) [--out DIR] [--grid FILE.png]
         [--num-images N] [--steps S] [--seed N] [--set sampler.plugin=ddpm]...
         [--interpolate | --steps-strip]   images from a trained model, with any sampler
  results DB [--where FILTER] [--group-by KEY[,KEY]] [--sort [-]COLUMN] [--limit N]
             [--format table|csv|json|markdown] [--run ID]
                                           one row per run (the parameters that differ, final
                                           losses, best KID); --group-by: mean ± std over the
                                           seeds (the ablation table); --run: one run in full
                                           FILTER e.g. 'loss.plugin = "mae" and kid < 0.3'
                                           (= != < <= > >=, in (...), is null, and/or/not)
  new-plugin FAMILY NAME [DIR]             write a buildable plugin project (CMake, source, test,
                                           example experiment) into DIR (default: NAME)
  kid DIR_A DIR_B [--features NAME] [--subsets K] [--subset-size M]
                                           KID between two image folders (clean-fid protocol)

options:
  --help       show this message
  --version    print the version of difflab and LibTorch

Plugins are searched in the build's and the installed plugin folder, then in DIFFLAB_PLUGIN_PATH
(colon-separated) and in the experiment's [experiment] plugin_paths.
)";

struct CommandLine {
  std::string command;
  std::string file;
  std::string second_file;
  std::string third;  // new-plugin's DIR
  std::string features = "pixels";
  int64_t subsets = 100;
  int64_t subset_size = 1000;
  std::vector<std::string> overrides;
  std::string family;
  int64_t steps = 20;
  bool new_run = false;
  bool profile = false;
  bool retry_failed = false;
  int64_t workers = 1;
  int64_t worker = 0;   // this process is worker K of a `run --workers N` (internal)
  int64_t threads = 0;
  SampleRequest sample;
  std::string format = "table";
  std::string sort;
  std::string where;
  std::vector<std::string> group_by;
  int64_t limit = 0;
};

CommandLine parse(int argc, char** argv) {
  po::options_description options;
  options.add_options()
      ("command", po::value<std::string>())
      ("file", po::value<std::string>())
      ("set", po::value<std::vector<std::string>>()->composing())
      ("family", po::value<std::string>())
      ("steps", po::value<int64_t>())
      ("new", po::bool_switch())
      ("profile", po::bool_switch())
      ("retry-failed", po::bool_switch())
      ("workers", po::value<int64_t>())
      ("worker", po::value<int64_t>())
      ("threads", po::value<int64_t>())
      ("checkpoint", po::value<std::string>())
      ("database", po::value<std::string>())
      ("run", po::value<int64_t>())
      ("best", po::bool_switch())
      ("out", po::value<std::string>())
      ("grid", po::value<std::string>())
      ("num-images", po::value<int64_t>())
      ("seed", po::value<uint64_t>())
      ("interpolate", po::bool_switch())
      ("steps-strip", po::bool_switch())
      ("format", po::value<std::string>())
      ("sort", po::value<std::string>())
      ("where", po::value<std::string>())
      ("group-by", po::value<std::string>())
      ("limit", po::value<int64_t>())
      ("second_file", po::value<std::string>())
      ("third", po::value<std::string>())
      ("features", po::value<std::string>())
      ("subsets", po::value<int64_t>())
      ("subset-size", po::value<int64_t>());
  po::positional_options_description positional;
  positional.add("command", 1).add("file", 1).add("second_file", 1).add("third", 1);
  po::variables_map values;
  po::store(po::command_line_parser(argc, argv).options(options).positional(positional).run(),
            values);
  CommandLine line;
  if (values.count("command")) line.command = values["command"].as<std::string>();
  if (values.count("file")) line.file = values["file"].as<std::string>();
  if (values.count("set")) line.overrides = values["set"].as<std::vector<std::string>>();
  if (values.count("family")) line.family = values["family"].as<std::string>();
  if (values.count("steps")) line.steps = values["steps"].as<int64_t>();
  line.new_run = values["new"].as<bool>();
  line.profile = values["profile"].as<bool>();
  line.retry_failed = values["retry-failed"].as<bool>();
  if (values.count("workers")) line.workers = values["workers"].as<int64_t>();
  if (values.count("worker")) line.worker = values["worker"].as<int64_t>();
  if (values.count("threads")) line.threads = values["threads"].as<int64_t>();
  SampleRequest& sample = line.sample;
  if (values.count("checkpoint")) sample.checkpoint = values["checkpoint"].as<std::string>();
  if (values.count("database")) sample.database = values["database"].as<std::string>();
  if (values.count("run")) sample.run_id = values["run"].as<int64_t>();
  sample.best = values["best"].as<bool>();
  if (values.count("out")) sample.out_dir = values["out"].as<std::string>();
  if (values.count("grid")) sample.grid = values["grid"].as<std::string>();
  if (values.count("num-images")) sample.num_images = values["num-images"].as<int64_t>();
  if (values.count("steps")) sample.diffusion_steps = values["steps"].as<int64_t>();
  if (values.count("seed")) sample.seed = values["seed"].as<uint64_t>();
  sample.interpolate = values["interpolate"].as<bool>();
  sample.steps_strip = values["steps-strip"].as<bool>();
  sample.overrides = line.overrides;
  if (values.count("format")) line.format = values["format"].as<std::string>();
  if (values.count("sort")) line.sort = values["sort"].as<std::string>();
  if (values.count("where")) line.where = values["where"].as<std::string>();
  if (values.count("group-by")) {
    std::stringstream keys(values["group-by"].as<std::string>());
    for (std::string key; std::getline(keys, key, ',');)
      if (!key.empty()) line.group_by.push_back(key);
  }
  if (values.count("limit")) line.limit = values["limit"].as<int64_t>();
  if (values.count("second_file")) line.second_file = values["second_file"].as<std::string>();
  if (values.count("third")) line.third = values["third"].as<std::string>();
  if (values.count("features")) line.features = values["features"].as<std::string>();
  if (values.count("subsets")) line.subsets = values["subsets"].as<int64_t>();
  if (values.count("subset-size")) line.subset_size = values["subset-size"].as<int64_t>();
  if (line.steps < 1) throw ConfigError("--steps must be at least 1");
  if (line.workers < 1) throw ConfigError("--workers must be at least 1");
  if (!line.third.empty() && line.command != "new-plugin")
    throw ConfigError("unexpected argument \"" + line.third + "\"", {"", 0, 0, "", "difflab --help lists the commands"});
  if (line.threads < 0) throw ConfigError("--threads must be at least 0 (0: the experiment's)");
  if (line.subsets < 1) throw ConfigError("--subsets must be at least 1");
  if (line.subset_size < 2) throw ConfigError("--subset-size must be at least 2");
  return line;
}

void require_experiment_file(const CommandLine& line) {
  if (line.file.empty())
    throw ConfigError("missing experiment file", {"", 0, 0, "", "e.g. difflab " + line.command +
                                                                  " experiments/quickstart.toml"});
}


std::vector<SweepRun> load_runs(const CommandLine& line, PluginRegistry& registry) {
  require_experiment_file(line);
  return load_sweep(line.file, line.overrides, registry);
}

int command_run(const CommandLine& line) {
  PluginRegistry registry;
  std::vector<SweepRun> runs = load_runs(line, registry);
  SweepOptions options;
  options.new_run = line.new_run;
  options.retry_failed = line.retry_failed;
  options.threads = line.threads;
  options.workers = line.workers;
  if (line.worker > 0) return run_sweep_worker(runs, registry, options, line.worker);
  if (runs.size() > 1 || !runs.front().point.empty()) {
    options.worker_command = {"run", line.file};
    for (const auto& text : line.overrides) options.worker_command.insert(options.worker_command.end(), {"--set", text});
    if (line.retry_failed) options.worker_command.push_back("--retry-failed");
    return run_sweep(runs, registry, options);
  }
  RunOptions run_options;
  run_options.new_run = line.new_run;
  run_options.retry_failed = line.retry_failed;
  run_options.threads = line.threads;
  const RunResult result = run_experiment(runs.front().experiment, registry, run_options);
  const std::string& database = runs.front().experiment.section("experiment").params.string("database");
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
                         {database, 0, 0, "", "wait for it, or use --new"});
    case RunOutcome::failed_before:
      throw RuntimeError(fmt::format("run {} of this experiment {}", result.run_id, result.detail), {database, 0, 0, "", ""});
  }
  return 0;
}

int command_check(const CommandLine& line) {
  PluginRegistry registry;
  std::vector<SweepRun> runs = load_runs(line, registry);
  // Build the components too: data that is not there (first: without data nothing else
  // matters), a network that cannot be built for this image size or a missing feature model is
  // reported now, not after the database row exists.
  for (const auto& run : runs) {
    const Section& data = run.experiment.section("data");
    registry.create<Dataset>(Family::dataset, data.plugin, data.params, run.experiment.build_context(0))
        ->check_available();
    build_components(run.experiment, registry);
  }
  if (runs.size() == 1 && runs.front().point.empty()) {
    fmt::print("# {}: valid; resolved experiment (config hash {}):\n{}", line.file,
               runs.front().experiment.config_hash(), runs.front().experiment.to_toml());
    return 0;
  }
  fmt::print("# {}: valid; the sweep expands to {} runs:\n", line.file, runs.size());
  for (size_t i = 0; i < runs.size(); ++i)
    fmt::print("{:>4}. {}  (config hash {})\n", i + 1, runs[i].point, runs[i].experiment.config_hash());
  return 0;
}

int command_bench(const CommandLine& line) {
  PluginRegistry registry;
  require_experiment_file(line);
  Experiment experiment = load_experiment(line.file, line.overrides, registry);
  BenchResult result = bench_experiment(experiment, registry, line.steps, line.profile);
  fmt::print("threads: {}\n", torch::get_num_threads());
  fmt::print("batch_shape: {}\n", fmt::join(result.batch_shape, "x"));
  fmt::print("train_images_per_second: {:.2f}\n", result.train_images_per_second);
  fmt::print("sample_images_per_second: {:.2f}\n", result.sample_images_per_second);
  fmt::print("peak_rss_mb: {:.1f}\n", result.peak_rss_mb);
  if (line.profile) {
    fmt::print("\nprofile of {} training steps: {:.1f} ms of operator time per step\n", line.steps,
               result.profiled_ms_per_step);
    fmt::print("{:>10} {:>6} {:>8}  {}\n", "ms/step", "%", "calls", "operator");
    for (size_t i = 0; i < result.profile.size() && i < 25; ++i) {
      const auto& op = result.profile[i];
      fmt::print("{:>10.2f} {:>6.1f} {:>8.1f}  {}\n", op.self_ms_per_step,
                 100.0 * op.self_ms_per_step / result.profiled_ms_per_step, op.calls_per_step, op.name);
    }
  }
  return 0;
}

int command_kid(const CommandLine& line) {
  if (line.file.empty() || line.second_file.empty())
    throw ConfigError("expected two image folders", {"", 0, 0, "", "difflab kid DIR_A DIR_B"});
  PluginRegistry registry;
  const PluginInfo& info = registry.get(Family::features, line.features, {"--features", 0, 0, "", ""});
  Params params;
  for (const auto& spec : info.schema) params.set(spec.name, spec.default_value);
  auto features = registry.create<FeatureExtractor>(Family::features, line.features, params, {});
  torch::Tensor images_a = read_image_folder(line.file);
  torch::Tensor images_b = read_image_folder(line.second_file);
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
  torch::Tensor a = extract(line.file, images_a), b = extract(line.second_file, images_b);
  if (a.size(1) != b.size(1))
    throw ConfigError(fmt::format("the folders give features of different sizes ({} and {})",
                                  a.size(1), b.size(1)),
                      {"", 0, 0, "", "with --features pixels both folders need one image size"});
  KidEstimate kid = kid_subsets(a, b, line.subsets, line.subset_size, /*seed=*/0);
  fmt::print("subsets: {}\nsubset_size: {}\nkid_mean: {:.8g}\nkid_std: {:.8g}\n", kid.subsets,
             kid.subset_size, kid.mean, kid.std);
  return 0;
}

int command_sample(const CommandLine& line) {
  if (!line.file.empty())
    throw ConfigError("unexpected argument \"" + line.file + "\"",
                      {"", 0, 0, "", "difflab sample --database DB --run ID --grid out.png"});
  PluginRegistry registry;
  for (const auto& path : sample_images(line.sample, registry)) fmt::print("wrote {}\n", path.string());
  return 0;
}

int command_results(const CommandLine& line) {
  if (line.file.empty()) throw ConfigError("missing results database", {"", 0, 0, "", "difflab results results/x.sqlite"});
  if (!std::filesystem::is_regular_file(line.file))
    throw ConfigError("results database not found", {line.file, 0, 0, "", ""});
  const TableFormat format = parse_table_format(line.format);
  ResultsStore store(line.file);
  if (line.sample.run_id > 0) {
    fmt::print("{}", run_report(store, line.sample.run_id, format));
  } else {
    RunsQuery query;
    query.where = line.where;
    query.group_by = line.group_by;
    query.sort = line.sort;
    query.limit = line.limit;
    query.split_std = format == TableFormat::csv || format == TableFormat::json;
    fmt::print("{}", format_table(runs_table(store, query), format));
  }
  return 0;
}

int command_new_plugin(const CommandLine& line) {
  if (line.file.empty() || line.second_file.empty())
    throw ConfigError("expected a family and a name", {"", 0, 0, "", "e.g. difflab new-plugin loss log_cosh [DIR]"});
  const std::string dir = line.third.empty() ? line.second_file : line.third;
  for (const auto& path : write_plugin_project(line.file, line.second_file, dir)) fmt::print("wrote {}\n", path.string());
  fmt::print("build it against the installed difflab:\n  cmake -S {0} -B {0}/build -DCMAKE_PREFIX_PATH=<prefix> && "
             "cmake --build {0}/build && ctest --test-dir {0}/build\n", dir);
  return 0;
}

int command_plugins(const CommandLine& line) {
  PluginRegistry registry;
  for (Family family : all_families()) {
    if (!line.family.empty() && line.family != to_string(family)) continue;
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

}  // namespace

int run_cli(int argc, char** argv) {
  try {
    if (argc < 2) {
      std::cerr << kUsage;
      return 2;
    }
    std::string first = argv[1];
    if (first == "--help" || first == "-h" || first == "help") {
      std::cout << kUsage;
      return 0;
    }
    if (first == "--version") {
      fmt::print("difflab {} (LibTorch {})\n", DIFFLAB_VERSION, TORCH_VERSION);
      return 0;
    }
    CommandLine line = parse(argc, argv);
    if (line.command == "run") return command_run(line);
    if (line.command == "check") return command_check(line);
    if (line.command == "bench") return command_bench(line);
    if (line.command == "plugins") return command_plugins(line);
    if (line.command == "kid") return command_kid(line);
    if (line.command == "sample") return command_sample(line);
    if (line.command == "results") return command_results(line);
    if (line.command == "new-plugin") return command_new_plugin(line);
    std::string nearest = nearest_name(line.command, {"run", "check", "bench", "plugins", "kid", "sample", "results"});
    throw ConfigError("unknown command \"" + line.command + "\"",
                      {"", 0, 0, "", nearest.empty() ? "see difflab --help"
                                                      : "did you mean \"" + nearest + "\"?"});
  } catch (const Error& error) {
    fmt::print(stderr, "difflab: error: {}\n", error.what());
    return error.exit_code();
  } catch (const po::error& error) {
    fmt::print(stderr, "difflab: error: {}\n  hint: see difflab --help\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    fmt::print(stderr, "difflab: error: {}\n", error.what());
    return 1;
  }
}

}  // namespace difflab
