// Building an experiment's components from its plugins, and the run-time settings around them
// (device, threads). Shared by training, benchmarking and sampling.
#pragma once

#include <memory>
#include <string>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "difflab/dataset.h"
#include "difflab/features.h"
#include "config/settings.h"
#include "model/diffusion_model.h"

namespace difflab {

class Experiment;
class PluginRegistry;

struct Components {
  std::shared_ptr<Dataset> dataset;            // not loaded yet
  std::shared_ptr<FeatureExtractor> features;
  std::unique_ptr<DiffusionModel> model;       // network, EMA network, schedule, loss, sampler
  std::string versions_json;                   // difflab, LibTorch and each plugin's version
};

// Makes every component the experiment names. Throws a config Error for what the plugins refuse
// (e.g. an image size the network cannot downsample).
Components build_components(const Experiment& experiment, const PluginRegistry& registry);

// Sets LibTorch's thread count (`threads` when positive, else [experiment] threads; 0 = all
// cores, since LibTorch may start with one) and the global seed; returns the device to run on (a config Error when CUDA is
// asked for and absent).
// "cpu", "cuda" or "auto" (cuda when available) as a device; a config Error for cuda without one.
torch::Device select_device(DeviceSetting device);

torch::Device configure_process(const Experiment& experiment, int64_t threads = 0);

// [experiment] precision for `device`, and why:
//   - "auto": bf16 on a CPU whose oneDNN computes in bf16 natively (AVX512-BF16 or AMX), where
//     it is the faster choice; fp32 on other CPUs (bf16 would be converted to float32 for every
//     operation) and on CUDA (the networks here are too small to gain from it);
//   - "bf16" on a CPU whose oneDNN has no bf16 convolutions at all (below AVX-512: AVX2 laptops,
//     or ONEDNN_MAX_CPU_ISA=AVX2) is a config Error naming experiment.precision: LibTorch would
//     fail at the first convolution ("could not create a primitive descriptor iterator").
struct ResolvedPrecision {
  Precision precision;
  std::string reason;  // "auto: this CPU computes bf16 natively (avx512_bf16)", ...
};
ResolvedPrecision resolve_precision(const Experiment& experiment, torch::Device device);

// Moves the model to `device` with [experiment]'s memory format (channels_last) and precision.
void place_model(DiffusionModel& model, const Experiment& experiment, torch::Device device);

// AdamW with [training]'s learning rate and weight decay, and Keras' other defaults
// (beta_1 0.9, beta_2 0.999, epsilon 1e-7), over the network's parameters: a FusedAdamW
// (fused_adamw.h), or LibTorch's own where DIFFLAB_FUSED_OPTIMIZER=0.
std::unique_ptr<torch::optim::AdamW> make_optimizer(DiffusionModel& model, const Experiment& experiment);

}  // namespace difflab
