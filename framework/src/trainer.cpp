// The main flow of one run, top to bottom: settings -> components -> data -> database row ->
// epochs of training (progress, metrics, sample grid, checkpoint) -> finished or failed.
#include "difflab/trainer.h"

#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cmath>
#include <fmt/format.h>
#include <limits>
#include <optional>
#include <signal.h>
#include <sys/resource.h>
#include <thread>
#include <torch/torch.h>
#include <unistd.h>

#include "difflab/dataset.h"
#include "difflab/diffusion_model.h"
#include "difflab/error.h"
#include "difflab/experiment.h"
#include "difflab/features.h"
#include "difflab/image_io.h"
#include "difflab/kid.h"
#include "difflab/registry.h"
#include "difflab/results_store.h"
#include "difflab/version.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> interrupt_signal{0};
extern "C" void on_interrupt(int signal) { interrupt_signal = signal; }

// Installs SIGINT/SIGTERM handlers for the run's lifetime, so that an interrupted run is closed
// as failed ("interrupted") instead of being left running.
class InterruptGuard {
 public:
  InterruptGuard() {
    interrupt_signal = 0;
    previous_int_ = std::signal(SIGINT, on_interrupt);
    previous_term_ = std::signal(SIGTERM, on_interrupt);
  }
  ~InterruptGuard() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }
  static void check() {
    if (int signal = interrupt_signal.load())
      throw RuntimeError(fmt::format("interrupted by signal {}", signal));
  }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

struct Components {
  std::shared_ptr<Dataset> dataset;
  std::shared_ptr<FeatureExtractor> features;
  std::unique_ptr<DiffusionModel> model;
  std::string versions_json;
};

torch::Device select_device(const std::string& device) {
  if (device == "cuda" && !torch::cuda::is_available())
    throw ConfigError("device \"cuda\" requested but no CUDA device is available",
                      {"", 0, 0, "experiment.device", "use device = \"cpu\" or \"auto\""});
  if (device == "cuda" || (device == "auto" && torch::cuda::is_available())) return torch::kCUDA;
  return torch::kCPU;
}

void configure_threads(int64_t threads) {
  // LibTorch may start with a single thread: always set the count explicitly.
  int64_t count = threads > 0 ? threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(count));
}

Components build_components(const Experiment& experiment, const PluginRegistry& registry) {
  const Section& data = experiment.section("data");
  auto dataset = registry.create<Dataset>(Family::dataset, data.plugin, data.params,
                                          experiment.build_context(0));
  const BuildContext context = experiment.build_context(dataset->channels());
  auto make = [&](const std::string& name, Family family, auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    const Section& section = experiment.section(name);
    return registry.create<T>(family, section.plugin, section.params, context);
  };
  auto network = make("network", Family::network, static_cast<Network*>(nullptr));
  auto ema_network = make("network", Family::network, static_cast<Network*>(nullptr));
  auto schedule = make("schedule", Family::schedule, static_cast<Schedule*>(nullptr));
  auto loss = make("loss", Family::loss, static_cast<Loss*>(nullptr));
  auto sampler = make("sampler", Family::sampler, static_cast<Sampler*>(nullptr));
  auto features = make("features", Family::features, static_cast<FeatureExtractor*>(nullptr));

  std::string versions = fmt::format(R"({{"difflab": "{}", "libtorch": "{}", "plugins": {{)",
                                     DIFFLAB_VERSION, TORCH_VERSION);
  bool first = true;
  for (const auto& name : section_names()) {
    const Section& section = experiment.section(name);
    if (section.plugin.empty()) continue;
    Family family;
    section_has_plugin(name, &family);
    versions += fmt::format(R"({}"{}": "{} {}")", first ? "" : ", ", name, section.plugin,
                            registry.get(family, section.plugin).version);
    first = false;
  }
  versions += "}}";

  auto model = std::make_unique<DiffusionModel>(network, ema_network, schedule, loss, sampler,
                                                context.image_size, context.image_channels);
  return {dataset, features, std::move(model), versions};
}

// Whether the process that owns a "running" row is still there: on this host, by its pid; on
// another host, by a heartbeat younger than an hour.
bool run_process_alive(const RunRecord& run) {
  if (run.host == host_name()) return run.pid > 0 && (kill(static_cast<pid_t>(run.pid), 0) == 0 || errno == EPERM);
  return run.heartbeat_age_seconds >= 0 && run.heartbeat_age_seconds < 3600;
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t total = static_cast<int64_t>(seconds + 0.5);
  if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
  return fmt::format("{}m{:02}s", total / 60, total % 60);
}

// A live progress line: rewritten in place on a terminal, one line every 15 s in a log.
class Progress {
 public:
  Progress() : terminal_(isatty(STDERR_FILENO) != 0) {}

  void update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double noise_loss,
              double images_per_second, double eta_seconds) {
    auto now = Clock::now();
    double since = std::chrono::duration<double>(now - last_).count();
    if (step != steps && since < (terminal_ ? 0.25 : 15.0)) return;
    last_ = now;
    std::string line = fmt::format("epoch {}/{}  step {}/{}  n_loss {:.4f}  {:.1f} images/s  ETA {}",
                                   epoch, epochs, step, steps, noise_loss, images_per_second,
                                   format_duration(eta_seconds));
    if (terminal_) {
      fmt::print(stderr, "\r{:<90}", line);
      if (step == steps) fmt::print(stderr, "\r{:<90}\r", "");
    } else {
      fmt::print(stderr, "{}\n", line);
    }
    std::fflush(stderr);
  }

 private:
  bool terminal_;
  Clock::time_point last_{};
};

// Everything a run needs to continue exactly where it stopped (the seed's model plus the
// random generator, so that a resumed run draws the same batches and noises).
struct TrainingState {
  int64_t epoch = 0;  // epochs completed
  int64_t step = 0;   // optimiser steps completed
  double best_kid = std::numeric_limits<double>::infinity();
};

void save_checkpoint(const fs::path& path, DiffusionModel& model, torch::optim::Optimizer& optimizer,
                     const TrainingState& state) {
  torch::serialize::OutputArchive archive, network, ema_network, optimizer_state;
  model.network().save(network);
  model.ema_network().save(ema_network);
  optimizer.save(optimizer_state);
  archive.write("network", network);
  archive.write("ema_network", ema_network);
  archive.write("optimizer", optimizer_state);
  archive.write("normalizer_mean", model.mean().cpu());
  archive.write("normalizer_variance", model.variance().cpu());
  archive.write("epoch", torch::tensor(state.epoch));
  archive.write("step", torch::tensor(state.step));
  archive.write("best_kid", torch::tensor(state.best_kid, torch::kFloat64));
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("cpu_rng_state", generator.get_state());
  }
  if (model.device().is_cuda()) {
    auto generator = at::globalContext().defaultGenerator(model.device());
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("cuda_rng_state", generator.get_state());
  }
  // Write then rename, so that a crash never leaves a half-written checkpoint.
  fs::path partial = path;
  partial += ".partial";
  archive.save_to(partial.string());
  fs::rename(partial, path);
}

TrainingState load_checkpoint(const fs::path& path, DiffusionModel& model,
                              torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive, network, ema_network, optimizer_state;
  archive.load_from(path.string(), model.device());
  archive.read("network", network);
  archive.read("ema_network", ema_network);
  archive.read("optimizer", optimizer_state);
  model.network().load(network);
  model.ema_network().load(ema_network);
  optimizer.load(optimizer_state);
  torch::Tensor mean, variance, epoch, step, best_kid, cpu_rng_state;
  archive.read("normalizer_mean", mean);
  archive.read("normalizer_variance", variance);
  archive.read("epoch", epoch);
  archive.read("step", step);
  archive.read("best_kid", best_kid);
  archive.read("cpu_rng_state", cpu_rng_state);
  model.set_normalizer(mean, variance);
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(cpu_rng_state.cpu());
  }
  if (model.device().is_cuda()) {
    torch::Tensor cuda_rng_state;
    archive.read("cuda_rng_state", cuda_rng_state);
    auto generator = at::globalContext().defaultGenerator(model.device());
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(cuda_rng_state.cpu());
  }
  return {epoch.item<int64_t>(), step.item<int64_t>(), best_kid.item<double>()};
}

// KID between validation images and as many images generated by the EMA network with
// kid_diffusion_steps (the seed's test_step), under the experiment's protocol.
KidRecord evaluate_kid(const Experiment& experiment, DiffusionModel& model,
                       FeatureExtractor& features, const torch::Tensor& validation_images) {
  const Params& evaluation = experiment.section("evaluation").params;
  const int64_t batch_size = experiment.section("training").params.integer("batch_size");
  const int64_t all_batches = validation_images.size(0) / batch_size;
  const int64_t batches = evaluation.integer("kid_batches") > 0
                              ? std::min(all_batches, evaluation.integer("kid_batches"))
                              : all_batches;
  KidRecord record;
  record.protocol = evaluation.string("kid_protocol");
  record.features = experiment.section("features").plugin;
  record.sampler = experiment.section("sampler").plugin;
  record.diffusion_steps = evaluation.integer("kid_diffusion_steps");
  record.real_count = record.generated_count = batches * batch_size;
  if (batches < 1)
    throw RuntimeError(fmt::format("KID needs at least one validation batch of {} images, the "
                                   "validation split has {}", batch_size, validation_images.size(0)));
  std::vector<torch::Tensor> real_features, generated_features;
  for (int64_t batch = 0; batch < batches; ++batch) {
    real_features.push_back(
        features.extract(validation_images.slice(0, batch * batch_size, (batch + 1) * batch_size)));
    generated_features.push_back(
        features.extract(model.generate(batch_size, record.diffusion_steps)));
  }
  torch::Tensor real = torch::cat(real_features), generated = torch::cat(generated_features);
  if (record.protocol == "per_batch") {
    record.mean = kid_per_batch(real, generated, batch_size);
  } else {
    KidEstimate estimate = kid_subsets(real, generated, evaluation.integer("kid_subsets"),
                                       evaluation.integer("kid_subset_size"),
                                       static_cast<uint64_t>(experiment.section("experiment").params.integer("seed")));
    record.mean = estimate.mean;
    record.std = estimate.std;
  }
  return record;
}

std::string run_folder_name(const std::string& name, int64_t run_id) {
  std::string safe;
  for (char c : name) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return fmt::format("{}-run{}", safe, run_id);
}

// A run row of the same configuration that this command should continue, if any: one that was
// killed (still "running" but its process is gone) or interrupted (Ctrl-C, SIGTERM).
bool is_resumable(const RunRecord& run) {
  if (run.status == "failed") return run.error.rfind("interrupted", 0) == 0;
  return run.status == "running" && !run_process_alive(run);
}

// The seed's fit(): epochs of train steps, then per epoch validation losses, a sample grid, KID,
// the database rows and a checkpoint. Continues from `run_dir`'s checkpoint when there is one.
RunResult train_run(const Experiment& experiment, Components& components, const ImageSplits& data,
                    ResultsStore& store, int64_t run_id, const fs::path& run_dir,
                    torch::Device device) {
  const Params& settings = experiment.section("experiment").params;
  const Params& training = experiment.section("training").params;
  const Params& evaluation = experiment.section("evaluation").params;
  DiffusionModel& model = *components.model;
  const int64_t batch_size = training.integer("batch_size");
  const int64_t train_count = data.train.size(0);

  fs::create_directories(run_dir);
  model.adapt(data.train);
  model.to(device, settings.boolean("channels_last"));
  model.set_precision(settings.string("precision") == "bf16" ? Precision::bf16 : Precision::fp32);
  // Keras AdamW defaults besides the seed's values: beta_1 0.9, beta_2 0.999, epsilon 1e-7.
  torch::optim::AdamW optimizer(model.network().parameters(),
                                torch::optim::AdamWOptions(training.real("learning_rate"))
                                    .weight_decay(training.real("weight_decay"))
                                    .eps(1e-7));

  const fs::path checkpoint_path = run_dir / "checkpoint.pt";
  TrainingState state;
  if (fs::exists(checkpoint_path)) {
    state = load_checkpoint(checkpoint_path, model, optimizer);
    model.to(device, settings.boolean("channels_last"));  // loading may change memory formats
    fmt::print("difflab: resuming run {} after epoch {} (step {}) from {}\n", run_id, state.epoch,
               state.step, checkpoint_path.string());
  }

  const int64_t epochs = training.integer("epochs");
  // One epoch = `repetitions` shuffled passes; the incomplete last batch is dropped.
  const int64_t full_steps = train_count * data.repetitions / batch_size;
  const int64_t steps_per_epoch = training.integer("steps_per_epoch") > 0
                                      ? std::min(full_steps, training.integer("steps_per_epoch"))
                                      : full_steps;
  const int64_t grid_rows = evaluation.integer("grid_rows");
  const int64_t grid_cols = evaluation.integer("grid_cols");
  // The same initial noise every epoch (its own generator, so that resuming does not shift the
  // training draws), so that grids show the model's progress.
  torch::Tensor grid_noise = torch::randn(
      {grid_rows * grid_cols, data.train.size(1), data.train.size(2), data.train.size(3)},
      at::detail::createCPUGenerator(static_cast<uint64_t>(settings.integer("seed"))));

  RunResult result;
  result.run_id = run_id;
  Progress progress;
  const auto run_start = Clock::now();
  for (int64_t epoch = state.epoch + 1; epoch <= epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    std::vector<torch::Tensor> passes;
    for (int64_t pass = 0; pass < data.repetitions; ++pass)
      passes.push_back(torch::randperm(train_count, torch::kLong));
    torch::Tensor order = torch::cat(passes);  // reshuffled every epoch
    double noise_loss_sum = 0.0, image_loss_sum = 0.0;
    for (int64_t batch = 0; batch < steps_per_epoch; ++batch) {
      InterruptGuard::check();
      torch::Tensor indices = order.slice(0, batch * batch_size, (batch + 1) * batch_size);
      StepLosses losses = model.train_step(data.train.index_select(0, indices), optimizer);
      model.update_ema(ema_decay(training.real("ema"), state.step, training.boolean("ema_warmup")));
      ++state.step;
      const double noise_loss = losses.noise_loss.item<double>();
      if (!std::isfinite(noise_loss)) {
        store.fail_run(run_id, "diverged",
                       fmt::format("noise loss is {} at epoch {}, step {}", noise_loss, epoch, state.step));
        throw RuntimeError(fmt::format("run {} diverged: noise loss {} at step {}", run_id,
                                       noise_loss, state.step));
      }
      noise_loss_sum += noise_loss;
      image_loss_sum += losses.image_loss.item<double>();
      const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
      const double images_per_second = (batch + 1) * batch_size / elapsed;
      const double remaining_steps =
          static_cast<double>((epochs - epoch) * steps_per_epoch + steps_per_epoch - batch - 1);
      progress.update(epoch, epochs, batch + 1, steps_per_epoch, noise_loss_sum / (batch + 1),
                      images_per_second, remaining_steps * batch_size / images_per_second);
    }
    const double train_seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();

    // Validation losses with the EMA network (the seed's val_n_loss, val_i_loss).
    const int64_t val_batches_all = data.validation.size(0) / batch_size;
    const int64_t val_batches = evaluation.integer("validation_batches") > 0
                                    ? std::min(val_batches_all, evaluation.integer("validation_batches"))
                                    : val_batches_all;
    double val_noise_loss = 0.0, val_image_loss = 0.0;
    for (int64_t batch = 0; batch < val_batches; ++batch) {
      StepLosses losses =
          model.test_step(data.validation.slice(0, batch * batch_size, (batch + 1) * batch_size));
      val_noise_loss += losses.noise_loss.item<double>() / val_batches;
      val_image_loss += losses.image_loss.item<double>() / val_batches;
    }

    // A sample grid from the EMA network.
    const fs::path grid_path = run_dir / fmt::format("epoch-{:03}.png", epoch);
    write_image_grid(grid_path,
                     model.generate_from(grid_noise, evaluation.integer("plot_diffusion_steps")),
                     grid_rows, grid_cols, evaluation.integer("grid_scale"));
    std::vector<ArtifactRecord> artifacts = {{"sample_grid", grid_path.string(), epoch},
                                             {"checkpoint", checkpoint_path.string(), epoch}};

    // KID every kid_every epochs and after the last; the best checkpoint by KID is kept (the
    // seed's ModelCheckpoint on val_kid).
    std::optional<KidRecord> kid;
    bool new_best = false;
    if (evaluation.string("kid_protocol") != "none" &&
        (epoch % evaluation.integer("kid_every") == 0 || epoch == epochs)) {
      kid = evaluate_kid(experiment, model, *components.features, data.validation);
      new_best = kid->mean < state.best_kid;
      if (new_best) {
        state.best_kid = kid->mean;
        artifacts.push_back({"best_checkpoint", (run_dir / "best.pt").string(), epoch});
      }
    }

    // The epoch's rows first, then the checkpoint: a crash in between replays this epoch from
    // the previous checkpoint, and its rows are replaced by the same values, never duplicated.
    result.noise_loss = noise_loss_sum / steps_per_epoch;
    result.image_loss = image_loss_sum / steps_per_epoch;
    result.last_grid = grid_path;
    std::vector<std::pair<std::string, double>> metrics = {
        {"n_loss", result.noise_loss},
        {"i_loss", result.image_loss},
        {"train_images_per_second", steps_per_epoch * batch_size / train_seconds},
        {"epoch_seconds", std::chrono::duration<double>(Clock::now() - epoch_start).count()},
    };
    if (val_batches > 0) {
      metrics.emplace_back("val_n_loss", val_noise_loss);
      metrics.emplace_back("val_i_loss", val_image_loss);
    }
    if (kid) metrics.emplace_back("val_kid", kid->mean);
    store.record_epoch(run_id, epoch, state.step, metrics, artifacts, kid);
    state.epoch = epoch;
    save_checkpoint(checkpoint_path, model, optimizer, state);
    if (new_best) fs::copy_file(checkpoint_path, run_dir / "best.pt", fs::copy_options::overwrite_existing);

    fmt::print("epoch {}/{}: n_loss {:.4f}  i_loss {:.4f}  val_n_loss {:.4f}  val_i_loss {:.4f}  "
               "{}{:.1f} images/s  {}  grid {}\n",
               epoch, epochs, result.noise_loss, result.image_loss, val_noise_loss, val_image_loss,
               kid ? fmt::format("val_kid {:.4f}  ", kid->mean) : "",
               steps_per_epoch * batch_size / train_seconds,
               format_duration(std::chrono::duration<double>(Clock::now() - run_start).count()),
               grid_path.string());
    std::fflush(stdout);
    // Test hook: die like a power cut right after this epoch's checkpoint.
    if (const char* kill_after = std::getenv("DIFFLAB_TEST_KILL_AFTER_EPOCH"))
      if (std::to_string(epoch) == kill_after) std::raise(SIGKILL);
  }
  return result;
}

}  // namespace

RunResult run_experiment(const Experiment& experiment, const PluginRegistry& registry,
                         const RunOptions& options) {
  const Params& settings = experiment.section("experiment").params;
  const Params& training = experiment.section("training").params;

  configure_threads(settings.integer("threads"));
  torch::manual_seed(static_cast<uint64_t>(settings.integer("seed")));
  const torch::Device device = select_device(settings.string("device"));

  // Everything that can fail because of the user's input fails here, before the database.
  Components components = build_components(experiment, registry);
  ImageSplits data = components.dataset->load();
  const int64_t batch_size = training.integer("batch_size");
  if (data.train.size(0) < batch_size)
    throw ConfigError(fmt::format("batch_size {} exceeds the {} training images", batch_size,
                                  data.train.size(0)),
                      {experiment.file.string(), 0, 0, "training.batch_size", ""});

  ResultsStore store(settings.string("database"));
  // Running the same experiment again continues it, or does nothing if it finished.
  std::optional<RunRecord> previous = store.latest_run(experiment.config_hash());
  int64_t run_id = 0;
  if (previous && !options.new_run) {
    if (previous->status == "finished") {
      fmt::print("difflab: this experiment already finished as run {} in {}; nothing to do "
                 "(--new trains it again)\n", previous->id, settings.string("database"));
      RunResult result;
      result.run_id = previous->id;
      for (const auto& metric : store.metrics(previous->id)) {
        if (metric.key == "n_loss") result.noise_loss = metric.value;
        if (metric.key == "i_loss") result.image_loss = metric.value;
      }
      return result;
    }
    if (previous->status == "running" && run_process_alive(*previous))
      throw RuntimeError(fmt::format("run {} of this experiment is still running (pid {} on {})",
                                     previous->id, previous->pid, previous->host),
                         {settings.string("database"), 0, 0, "", "wait for it, or use --new"});
    if (is_resumable(*previous)) {
      run_id = previous->id;
      store.mark_running(run_id);
    }
  }
  if (run_id == 0) run_id = store.start_run(experiment, components.versions_json);
  const fs::path run_dir =
      fs::path(settings.string("output_dir")) / run_folder_name(settings.string("name"), run_id);
  fmt::print("difflab: run {} of \"{}\" -> {} (database {})\n", run_id, settings.string("name"),
             run_dir.string(), settings.string("database"));
  std::fflush(stdout);

  InterruptGuard interrupt_guard;
  try {
    RunResult result = train_run(experiment, components, data, store, run_id, run_dir, device);
    store.finish_run(run_id);
    return result;
  } catch (const std::exception& error) {
    auto record = store.run(run_id);
    if (record && record->status == "running") store.fail_run(run_id, "failed", error.what());
    throw;
  }
}

BenchResult bench_experiment(const Experiment& experiment, const PluginRegistry& registry,
                             int64_t steps) {
  const Params& settings = experiment.section("experiment").params;
  const Params& training = experiment.section("training").params;
  configure_threads(settings.integer("threads"));
  torch::manual_seed(static_cast<uint64_t>(settings.integer("seed")));
  const torch::Device device = select_device(settings.string("device"));

  Components components = build_components(experiment, registry);
  DiffusionModel& model = *components.model;
  const int64_t batch_size = training.integer("batch_size");
  const int64_t channels = components.dataset->channels();
  const int64_t image_size = experiment.section("data").params.integer("image_size");
  torch::Tensor images = torch::rand({batch_size, channels, image_size, image_size});
  model.adapt(images);
  model.to(device, settings.boolean("channels_last"));
  model.set_precision(settings.string("precision") == "bf16" ? Precision::bf16 : Precision::fp32);
  torch::optim::AdamW optimizer(model.network().parameters(),
                                torch::optim::AdamWOptions(training.real("learning_rate"))
                                    .weight_decay(training.real("weight_decay"))
                                    .eps(1e-7));
  auto synchronize = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  auto train = [&](int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      model.train_step(images, optimizer);
      model.update_ema(training.real("ema"));
    }
    synchronize();
  };
  train(3);  // warm-up: allocator, oneDNN primitive caches
  auto start = Clock::now();
  train(steps);
  BenchResult result;
  result.train_images_per_second =
      steps * batch_size / std::chrono::duration<double>(Clock::now() - start).count();

  const int64_t plot_steps = experiment.section("evaluation").params.integer("plot_diffusion_steps");
  model.generate(batch_size, 1);  // warm-up
  synchronize();
  start = Clock::now();
  model.generate(batch_size, plot_steps);
  synchronize();
  result.sample_images_per_second =
      batch_size / std::chrono::duration<double>(Clock::now() - start).count();
  result.peak_rss_mb = peak_rss_mb();
  return result;
}

}  // namespace difflab
