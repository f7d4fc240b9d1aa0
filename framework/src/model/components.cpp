#include "model/components.h"

#include <fmt/format.h>
#include <limits>
#include <thread>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <torch/torch.h>

#include "config/experiment.h"
#include "difflab/cpu.h"
#include "difflab/error.h"
#include "difflab/version.h"
#include "model/fused_adamw.h"
#include "plugin_host/registry.h"

namespace difflab {
namespace {

void configure_threads(int64_t threads) {
  // LibTorch may start with a single thread: always set the count explicitly.
  int64_t count = threads > 0 ? threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(count));
}

// A training step allocates and frees the same activation buffers (up to ~16 MB each) every
// step. glibc serves blocks above its mmap threshold with mmap and returns them with munmap, so
// every step page-faults and zeroes them afresh (~6% of a CPU step). Serving blocks up to 32 MB
// (glibc's upper limit) from the heap and never trimming it keeps those pages mapped.
void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
#endif
}

}  // namespace

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
  if (network->parameters().empty())
    throw ConfigError("network plugin \"" + experiment.section("network").plugin + "\" has no parameters to train",
                      ErrorContext::for_key(experiment.file.string(), "network.plugin"));
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

  const Settings settings = experiment.settings();
  Objective objective;
  objective.prediction = settings.network.prediction;
  objective.target = settings.loss.target;
  objective.min_snr_gamma = settings.loss.weighting == LossWeighting::min_snr ? settings.loss.min_snr_gamma : 0.0;
  auto model = std::make_unique<DiffusionModel>(network, ema_network, schedule, loss, sampler,
                                                context.image_size, context.image_channels, objective);
  return {dataset, features, std::move(model), versions};
}

torch::Device select_device(DeviceSetting device) {
  if (device == DeviceSetting::cuda && !torch::cuda::is_available())
    throw ConfigError("device \"cuda\" requested but no CUDA device is available",
                      ErrorContext::for_key({}, "experiment.device", "use device = \"cpu\" or \"auto\""));
  if (device == DeviceSetting::cuda || (device == DeviceSetting::automatic && torch::cuda::is_available()))
    return torch::kCUDA;
  return torch::kCPU;
}

torch::Device configure_process(const Experiment& experiment, int64_t threads) {
  const ExperimentSettings settings = experiment.settings().experiment;
  configure_threads(threads > 0 ? threads : settings.threads);
  keep_freed_memory();
  torch::manual_seed(static_cast<uint64_t>(settings.seed));
  return select_device(settings.device);
}

ResolvedPrecision resolve_precision(const Experiment& experiment, torch::Device device) {
  const PrecisionSetting setting = experiment.settings().experiment.precision;
  const auto as_set = [&]() -> ResolvedPrecision {
    return {setting == PrecisionSetting::bf16 ? Precision::bf16 : Precision::fp32,
            std::string(to_string(setting)) + " as set"};
  };
  if (device.is_cuda()) return setting == PrecisionSetting::automatic ? ResolvedPrecision{Precision::fp32, "auto: fp32 on CUDA"} : as_set();
  const Bf16Support support = cpu_bf16_support();
  if (setting == PrecisionSetting::bf16 && support == Bf16Support::none)
    throw ConfigError("precision \"bf16\": this CPU has no bf16 convolutions (oneDNN needs AVX-512; it runs " +
                          cpu_description() + ")",
                      ErrorContext::for_key(experiment.file.string(), "experiment.precision",
                                            "use precision = \"auto\" or \"fp32\""));
  if (setting != PrecisionSetting::automatic) return as_set();
  if (support == Bf16Support::amx || support == Bf16Support::avx512_bf16)
    return {Precision::bf16, fmt::format("auto: this CPU computes bf16 natively ({})", bf16_support_name(support))};
  return {Precision::fp32, fmt::format("auto: this CPU has no native bf16 ({})", bf16_support_name(support))};
}

void place_model(DiffusionModel& model, const Experiment& experiment, torch::Device device) {
  const ExperimentSettings settings = experiment.settings().experiment;
  model.to(device, settings.channels_last);
  model.set_precision(resolve_precision(experiment, device).precision);
  model.set_sample_batch_size(experiment.settings().evaluation.sample_batch_size);
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(DiffusionModel& model, const Experiment& experiment) {
  const TrainingSettings training = experiment.settings().training;
  auto options = torch::optim::AdamWOptions(training.learning_rate).weight_decay(training.weight_decay).eps(1e-7);
  if (!fused_optimizer_enabled())
    return std::make_unique<torch::optim::AdamW>(model.network().parameters(), options);
  return std::make_unique<FusedAdamW>(model.network().parameters(), options);
}

}  // namespace difflab
