// The main flow of one run, top to bottom (run_experiment): settings -> components -> data ->
// database row -> RunTrainer: per epoch train_epoch -> evaluate -> record (rows, checkpoint) ->
// finished or failed.
#include "training/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fmt/format.h>
#include <tuple>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <torch/torch.h>

#include "config/experiment.h"
#include "config/settings.h"
#include "difflab/cpu.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "difflab/network.h"
#include "model/checkpoint.h"
#include "model/components.h"
#include "model/diffusion_model.h"
#include "difflab/files.h"
#include "plugin_host/registry.h"
#include "results/results_store.h"
#include "training/image_io.h"
#include "training/kid.h"
#include "training/distributed.h"
#include "process/stop_request.h"
#include "training/op_profile.h"
#include "training/run_trainer.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// How a run that stopped on `error` is closed: interrupted (the same command resumes it) when a
// signal stopped it, a full disk or a file-size limit did (its last checkpoint is intact), or the
// other ranks of a data-parallel run were lost; failed otherwise.
RunStatus status_after(const std::exception& error) {
  const auto* known = dynamic_cast<const Error*>(&error);
  if ((known != nullptr && known->kind() == ErrorKind::interrupted) || dynamic_cast<const PeersLost*>(&error) ||
      is_out_of_space(error))
    return RunStatus::interrupted;
  return RunStatus::failed;
}

// The result of a claim that leaves nothing to train, if it is one.
std::optional<RunResult> skip_result(ClaimOutcome outcome, const std::optional<RunRecord>& previous,
                                     const std::string& config_hash) {
  if (outcome == ClaimOutcome::started || outcome == ClaimOutcome::resumed) return std::nullopt;
  RunResult result;
  result.run_id = previous->id;
  if (outcome == ClaimOutcome::finished_before) {
    result.outcome = RunOutcome::finished_before;
    result.detail = "finished before";
  } else if (outcome == ClaimOutcome::pruned_before) {
    result.outcome = RunOutcome::pruned_before;
    result.detail = "pruned before: " + previous->error;
  } else if (outcome == ClaimOutcome::busy) {
    result.outcome = RunOutcome::busy;
    result.detail = previous->config_hash == config_hash
                        ? fmt::format("running in pid {} on {}", previous->pid, previous->host)
                        : fmt::format("waiting: run {} (pid {} on {}) is training the same network, which this "
                                      "configuration will reuse",
                                      previous->id, previous->pid, previous->host);
  } else {
    result.outcome = RunOutcome::failed_before;
    result.detail = fmt::format("{} before: {} (--retry-failed runs it again)", to_string(previous->status), previous->error);
  }
  return result;
}

// The same decision from the database alone, before anything is loaded (no file: nothing to
// skip, and nothing is written yet).
std::optional<RunResult> skip_early(const Experiment& experiment, const std::string& database,
                                    const ClaimPolicy& policy) {
  if (policy.new_run || !fs::exists(database)) return std::nullopt;
  ResultsStore store(database);
  std::optional<RunRecord> previous = store.latest_run(experiment.config_hash());
  return skip_result(claim_decision(previous, policy), previous, experiment.config_hash());
}

// The components and the data. Everything that can fail because of the user's input fails here,
// before the database is touched.
ImageSplits load_data(const Experiment& experiment, const Settings& settings, const Components& components) {
  if (const std::optional<SplitCounts> counts = components.dataset->counts())
    check_data_memory(experiment, settings, components.dataset->channels(), *counts);
  ImageSplits data = components.dataset->load();
  check_data_fits(experiment, settings, data.train.size(0), data.validation.size(0));
  return data;
}

// A configuration that differs from a finished run only in sections that do not define the
// trained network (sampling, evaluation, KID features) reuses that run's network: its final
// checkpoint is this run's starting point. Returns the run that trained it, if any.
std::optional<int64_t> reuse_trained_network(const Experiment& experiment, const Claim& claim, bool new_run,
                                             ResultsStore& store, const fs::path& run_dir) {
  if (claim.outcome == ClaimOutcome::resumed && claim.previous->trained_by > 0) return claim.previous->trained_by;
  if (claim.outcome != ClaimOutcome::started || new_run) return std::nullopt;
  std::optional<TrainedNetwork> source = store.trained_network(experiment);
  if (!source) return std::nullopt;
  fs::create_directories(run_dir);
  copy_file_atomically(source->checkpoint, run_dir / "checkpoint.pt");
  store.set_trained_by(claim.run_id, source->run_id);
  return source->run_id;
}

}  // namespace

void check_data_fits(const Experiment& experiment, const Settings& settings, int64_t train_count,
                     int64_t validation_count, const AdaptiveSweep* adaptive) {
  const int64_t batch_size = settings.training.batch_size;
  if (train_count < batch_size)
    throw ConfigError(fmt::format("batch_size {} exceeds the {} training images", batch_size, train_count),
                      ErrorContext::for_key(experiment.file.string(), "training.batch_size"));
  if (settings.evaluation.kid_protocol != KidProtocol::none && validation_count < batch_size)
    throw ConfigError(fmt::format("KID compares batches of batch_size {} images, and the validation split has {}",
                                  batch_size, validation_count),
                      ErrorContext::for_key(experiment.file.string(), "evaluation.kid_protocol",
                                            "lower training.batch_size, enlarge the validation split, or set "
                                            "kid_protocol = \"none\""));
  // The k-NN metrics compare kid_batches full validation batches (at most what the split holds)
  // of real and as many generated images: k must be below that.
  const EvaluationSettings& evaluation = settings.evaluation;
  if (evaluation.kid_protocol != KidProtocol::none && validation_count >= batch_size) {
    const int64_t available = validation_count / batch_size;
    const int64_t samples =
        (evaluation.kid_batches > 0 ? std::min(available, evaluation.kid_batches) : available) * batch_size;
    for (const auto& [key, k, first, second] :
         {std::make_tuple("pr_k", evaluation.pr_k, "precision", "recall"),
          std::make_tuple("dc_k", evaluation.dc_k, "density", "coverage")})
      if ((evaluation.has_metric(first) || evaluation.has_metric(second)) && k >= samples)
        throw ConfigError(fmt::format("{} = {} needs more samples than that: the metrics compare {} real and {} "
                                      "generated images ({} validation batches of {})",
                                      key, k, samples, samples, samples / batch_size, batch_size),
                          ErrorContext::for_key(experiment.file.string(), std::string("evaluation.") + key));
  }
  // An adaptive sweep deciding on a validation loss needs it at every rung: one full batch.
  if (adaptive != nullptr && adaptive->metric.rfind("val_", 0) == 0 && validation_count < batch_size) {
    const auto where = adaptive->where.find("sweep.metric");
    throw ConfigError(
        fmt::format("sweep.metric \"{}\" is measured on full validation batches of batch_size {} images, and the "
                    "validation split has {}: no rung would have a value to decide on",
                    adaptive->metric, batch_size, validation_count),
        where != adaptive->where.end()
            ? where->second
            : ErrorContext::for_key(experiment.file.string(), "sweep.metric",
                                    "lower training.batch_size or enlarge the validation split"));
  }
}

void check_data_memory(const Experiment& experiment, const Settings& settings, int64_t channels,
                       const SplitCounts& counts) {
  const int64_t size = settings.data.image_size;
  const double images = static_cast<double>(counts.train + counts.validation);
  const double needed = images * static_cast<double>(channels) * static_cast<double>(size) * static_cast<double>(size) * 4.0;
  const double memory = machine_memory_bytes();
  if (needed > memory)
    throw ConfigError(fmt::format("the data set's {:.0f} images at image_size {} need {:.3g} GB as float32 ({:.0f} x {} "
                                  "x {} x {} x 4 bytes), and this machine has {:.3g} GB of memory",
                                  images, size, needed / 1e9, images, channels, size, size, memory / 1e9),
                      ErrorContext::for_key(experiment.file.string(), "data.image_size",
                                            "lower image_size, or data.train_limit / data.validation_limit"));
}

namespace {

// The peak bytes one forward and backward pass of the network on one image of side `size`
// allocates; everything it touches (batch statistics, the random generator, gradients) is put
// back, so that the run's numbers do not depend on the check.
// The parameters' gradients are left out (the input's gradient takes the whole backward pass
// through the activations): they are the same for any batch, and the network's size is checked
// on its own (check_unet_size).
int64_t training_bytes_per_image(Network& network, int64_t channels, int64_t size) {
  std::vector<torch::Tensor> buffers;
  for (const auto& buffer : network.buffers()) buffers.push_back(buffer.clone());
  auto generator = at::detail::getDefaultCPUGenerator();
  const torch::Tensor generator_state = generator.get_state();
  std::vector<torch::Tensor> trained;
  for (auto& parameter : network.parameters())
    if (parameter.requires_grad()) trained.push_back(parameter.requires_grad_(false));
  auto restore = [&] {
    torch::NoGradGuard no_grad;
    const auto now = network.buffers();
    for (size_t i = 0; i < buffers.size(); ++i) now[i].copy_(buffers[i]);
    for (auto& parameter : trained) parameter.requires_grad_(true);
    generator.set_state(generator_state);
  };
  try {
    const int64_t bytes = peak_allocated_bytes([&] {
      const torch::Tensor noisy_images = torch::randn({1, channels, size, size}).requires_grad_();
      network.forward(noisy_images, torch::full({1, 1, 1, 1}, 0.5)).abs().mean().backward();
    });
    restore();
    return bytes;
  } catch (...) {
    restore();
    throw;
  }
}

// Above this side, an image's training memory is first extrapolated from two smaller sides
// (activations grow with the pixels, bytes = a + b side^2), so that a size that cannot fit is
// refused without trying to allocate it.
constexpr int64_t kLargestMeasuredSide = 128;

}  // namespace

void check_batch_fits(const Experiment& experiment, const Settings& settings, Components& components) {
  Network& network = components.model->network();
  const int64_t channels = components.dataset->channels(), size = settings.data.image_size;
  const double memory = machine_memory_bytes(), batch_size = static_cast<double>(settings.training.batch_size);
  auto refuse = [&](double per_image, const std::string& how) {
    if (per_image > memory)
      throw ConfigError(fmt::format("one image of side {} needs about {:.3g} GB to train{}, and this machine has {:.3g} "
                                    "GB of memory", size, per_image / 1e9, how, memory / 1e9),
                        ErrorContext::for_key(experiment.file.string(), "data.image_size",
                                              "lower image_size or the network's widths"));
    if (per_image * batch_size > memory)
      throw ConfigError(fmt::format("a training step needs about {:.3g} GB for its activations ({:.3g} MB an image{} "
                                    "× batch_size {}), and this machine has {:.3g} GB of memory",
                                    per_image * batch_size / 1e9, per_image / 1e6, how.empty() ? how : how + ",",
                                    settings.training.batch_size, memory / 1e9),
                        ErrorContext::for_key(experiment.file.string(), "training.batch_size",
                                              "lower batch_size, image_size or the network's widths"));
  };
  if (size > kLargestMeasuredSide && size % 4 == 0) {
    int64_t large = size;
    while (large > kLargestMeasuredSide && large % 4 == 0) large /= 2;
    const int64_t small = large / 2;
    std::optional<double> estimate;
    try {  // a network may refuse the smaller sides (downsampling): then it is measured as it is
      const double at_large = static_cast<double>(training_bytes_per_image(network, channels, large));
      const double at_small = static_cast<double>(training_bytes_per_image(network, channels, small));
      const double slope = (at_large - at_small) / static_cast<double>(large * large - small * small);
      estimate = at_large + slope * static_cast<double>(size * size - large * large);
    } catch (const std::exception&) {
    }
    if (estimate) refuse(*estimate, fmt::format(", extrapolated from sides {} and {}", large, small));
  }
  const int64_t per_image = training_bytes_per_image(network, channels, size);
  if (per_image > 0) refuse(static_cast<double>(per_image), "");
}

void check_data_available(const std::vector<SweepRun>& runs, const PluginRegistry& registry) {
  for (const auto& run : runs) {
    const Section& data = run.experiment.section("data");
    registry.create<Dataset>(Family::dataset, data.plugin, data.params, run.experiment.build_context(0))
        ->check_available();
  }
}

void check_before_running(const std::vector<SweepRun>& runs, const PluginRegistry& registry) {
  // Data that is not there first (without data nothing else matters), then the components (a
  // network that cannot be built for this image size, a missing feature model), then the data's
  // split sizes, once per distinct [data]: from the dataset's headers where it can tell, else
  // loaded (unreadable files, splits too small for a batch). Points of a sweep that train the same
  // network (the same training hash: a sampler or KID sweep) build and measure it once, and make
  // only the components of their own sections.
  std::map<std::string, std::pair<int64_t, int64_t>> split_sizes;  // [data] -> (train, validation)
  std::set<std::string> trainings_checked;
  for (const auto& run : runs) {
    const Section& data = run.experiment.section("data");
    auto dataset = registry.create<Dataset>(Family::dataset, data.plugin, data.params, run.experiment.build_context(0));
    dataset->check_available();
    resolve_precision(run.experiment, select_device(run.experiment.settings().experiment.device));
    const Settings settings = run.experiment.settings();
    std::string data_key = data.plugin + "\nimage_size=" + std::to_string(settings.data.image_size);
    for (const auto& [key, value] : data.params.items()) data_key += "\n" + key + "=" + format_value(value);
    if (!trainings_checked.insert(run.experiment.training_hash()).second) {
      const BuildContext context = run.experiment.build_context(dataset->channels());
      for (const std::string& name : section_names()) {
        Family family;
        if (section_defines_training(name) || !section_has_plugin(name, &family)) continue;
        const Section& section = run.experiment.section(name);
        registry.create<Component>(family, section.plugin, section.params, context);
      }
      const auto& [train, validation] = split_sizes.at(data_key);
      check_data_fits(run.experiment, settings, train, validation, run.adaptive.get());
      continue;
    }
    {
      Components components = build_components(run.experiment, registry);
      auto sizes = split_sizes.find(data_key);
      if (sizes == split_sizes.end()) {
        std::optional<SplitCounts> counts = dataset->counts();
        if (counts) {
          check_data_memory(run.experiment, settings, dataset->channels(), *counts);
        } else {
          fmt::print(stderr, "difflab: decoding the {} data to count its images (the plugin cannot tell without)\n",
                     data.plugin);
          const ImageSplits splits = dataset->load();
          counts = SplitCounts{splits.train.size(0), splits.validation.size(0)};
        }
        sizes = split_sizes.emplace(data_key, std::make_pair(counts->train, counts->validation)).first;
      }
      check_data_fits(run.experiment, settings, sizes->second.first, sizes->second.second, run.adaptive.get());
      check_batch_fits(run.experiment, settings, components);
    }
#if defined(__GLIBC__)
    malloc_trim(0);  // a sweep's points one after another, not the sum of their heaps
#endif
  }
}

namespace {

// What rank 0 tells the other ranks of a data-parallel run, through the store: "skip OUTCOME
// RUN_ID DETAIL", "train RUN_ID TRAINED_BY RUN_DIR" or "error MESSAGE".
std::string decision_text(const RunResult& skip) {
  return fmt::format("skip {} {} {}", static_cast<int>(skip.outcome), skip.run_id, skip.detail);
}

torch::Device rank_device(torch::Device device, const RunOptions& options) {
  if (!device.is_cuda() || options.distributed == nullptr) return device;
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA,
                       static_cast<c10::DeviceIndex>(options.distributed->local_rank() % std::max<int64_t>(1, count)));
}

// The global batch is split evenly across the ranks.
void check_batch_splits(const Experiment& experiment, const RunOptions& options) {
  if (options.distributed == nullptr) return;
  const int64_t batch_size = experiment.settings().training.batch_size, world = options.distributed->world();
  if (batch_size % world != 0)
    throw ConfigError(fmt::format("batch_size {} does not split evenly across {} processes", batch_size, world),
                      ErrorContext::for_key(experiment.file.string(), "training.batch_size",
                                            "a multiple of the number of processes"));
}

// A rank other than 0: builds the same components and data, then does what rank 0 decided.
RunResult follow(const Experiment& experiment, const PluginRegistry& registry, const RunOptions& options) {
  check_batch_splits(experiment, options);
  const Settings settings = experiment.settings();
  const torch::Device device = rank_device(configure_process(experiment, options.threads), options);
  Components components = build_components(experiment, registry);
  const ImageSplits data = load_data(experiment, settings, components);
  ProcessGroup& group = *options.distributed;
  const std::string decision = group.share("");
  std::istringstream words(decision);
  std::string verb;
  words >> verb;
  if (verb == "error") throw RuntimeError("rank 0 stopped before training: " + decision.substr(6));
  RunResult result;
  if (verb == "skip") {
    int outcome = 0;
    words >> outcome >> result.run_id;
    result.outcome = static_cast<RunOutcome>(outcome);
    std::getline(words, result.detail);
    return result;
  }
  int64_t run_id = 0, trained_by = 0;
  std::string run_dir;
  words >> run_id >> trained_by;
  std::getline(words >> std::ws, run_dir);
  StopRequest stop_request;
  const RunContext run{experiment, settings, components, data, nullptr, run_id, run_dir, nullptr,
                       trained_by > 0 ? std::optional<int64_t>(trained_by) : std::nullopt, options};
  result = RunTrainer(run, device).run();
  result.run_id = run_id;
  return result;
}

RunResult claim_and_train(const Experiment& experiment, const PluginRegistry& registry, const RunOptions& options) {
  ProcessGroup* group = options.distributed;
  if (group != nullptr && group->rank() != 0) return follow(experiment, registry, options);
  const Settings settings = experiment.settings();
  const std::string database = options.database.empty() ? settings.experiment.database : options.database;
  ExperimentSettings folders = settings.experiment;
  if (!options.output_dir.empty()) folders.output_dir = options.output_dir;
  const ClaimPolicy policy{options.new_run, options.retry_failed};
  // Rank 0 of a data-parallel run tells the others what it decided, or why it stopped.
  bool told = false;
  auto tell = [&](const std::string& decision) {
    if (group != nullptr && !told) group->share(decision);
    told = true;
  };
  std::optional<Claim> claim;
  std::optional<ResultsStore> store;
  torch::Device device = torch::kCPU;
  std::optional<Components> components;
  std::optional<ImageSplits> data;
  try {
    check_batch_splits(experiment, options);
    if (std::optional<RunResult> early = skip_early(experiment, database, policy)) {
      tell(decision_text(*early));
      return *early;
    }
    device = rank_device(configure_process(experiment, options.threads), options);
    resolve_precision(experiment, device);  // bf16 where the CPU has none: a config Error, now
    components.emplace(build_components(experiment, registry));
    data.emplace(load_data(experiment, settings, *components));
    check_batch_fits(experiment, settings, *components);

    // The claim is atomic: of several processes working through the same configurations, one
    // trains each (another may have taken it while this one loaded the data).
    store.emplace(database);
    claim = store->claim_run(experiment, components->versions_json, policy, options.variant);
    if (std::optional<RunResult> skip = skip_result(claim->outcome, claim->previous, experiment.config_hash())) {
      tell(decision_text(*skip));
      return *skip;
    }
  } catch (const std::exception& error) {
    tell("error " + describe(error));
    throw;
  }
  if (!options.announce.empty()) fmt::print("{}\n", options.announce);
  const fs::path run_dir =
      run_folder(experiment, folders, claim->run_id, claim->outcome == ClaimOutcome::started);
  fmt::print("difflab: run {} of \"{}\" -> {} (database {}{})\n", claim->run_id, settings.experiment.name,
             run_dir.string(), database,
             group ? fmt::format("; {} processes, {}", group->world(), group->backend()) : "");
  std::fflush(stdout);
  std::optional<int64_t> trained_by;
  try {
    if (options.sweep_trial) store->record_sweep_trial(claim->run_id, *options.sweep_trial);
    trained_by = reuse_trained_network(experiment, *claim, options.new_run, *store, run_dir);
    store->set_processes(claim->run_id, group ? group->world() : 1, group ? group->backend() : "");
  } catch (const std::exception& error) {
    tell("error " + describe(error));
    throw;
  }
  tell(fmt::format("train {} {} {}", claim->run_id, trained_by.value_or(0), run_dir.string()));

  // From here on the run row is ours: it ends finished, or failed with the error's message.
  StopRequest stop_request;
  RunHeartbeat heartbeat(database, claim->run_id);
  try {
    const RunContext run{experiment, settings, *components, *data, &*store, claim->run_id, run_dir, &heartbeat,
                         trained_by, options};
    RunResult result = RunTrainer(run, device).run();
    result.trained_by = trained_by.value_or(0);
    if (result.outcome == RunOutcome::trained) store->finish_run(claim->run_id);
    return result;
  } catch (const std::exception& error) {
    // When the database itself cannot be written, the row stays running and the next run takes
    // it back.
    try {
      auto record = store->run(claim->run_id);
      if (record && record->status == RunStatus::running && !heartbeat.lost())
        store->close_run(claim->run_id, status_after(error), describe(error));
    } catch (const std::exception& recording) {
      fmt::print(stderr, "difflab: warning: could not record the failure of run {}: {}\n", claim->run_id,
                 describe(recording));
    }
    // Exit code 2 means nothing was written; this run's row now says failed, so a bad input
    // found only now (a folder where the checkpoint should be) is a failure of the run: 1.
    if (const auto* input_error = dynamic_cast<const Error*>(&error); input_error && input_error->kind() == ErrorKind::config)
      throw Error(ErrorKind::runtime, input_error->message(), input_error->context());
    throw;
  }
}

}  // namespace

RunResult run_experiment(const Experiment& experiment, const PluginRegistry& registry,
                         const RunOptions& options) {
  try {
    return claim_and_train(experiment, registry, options);
  } catch (const std::exception& error) {
    // SQLite's own errors (a full disk under the database, a read-only file) name no file.
    if (!ResultsStore::is_database_error(error)) throw;
    throw RuntimeError("results database: " + describe(error),
                       ErrorContext::in_file(options.database.empty() ? experiment.settings().experiment.database
                                                                       : options.database));
  }
}

namespace {

// BenchResult's sample-metrics share (its comment says what is timed).
void bench_sample_metrics(BenchResult& result, const Settings& settings, const Experiment& experiment,
                          Components& components, int64_t batch_size, int64_t channels, int64_t image_size) {
  const EvaluationSettings& evaluation = settings.evaluation;
  result.kid_every = evaluation.kid_every;
  for (const auto& metric : evaluation.metrics) result.metrics_names += (result.metrics_names.empty() ? "" : ", ") + metric;
  if (evaluation.kid_protocol == KidProtocol::none) {
    result.metrics_note = "kid_protocol = \"none\": no sample metrics";
    return;
  }
  const std::optional<SplitCounts> counts = components.dataset->counts();
  const int64_t validation_batches = counts ? counts->validation / batch_size : evaluation.kid_batches;
  const int64_t batches = evaluation.kid_batches > 0 && (validation_batches <= 0 || evaluation.kid_batches < validation_batches)
                              ? evaluation.kid_batches
                              : std::max<int64_t>(1, validation_batches);
  result.metric_samples = batches * batch_size;
  const torch::Tensor images = torch::rand({batch_size, channels, image_size, image_size});
  torch::Tensor features;
  try {
    const auto start = Clock::now();
    features = components.features->extract(images);
    result.features_seconds = std::chrono::duration<double>(Clock::now() - start).count() * static_cast<double>(batches);
  } catch (const std::exception& error) {
    result.metrics_note = fmt::format("the {} features are prepared on the data first ({}): not timed",
                                      experiment.section("features").plugin, error.what());
    return;
  }
  result.feature_dims = features.size(1);
  result.generation_seconds = static_cast<double>(result.metric_samples) / result.kid_sample_images_per_second;
  torch::manual_seed(0);
  const torch::Tensor real = torch::randn({result.metric_samples, result.feature_dims});
  const torch::Tensor generated = torch::randn({result.metric_samples, result.feature_dims}) * 1.1;
  KidRecord record;
  record.protocol = to_string(evaluation.kid_protocol);
  record.real_count = record.generated_count = result.metric_samples;
  const auto start = Clock::now();
  measure_samples(settings, record, real, generated);
  result.metric_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.evaluation_seconds = result.generation_seconds + result.features_seconds + result.metric_seconds;
  const int64_t steps_per_epoch = settings.training.steps_per_epoch > 0 ? settings.training.steps_per_epoch
                                  : counts ? std::max<int64_t>(1, counts->train / batch_size)
                                           : 0;
  if (steps_per_epoch == 0) {
    result.metrics_note = "the dataset does not say its size before loading: no epoch to compare with";
    return;
  }
  result.epoch_train_seconds =
      static_cast<double>(steps_per_epoch * batch_size) / result.train_images_per_second;
  const double per_epoch = result.evaluation_seconds / static_cast<double>(std::max<int64_t>(1, evaluation.kid_every));
  result.metrics_share = per_epoch / (result.epoch_train_seconds + per_epoch);
}

}  // namespace

BenchResult bench_experiment(const Experiment& experiment, const PluginRegistry& registry,
                             int64_t steps, bool profile, int64_t threads, ProcessGroup* distributed) {
  const Settings settings = experiment.settings();
  RunOptions placement;
  placement.distributed = distributed;
  const torch::Device device = rank_device(configure_process(experiment, threads), placement);
  Components components = build_components(experiment, registry);
  DiffusionModel& model = *components.model;
  const int64_t batch_size = settings.training.batch_size;
  const int64_t channels = components.dataset->channels();
  const int64_t image_size = settings.data.image_size;
  torch::Tensor images = torch::rand({batch_size, channels, image_size, image_size});
  model.adapt(images);
  place_model(model, experiment, device);
  auto optimizer = make_optimizer(model, experiment);
  auto synchronize = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  // Data parallel: each rank a batch of its own (the same batch size as one process), gradients
  // averaged as a run averages them.
  StepShard shard;
  shard.synchronise = [&](StepLosses&) { distributed->average_gradients(model.network().parameters()); };
  auto train = [&](int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      model.train_step(images, *optimizer, distributed ? &shard : nullptr, settings.training.ema);
      model.update_ema_buffers(settings.training.ema);
    }
    synchronize();
  };
  train(3);  // warm-up: allocator, oneDNN primitive caches
  auto start = Clock::now();
  train(steps);
  BenchResult result;
  result.batch_shape = images.sizes().vec();
  const ResolvedPrecision precision = resolve_precision(experiment, device);
  result.precision = fmt::format("{} ({})", precision.precision == Precision::bf16 ? "bf16" : "fp32", precision.reason);
  result.cpu = device.is_cuda() ? "CUDA device " + std::to_string(device.index()) : cpu_description();
  const int64_t world = distributed ? distributed->world() : 1;
  result.train_images_per_second =
      world * steps * batch_size / std::chrono::duration<double>(Clock::now() - start).count();
  {  // the optimiser's share: its step and the EMA update alone, on the last step's gradients
    const auto optimizer_start = Clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      model.step_optimizer(*optimizer, settings.training.ema);
      model.update_ema_buffers(settings.training.ema);
    }
    synchronize();
    const double optimizer_seconds = std::chrono::duration<double>(Clock::now() - optimizer_start).count();
    result.optimizer_share = optimizer_seconds * result.train_images_per_second / static_cast<double>(world * steps * batch_size);
  }
  if (distributed && distributed->rank() != 0) return result;  // rank 0 samples and reports

  result.plot_steps = settings.evaluation.plot_diffusion_steps;
  result.kid_steps = settings.evaluation.kid_diffusion_steps;
  result.sample_batch_size = settings.evaluation.sample_batch_size;
  auto images_per_second = [&](int64_t diffusion_steps) {
    model.generate(batch_size, 1);  // warm-up: buffers and primitives for this batch shape
    synchronize();
    const auto sample_start = Clock::now();
    model.generate(batch_size, diffusion_steps);
    synchronize();
    return static_cast<double>(batch_size) / std::chrono::duration<double>(Clock::now() - sample_start).count();
  };
  result.sample_images_per_second = images_per_second(result.plot_steps);
  result.inference_path = model.used_inference_path();
  result.kid_sample_images_per_second = images_per_second(result.kid_steps);
  model.set_inference_path(false);
  model.set_sample_batch_size(0);
  result.forward_sample_images_per_second = images_per_second(result.plot_steps);
  model.set_inference_path(true);
  model.set_sample_batch_size(result.sample_batch_size);
  bench_sample_metrics(result, settings, experiment, components, batch_size, channels, image_size);
  result.peak_rss_mb = peak_rss_mb();

  if (profile) {
    model.reset_evaluations();
    for (const OperatorTime& op : profile_operators([&] { model.generate(batch_size, result.plot_steps); })) {
      // Per network call: evaluations per image times the batches the images were sampled in.
      const int64_t batches =
          result.sample_batch_size > 0 ? (batch_size + result.sample_batch_size - 1) / result.sample_batch_size : 1;
      const double evaluations = static_cast<double>(std::max<int64_t>(1, model.evaluations() * batches));
      result.sample_profile.push_back({op.name, op.self_ms / evaluations, static_cast<double>(op.calls) / evaluations});
      result.profiled_ms_per_sample_step += op.self_ms / evaluations;
    }
    for (const OperatorTime& op : profile_operators([&] { train(steps); })) {
      result.profile.push_back({op.name, op.self_ms / static_cast<double>(steps),
                                static_cast<double>(op.calls) / static_cast<double>(steps)});
      result.profiled_ms_per_step += op.self_ms / static_cast<double>(steps);
    }
  }
  return result;
}

}  // namespace difflab
