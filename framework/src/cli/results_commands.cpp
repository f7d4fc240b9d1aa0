// sample, results, results merge, report, kid: what a researcher does with trained runs.
#include <filesystem>
#include <chrono>
#include <sys/resource.h>
#include <fstream>
#include <cstdlib>
#include <fmt/format.h>
#include <thread>
#include <torch/torch.h>
#include <unistd.h>

#include "cli/command.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "difflab/files.h"
#include "difflab/plugin_test.h"
#include "plugin_host/registry.h"
#include "process/stop_request.h"
#include "report/html_report.h"
#include "results/merge.h"
#include "results/results_report.h"
#include "results/results_store.h"
#include "training/image_io.h"
#include "training/fid.h"
#include "training/kid.h"
#include "training/sampling.h"

namespace difflab {
namespace {

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

}  // namespace

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

namespace {

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

int command_evaluate(const po::variables_map& values) {
  EvaluateRequest request;
  request.database = text(values, "database");
  if (request.database.empty() || !values.count("run"))
    throw ConfigError("say which run to evaluate", ErrorContext::with_hint("--database DB --run ID [--best]"));
  request.run_id = integer(values, "run", 1);
  request.best = flag(values, "best");
  request.samples = integer(values, "samples", 0);
  if (values.count("steps")) request.diffusion_steps = integer(values, "steps", 1);
  request.overrides = overrides(values);
  PluginRegistry registry;
  const EvaluateResult result = evaluate_run(request, registry);
  fmt::print("run {}, {} (epoch {}), {} real and {} generated images:\n", request.run_id, result.checkpoint.string(),
             result.epoch, result.samples, result.samples);
  for (const auto& [metric, value] : result.metrics) fmt::print("  {}: {:.8g}\n", metric, value);
  fmt::print("recorded in {} (sample_metrics, source \"evaluate\")\n", request.database.string());
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
  query.group_by = comma_list(text(values, "group-by"));
  query.sort = text(values, "sort");
  query.limit = integer(values, "limit", 0);
  query.split_std = format == TableFormat::csv || format == TableFormat::json;
  query.baseline = text(values, "baseline");
  if (!query.baseline.empty() && query.group_by.empty())
    throw ConfigError("--baseline compares groups: give --group-by too", ErrorContext::in_file("--baseline"));
  fmt::print("{}", format_table(runs_table(store, query), format));
  return 0;
}

// --watch: rewrites the report every `watch` seconds until interrupted; the page reloads itself.
int watch_report(const std::string& database, const ReportOptions& options, int64_t watch);

int command_report(const po::variables_map& values) {
  const std::string database = text(values, "DB");
  ReportOptions options;
  options.where = text(values, "where");
  options.group_by = comma_list(text(values, "group-by"));
  if (values.count("baseline")) options.baseline = integer(values, "baseline", 1);
  options.baseline_group = text(values, "baseline-group");
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
  return watch_report(database, options, watch);
}

int watch_report(const std::string& database, const ReportOptions& options, int64_t watch) {
  StopRequest stop_request;
  fmt::print("difflab: rewriting {} every {} s; Ctrl-C stops\n", options.out.string(), watch);
  while (!StopRequest::requested()) {
    {
      ResultsStore store(database, OpenMode::read_only);
      write_report(store, options);
    }
    for (int64_t tenth = 0; tenth < watch * 10 && !StopRequest::requested(); ++tenth) usleep(100000);
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
// The features of DIR_A and DIR_B's images under --features (kid, fid, prdc).
std::pair<torch::Tensor, torch::Tensor> folder_features(const po::variables_map& values) {
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
  fmt::print("features: {} ({} dimensions)\n", features_name, a.size(1));
  return {a, b};
}

int command_kid(const po::variables_map& values) {
  const auto [a, b] = folder_features(values);
  KidEstimate kid = kid_subsets(a, b, integer(values, "subsets", 1), integer(values, "subset-size", 2), /*seed=*/0);
  fmt::print("subsets: {}\nsubset_size: {}\nkid_mean: {:.8g}\nkid_std: {:.8g}\n", kid.subsets,
             kid.subset_size, kid.mean, kid.std);
  return 0;
}

int command_fid(const po::variables_map& values) {
  const auto [a, b] = folder_features(values);
  if (a.size(0) < 2 || b.size(0) < 2)
    throw ConfigError("FID needs at least 2 images in each folder", ErrorContext::in_file(text(values, a.size(0) < 2 ? "DIR_A" : "DIR_B")));
  if (a.size(0) <= a.size(1) || b.size(0) <= b.size(1))
    fmt::print("note: {} and {} images for {} dimensions: a covariance of fewer samples than dimensions is "
               "rank-deficient; its zero eigenvalues add nothing (docs/experiments.md), but the estimate is biased\n",
               a.size(0), b.size(0), a.size(1));
  fmt::print("fid: {:.8g}\n", fid(a, b));
  return 0;
}

int command_prdc(const po::variables_map& values) {
  const auto [a, b] = folder_features(values);
  const int64_t pr_k = integer(values, "pr-k", 1), dc_k = integer(values, "dc-k", 1);
  if (std::max(pr_k, dc_k) >= std::min(a.size(0), b.size(0)))
    throw ConfigError(fmt::format("k ({} and {}) must be below both folders' image counts ({} and {})", pr_k, dc_k,
                                  a.size(0), b.size(0)),
                      ErrorContext::in_file(pr_k >= dc_k ? "--pr-k" : "--dc-k"));
  // DIR_A is the real set: precision asks how much of DIR_B lies on DIR_A's manifold.
  const PrdcEstimate estimate = prdc(a, b, pr_k, dc_k);
  fmt::print("precision: {:.6f}\nrecall: {:.6f}\ndensity: {:.6f}\ncoverage: {:.6f}\n", estimate.precision,
             estimate.recall, estimate.density, estimate.coverage);
  return 0;
}

void add_sample(CommandTable& table) {
  Command& sample = table.add("sample", "", "images from a trained model (--checkpoint FILE, or --database DB --run "
                              "ID), with any sampler", {}, 0, command_sample);
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
  add_set_option(sample.options);
}

void add_evaluate(CommandTable& table) {
  Command& evaluate = table.add("evaluate", "", "the sample metrics (evaluation.metrics) of a run's latest or best "
                                "checkpoint with any number of samples, recorded beside its per-epoch ones", {}, 0,
                                command_evaluate);
  evaluate.options.add_options()
      ("database", po::value<std::string>()->value_name("DB"), "the results database")
      ("run", po::value<int64_t>()->value_name("ID"), "the run")
      ("best", po::bool_switch(), "its best checkpoint (evaluation.best_by) instead of the latest")
      ("samples", po::value<int64_t>()->default_value(0)->value_name("N"),
       "real and generated images each (0: the whole validation split)")
      ("steps", po::value<int64_t>()->value_name("S"), "sampling steps (default: the run's kid_diffusion_steps)");
  add_set_option(evaluate.options);
}

void add_results(CommandTable& table) {
  Command& results = table.add("results", "DB", "one row per run (the parameters that differ, final losses, best "
                               "KID), the ablation table, or one run in full", {"DB"}, 1, command_results);
  results.options.add_options()
      ("where", po::value<std::string>()->value_name("FILTER"),
       "e.g. 'loss.plugin = \"mae\" and kid < 0.3' (= != < <= > >=, in (...), is null, and/or/not)")
      ("group-by", po::value<std::string>()->value_name("KEY[,KEY]"), "mean ± std over the seeds of each group")
      ("baseline", po::value<std::string>()->value_name("FILTER"),
       "with --group-by: the group it picks (e.g. 'loss.plugin = \"mae\"'); every other group's difference to it, "
       "95% bootstrap interval over seeds (paired by seed) and Welch's p")
      ("sort", po::value<std::string>()->value_name("[-]COLUMN"), "sort by a column (- for descending)")
      ("limit", po::value<int64_t>()->default_value(0)->value_name("N"), "at most N rows (0: all)")
      ("format", po::value<std::string>()->default_value("table"), "table, csv, json or markdown")
      ("run", po::value<int64_t>()->value_name("ID"), "one run in full: parameters, metrics, KID, artifacts");
}

void add_report(CommandTable& table) {
  Command& report = table.add("report", "DB", "one self-contained HTML file: overview, grouped table, learning "
                              "curves, KID against NFE, effects, parallel coordinates, sample grids, every run",
                              {"DB"}, 1, command_report);
  report.options.add_options()
      ("where", po::value<std::string>()->value_name("FILTER"), "only these runs (as in difflab results)")
      ("group-by", po::value<std::string>()->value_name("KEY[,KEY]"),
       "group runs (curves, table) by these parameters; default: every swept one but the seed")
      ("baseline", po::value<int64_t>()->value_name("RUN"), "compare every run's parameters with this run's "
       "(default: the best by --metric)")
      ("baseline-group", po::value<std::string>()->value_name("FILTER"),
       "the grouped table's baseline group (e.g. 'loss.plugin = \"mae\"'): each group's "
       "difference to it, 95% bootstrap interval over seeds and Welch's p")
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
}

void add_results_merge(CommandTable& table) {
  table.add("results merge", "MAIN_DB SHARD...", "merge shard databases into MAIN_DB in one transaction: every "
            "run attempt once (merging twice adds nothing); bad shards are reported and skipped",
            {"MAIN_DB", "SHARD"}, 2, command_results_merge).variadic = true;
}

// `difflab bench-metrics`: FID and precision/recall/density/coverage on N x N random features of
// D dimensions (two Gaussians apart), timed, with the peak memory; then the same FID through
// scipy's sqrtm (clean-fid's formula) in Python, when Debian's python3-scipy is there.
int command_bench_metrics(const po::variables_map& values) {
  const int64_t n = integer(values, "samples", 2), d = integer(values, "dims", 1), block = integer(values, "block", 1);
  const int64_t threads = values["threads"].as<int64_t>();
  at::set_num_threads(static_cast<int>(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())));
  torch::manual_seed(0);
  const torch::Tensor real = torch::randn({n, d}, torch::kFloat64);
  const torch::Tensor generated = torch::randn({n, d}, torch::kFloat64) * 1.1 + 0.1;
  fmt::print("bench-metrics: {} real and {} generated features of {} dimensions, {} LibTorch threads\n", n, n, d,
             at::get_num_threads());
  const auto time = [](const auto& body) {
    const auto start = std::chrono::steady_clock::now();
    body();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  GaussianFit fa, fb;
  const double fit_seconds = time([&] { fa = gaussian_fit(real), fb = gaussian_fit(generated); });
  double value = 0.0;
  const double distance_seconds = time([&] { value = frechet_distance(fa, fb); });
  PrdcEstimate estimate;
  const double prdc_seconds = time([&] { estimate = prdc(real, generated, 3, 5, block); });
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  fmt::print("fid {:.6g}: {:.2f} s (Gaussian fits {:.2f} s, Fréchet distance {:.2f} s)\n", value,
             fit_seconds + distance_seconds, fit_seconds, distance_seconds);
  fmt::print("precision {:.4f} recall {:.4f} density {:.4f} coverage {:.4f}: {:.2f} s (blocks of {} rows)\n",
             estimate.precision, estimate.recall, estimate.density, estimate.coverage, prdc_seconds, block);
  fmt::print("total {:.2f} s; peak resident memory {:.0f} MiB\n", fit_seconds + distance_seconds + prdc_seconds,
             static_cast<double>(usage.ru_maxrss) / 1024.0);
  std::fflush(stdout);
  if (!values["reference"].as<bool>()) return 0;
  // The reference: clean-fid's frechet_distance from the same fits (numpy's cov of the same data
  // would be the same matrices), timed around scipy.linalg.sqrtm.
  const std::string script = fmt::format(
      "import time, numpy as np\nfrom scipy import linalg\n"
      "rng = np.random.default_rng(0)\n"
      "a = rng.standard_normal(({0}, {1})); b = rng.standard_normal(({0}, {1})) * 1.1 + 0.1\n"
      "t0 = time.time(); s1 = np.cov(a, rowvar=False); s2 = np.cov(b, rowvar=False)\n"
      "m1 = a.mean(0); m2 = b.mean(0); t1 = time.time()\n"
      "c, _ = linalg.sqrtm(s1.dot(s2), disp=False); d = m1 - m2\n"
      "f = d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(c.real); t2 = time.time()\n"
      "print('scipy reference: fid %.6g: %.2f s (np.cov %.2f s, sqrtm %.2f s)' % (f, t2 - t0, t1 - t0, t2 - t1))\n",
      n, d);
  const std::filesystem::path file = std::filesystem::temp_directory_path() / fmt::format("difflab-bench-{}.py", getpid());
  { std::ofstream(file) << script; }
  const int code = std::system(("/usr/bin/python3 " + file.string()).c_str());
  std::filesystem::remove(file);
  if (code != 0) fmt::print("(no scipy reference: Debian's python3-scipy is not installed)\n");
  return 0;
}

void add_fid(CommandTable& table) {
  Command& bench = table.add("bench-metrics", "", "time FID and precision/recall/density/coverage on random features "
                             "(N x N of D dimensions), beside scipy's FID", {}, 0, command_bench_metrics);
  bench.options.add_options()
      ("samples", po::value<int64_t>()->default_value(10000)->value_name("N"), "features of each set")
      ("dims", po::value<int64_t>()->default_value(2048)->value_name("D"), "feature dimensions (InceptionV3: 2048)")
      ("block", po::value<int64_t>()->default_value(1024)->value_name("B"), "rows of distances at a time")
      ("threads", po::value<int64_t>()->default_value(0)->value_name("N"), "LibTorch threads (0: every core)")
      ("reference", po::bool_switch(), "also time scipy's sqrtm FID in Python (the same random data is not used: "
       "numpy's generator; the time is what is compared)");
  Command& fid = table.add("fid", "DIR_A DIR_B", "Fréchet distance between two image folders' features (with "
                           "--features inception: FID as the papers report it)", {"DIR_A", "DIR_B"}, 2, command_fid);
  fid.options.add_options()
      ("features", po::value<std::string>()->default_value("pixels")->value_name("NAME"), "feature extractor plugin");
  Command& prdc = table.add("prdc", "DIR_A DIR_B", "precision, recall (k-NN manifolds), density and coverage of DIR_B "
                            "against DIR_A (the real images)", {"DIR_A", "DIR_B"}, 2, command_prdc);
  prdc.options.add_options()
      ("features", po::value<std::string>()->default_value("pixels")->value_name("NAME"), "feature extractor plugin")
      ("pr-k", po::value<int64_t>()->default_value(3)->value_name("K"), "neighbours for precision and recall")
      ("dc-k", po::value<int64_t>()->default_value(5)->value_name("K"), "neighbours for density and coverage");
}

void add_kid(CommandTable& table) {
  Command& kid = table.add("kid", "DIR_A DIR_B", "KID between two image folders (clean-fid's subsets protocol)",
                           {"DIR_A", "DIR_B"}, 2, command_kid);
  kid.options.add_options()
      ("features", po::value<std::string>()->default_value("pixels")->value_name("NAME"), "feature extractor plugin")
      ("subsets", po::value<int64_t>()->default_value(100)->value_name("K"), "random subsets")
      ("subset-size", po::value<int64_t>()->default_value(1000)->value_name("M"), "rows per subset");
}

}  // namespace

void add_results_commands(CommandTable& table) {
  add_sample(table);
  add_evaluate(table);
  add_results(table);
  add_report(table);
  add_results_merge(table);
  add_kid(table);
  add_fid(table);
}

}  // namespace difflab
