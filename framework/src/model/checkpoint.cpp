#include "model/checkpoint.h"

#include <torch/torch.h>

#include "difflab/error.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

torch::serialize::InputArchive open_checkpoint(const fs::path& path, torch::Device device) {
  if (!fs::is_regular_file(path)) throw ConfigError("checkpoint not found", ErrorContext::in_file(path.string()));
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string(), device);
  } catch (const c10::Error& error) {
    throw RuntimeError("not a difflab checkpoint: " + error.msg(), ErrorContext::in_file(path.string()));
  }
  return archive;
}

void read_weights(torch::serialize::InputArchive& archive, DiffusionModel& model) {
  torch::serialize::InputArchive network, ema_network;
  archive.read("network", network);
  archive.read("ema_network", ema_network);
  model.network().load(network);
  model.ema_network().load(ema_network);
  torch::Tensor mean, variance;
  archive.read("normalizer_mean", mean);
  archive.read("normalizer_variance", variance);
  model.set_normalizer(mean, variance);
}

}  // namespace

void save_checkpoint(const fs::path& path, DiffusionModel& model, torch::optim::Optimizer& optimizer,
                     const TrainingState& state, const std::string& config_toml) {
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
  archive.write("config_toml", c10::IValue(config_toml));
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
  torch::serialize::InputArchive archive = open_checkpoint(path, model.device());
  read_weights(archive, model);
  torch::serialize::InputArchive optimizer_state;
  archive.read("optimizer", optimizer_state);
  optimizer.load(optimizer_state);
  torch::Tensor epoch, step, best_kid, cpu_rng_state;
  archive.read("epoch", epoch);
  archive.read("step", step);
  archive.read("best_kid", best_kid);
  archive.read("cpu_rng_state", cpu_rng_state);
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

void load_weights(const fs::path& path, DiffusionModel& model) {
  torch::serialize::InputArchive archive = open_checkpoint(path, model.device());
  read_weights(archive, model);
}

std::string read_checkpoint_config(const fs::path& path) {
  torch::serialize::InputArchive archive = open_checkpoint(path, torch::kCPU);
  c10::IValue config;
  if (!archive.try_read("config_toml", config) || !config.isString())
    throw RuntimeError("checkpoint holds no experiment configuration", ErrorContext::in_file(path.string()));
  return config.toStringRef();
}

}  // namespace difflab
