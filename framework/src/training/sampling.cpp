// Sampling from a trained model: rebuild it from the resolved experiment stored with the run,
// load the EMA weights, generate with the requested sampler, write PNGs.
#include "training/sampling.h"

#include <cmath>
#include <tuple>
#include <fmt/format.h>
#include <torch/torch.h>

#include "config/experiment.h"
#include "difflab/error.h"
#include "model/checkpoint.h"
#include "model/components.h"
#include "plugin_host/registry.h"
#include "results/results_store.h"
#include "training/image_io.h"
#include "training/run_trainer.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// The checkpoint to load: given, or the run's latest (or best) from the database.
fs::path find_checkpoint(const SampleRequest& request) {
  if (!request.checkpoint.empty()) return request.checkpoint;
  if (request.database.empty() || request.run_id <= 0)
    throw ConfigError("say which model to sample from",
                      ErrorContext::with_hint("--checkpoint FILE, or --database DB --run ID [--best]"));
  if (!fs::is_regular_file(request.database))
    throw ConfigError("results database not found", ErrorContext::in_file(request.database.string()));
  ResultsStore store(request.database, OpenMode::read_only);
  if (!store.run(request.run_id))
    throw ConfigError(fmt::format("no run {} in the database", request.run_id),
                      ErrorContext::in_file(request.database.string()));
  const std::string kind = request.best ? "best_checkpoint" : "checkpoint";
  fs::path found;
  for (const auto& artifact : store.artifacts(request.run_id))
    if (artifact.kind == kind) found = artifact.path;  // ordered by epoch: the last is the latest
  if (found.empty())
    throw ConfigError(fmt::format("run {} has no {} yet", request.run_id, kind),
                      ErrorContext::in_file(request.database.string(), "a checkpoint is written after each epoch"));
  return found;
}

int64_t grid_columns(int64_t count) {
  return static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(count))));
}

}  // namespace

std::vector<fs::path> sample_images(const SampleRequest& request, PluginRegistry& registry) {
  if (request.out_dir.empty() && request.grid.empty())
    throw ConfigError("nothing to write", ErrorContext::with_hint("give --out DIR and/or --grid FILE.png"));
  if (request.num_images < 1 || request.diffusion_steps < 0)
    throw ConfigError("--num-images must be at least 1 and --steps not negative");

  const fs::path checkpoint = find_checkpoint(request);
  Experiment experiment = parse_experiment(read_checkpoint_config(checkpoint),
                                           checkpoint.string() + " (stored experiment)",
                                           request.overrides, registry);
  const torch::Device device = configure_process(experiment);
  Components components = build_components(experiment, registry);
  DiffusionModel& model = *components.model;
  place_model(model, experiment, device);
  load_weights(checkpoint, model);

  const int64_t steps = request.diffusion_steps > 0
                            ? request.diffusion_steps
                            : experiment.settings().evaluation.plot_diffusion_steps;
  const int64_t channels = components.dataset->channels();
  const int64_t size = experiment.settings().data.image_size;
  torch::manual_seed(request.seed);
  auto noise = [&](int64_t count) { return torch::randn({count, channels, size, size}); };

  torch::Tensor images;  // [N, C, S, S] in [0, 1]
  int64_t rows = 0, cols = 0;
  if (request.interpolate) {
    // The seed's spherical interpolation: cos(θ)·noise_1 + sin(θ)·noise_2 keeps unit variance
    // for θ from 0 to π/2 (linear interpolation would shrink it in the middle).
    torch::Tensor noise_1 = noise(1), noise_2 = noise(1);
    torch::Tensor angles = torch::linspace(0.0, M_PI / 2.0, request.num_images).view({-1, 1, 1, 1});
    images = model.generate_from(torch::cos(angles) * noise_1 + torch::sin(angles) * noise_2, steps);
    rows = 1;
    cols = request.num_images;
  } else if (request.steps_strip) {
    // The same initial noise sampled with 1 to 20 steps (the seed's figure).
    torch::Tensor initial_noise = noise(1);
    std::vector<torch::Tensor> strip;
    for (int64_t strip_steps = 1; strip_steps <= 20; ++strip_steps)
      strip.push_back(model.generate_from(initial_noise, strip_steps));
    images = torch::cat(strip);
    rows = 1;
    cols = 20;
  } else {
    images = model.generate_from(noise(request.num_images), steps);
    cols = grid_columns(request.num_images);
    rows = (request.num_images + cols - 1) / cols;
  }

  std::vector<fs::path> written;
  if (!request.out_dir.empty()) {
    for (int64_t i = 0; i < images.size(0); ++i) {
      written.push_back(request.out_dir / fmt::format("image-{:04}.png", i));
      write_image(written.back(), images[i]);
    }
  }
  if (!request.grid.empty()) {
    write_image_grid(request.grid, images, rows, cols, /*scale=*/size < 64 ? 2 : 1);
    written.push_back(request.grid);
  }
  return written;
}

EvaluateResult evaluate_run(const EvaluateRequest& request, PluginRegistry& registry) {
  if (request.samples < 0 || request.diffusion_steps < 0)
    throw ConfigError("--samples and --steps must not be negative");
  SampleRequest which;
  which.database = request.database;
  which.run_id = request.run_id;
  which.best = request.best;
  EvaluateResult result;
  result.checkpoint = find_checkpoint(which);
  {
    const ResultsStore store(request.database, OpenMode::read_only);
    for (const auto& artifact : store.artifacts(request.run_id))
      if (fs::path(artifact.path) == result.checkpoint) result.epoch = artifact.epoch;
  }
  Experiment experiment = parse_experiment(read_checkpoint_config(result.checkpoint),
                                           result.checkpoint.string() + " (stored experiment)", request.overrides,
                                           registry);
  const Settings settings = experiment.settings();
  if (settings.evaluation.kid_protocol == KidProtocol::none)
    throw ConfigError("evaluation.kid_protocol is \"none\": no sample metric to compute",
                      ErrorContext::in_file("--set", "evaluation.kid_protocol=subsets"));
  const torch::Device device = configure_process(experiment);
  Components components = build_components(experiment, registry);
  DiffusionModel& model = *components.model;
  place_model(model, experiment, device);
  load_weights(result.checkpoint, model);
  const ImageSplits data = components.dataset->load();
  const int64_t available = data.validation.size(0);
  const int64_t count = request.samples > 0 ? std::min(request.samples, available) : available;
  if (request.samples > available)
    fmt::print("note: the validation split has {} images: {} real and {} generated are compared, not {}\n", available,
               count, count, request.samples);
  const EvaluationSettings& evaluation = settings.evaluation;
  const bool manifold = evaluation.has_metric("precision") || evaluation.has_metric("recall");
  const bool balls = evaluation.has_metric("density") || evaluation.has_metric("coverage");
  for (const auto& [key, k, used] : {std::make_tuple("pr_k", evaluation.pr_k, manifold),
                                     std::make_tuple("dc_k", evaluation.dc_k, balls)})
    if (used && k >= count)
      throw ConfigError(fmt::format("{} = {} needs more than {} samples", key, k, count), ErrorContext::in_file("--samples"));
  components.features->prepare(data);
  const int64_t batch_size = settings.training.batch_size;
  const torch::Tensor real = real_features(experiment, *components.features, data.validation.slice(0, 0, count), batch_size);
  KidRecord record;
  record.protocol = to_string(evaluation.kid_protocol);
  record.features = experiment.section("features").plugin;
  record.sampler = experiment.section("sampler").plugin;
  record.diffusion_steps = request.diffusion_steps > 0 ? request.diffusion_steps : evaluation.kid_diffusion_steps;
  record.real_count = record.generated_count = count;
  std::vector<torch::Tensor> generated;
  model.reset_evaluations();
  torch::manual_seed(static_cast<uint64_t>(settings.experiment.seed));  // the same measurement when run again
  int64_t batches = 0, shown = 0;
  for (int64_t done = 0; done < count; done += batch_size, ++batches) {
    generated.push_back(components.features->extract(model.generate(std::min(batch_size, count - done), record.diffusion_steps)));
    const int64_t percent = 100 * std::min(count, done + batch_size) / count;
    if (percent >= shown + 10 || done + batch_size >= count) {
      fmt::print("generated {} of {} images ({}%)\n", std::min(count, done + batch_size), count, percent);
      std::fflush(stdout);
      shown = percent;
    }
  }
  record.nfe = model.evaluations() / std::max<int64_t>(1, batches);
  const SampleEvaluation measured = measure_samples(settings, record, real, torch::cat(generated));
  std::vector<SampleMetricRecord> rows = measured.samples;
  if (measured.kid)  // KID too, as a row of its own measurement (the kid table holds the epochs')
    rows.push_back({"kid", measured.kid->mean, record.features, record.sampler, record.diffusion_steps, record.nfe,
                    count, count, 0, "evaluate"});
  for (SampleMetricRecord& row : rows) row.source = "evaluate";
  ResultsStore(request.database).record_evaluation(request.run_id, result.epoch, rows);
  result.metrics = measured.metrics;
  result.samples = count;
  return result;
}

}  // namespace difflab
