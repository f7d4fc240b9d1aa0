// Key functions of the plugin interfaces: one typeinfo per interface, in the framework library.
#include <cmath>
#include <fmt/format.h>
#include <unistd.h>
#include <torch/torch.h>
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "difflab/loss.h"
#include "difflab/network.h"
#include "difflab/sampler.h"
#include "difflab/schedule.h"

namespace difflab {

Component::~Component() = default;
Schedule::~Schedule() = default;
Loss::~Loss() = default;
Sampler::~Sampler() = default;
Network::~Network() = default;
Dataset::~Dataset() = default;
std::optional<SplitCounts> Dataset::counts() const { return std::nullopt; }
FeatureExtractor::~FeatureExtractor() = default;
void FeatureExtractor::prepare(const ImageSplits&) {}

ParamSchema schedule_end_schema() {
  return {
      ParamSpec::string("endpoints", "signal_rate",
                        "how the end points are given: signal_rate (min/max_signal_rate) or "
                        "log_snr (start/end_log_snr)")
          .one_of({"signal_rate", "log_snr"}),
      ParamSpec::real("min_signal_rate", 0.02,
                      "signal rate at t = 1; too low oversaturates, 0 divides by zero")
          .greater_than(0)
          .less_than(1),
      ParamSpec::real("max_signal_rate", 0.95, "signal rate at t = 0").greater_than(0).at_most(1),
      ParamSpec::real("start_log_snr", 2.5, "log signal-to-noise ratio at t = 0 (endpoints = log_snr)"),
      ParamSpec::real("end_log_snr", -7.5, "log signal-to-noise ratio at t = 1 (endpoints = log_snr)"),
  };
}

ParamIssue check_schedule_ends(const Params& params, bool log_of_noise) {
  if (params.string("endpoints") == "log_snr") {
    if (params.real("start_log_snr") <= params.real("end_log_snr"))
      return {"start_log_snr", "start_log_snr must be above end_log_snr (t = 0 is the cleanest)"};
  } else if (params.real("min_signal_rate") >= params.real("max_signal_rate")) {
    return {"min_signal_rate", "min_signal_rate must be below max_signal_rate"};
  }
  if (log_of_noise && noise_power_ends(params).start <= 0)
    return {"max_signal_rate", "this schedule takes log of the noise power: max_signal_rate must be below 1"};
  return {};
}

NoisePowerEnds noise_power_ends(const Params& params) {
  if (params.string("endpoints") == "log_snr") {
    // SNR = s² / n² = (1 − P) / P  =>  P = 1 / (1 + SNR)
    return {1.0 / (1.0 + std::exp(params.real("start_log_snr"))),
            1.0 / (1.0 + std::exp(params.real("end_log_snr")))};
  }
  const double max = params.real("max_signal_rate"), min = params.real("min_signal_rate");
  return {1.0 - max * max, 1.0 - min * min};
}

Rates rates_at(const Schedule& schedule, double diffusion_time, const torch::Tensor& images) {
  return schedule.rates(torch::full({images.size(0), 1, 1, 1}, diffusion_time, images.options()));
}

DdimStep ddim_step(const torch::Tensor& noisy_images, const torch::Tensor& pred_noises, const Rates& rates,
                   const Rates& next) {
  torch::Tensor pred_images = (noisy_images - rates.noise_rates * pred_noises) / rates.signal_rates;
  torch::Tensor next_noisy_images = next.signal_rates * pred_images + next.noise_rates * pred_noises;
  return {pred_images, next_noisy_images};
}

torch::nn::Conv2d same_conv(int64_t in_channels, int64_t out_channels, int64_t kernel_size) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, kernel_size).padding(kernel_size / 2));
}

void check_levels(int64_t image_size, size_t levels) {
  const int64_t downsampling = int64_t{1} << (levels - 1);
  if (image_size % downsampling != 0)
    throw ConfigError("image_size " + std::to_string(image_size) + " is not divisible by 2^(len(widths) - 1) = " +
                          std::to_string(downsampling),
                      ErrorContext::for_key({}, "network.widths", "use fewer widths or another image_size"));
}

torch::MemoryFormat weight_memory_format(const torch::nn::Module& module) {
  for (const auto& parameter : module.parameters()) {
    // Only a kernel with several input channels and pixels tells the two layouts apart.
    if (parameter.dim() != 4 || parameter.size(1) == 1 || parameter.size(2) * parameter.size(3) == 1) continue;
    return parameter.is_contiguous() ? torch::MemoryFormat::Contiguous : torch::MemoryFormat::ChannelsLast;
  }
  return torch::MemoryFormat::Contiguous;
}

double machine_memory_bytes() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

ParamIssue check_unet_size(const Params& params) {
  const std::vector<int64_t>& widths = params.integers("widths");
  const double depth = static_cast<double>(params.integer("block_depth"));
  const double first = static_cast<double>(widths.front());
  const double embedding_term = 9.0 * (first + static_cast<double>(params.integer("embedding_dims"))) * first;
  double blocks_term = 0.0;
  for (int64_t width : widths) blocks_term += 2.0 * depth * 2.0 * 9.0 * static_cast<double>(width) * static_cast<double>(width);
  const double bytes = 20.0 * (embedding_term + blocks_term);
  const double memory = machine_memory_bytes();
  if (bytes <= memory) return {};
  const std::string key = embedding_term > blocks_term ? "embedding_dims" : depth > 16 ? "block_depth" : "widths";
  return {key, fmt::format("the network needs at least {:.3g} parameters, {:.3g} GB to train, and this machine has "
                           "{:.3g} GB of memory", (embedding_term + blocks_term), bytes / 1e9, memory / 1e9)};
}

Rates rates_from_noise_powers(const torch::Tensor& noise_powers) {
  return {torch::sqrt(noise_powers), torch::sqrt(1.0 - noise_powers)};
}

const char* to_string(Family family) {
  switch (family) {
    case Family::schedule: return "schedule";
    case Family::loss: return "loss";
    case Family::sampler: return "sampler";
    case Family::network: return "network";
    case Family::dataset: return "dataset";
    case Family::features: return "features";
  }
  return "?";
}

std::vector<Family> all_families() {
  return {Family::dataset,  Family::network, Family::schedule,
          Family::loss,     Family::sampler, Family::features};
}

}  // namespace difflab
