// Building an experiment's components from its plugins, and the run-time settings around them
// (device, threads). Shared by training, benchmarking and sampling.
#pragma once

#include <memory>
#include <string>
#include <torch/types.h>

#include "difflab/dataset.h"
#include "difflab/diffusion_model.h"
#include "difflab/features.h"

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

// "cpu" | "cuda" | "auto"; throws a config Error when CUDA is asked for and absent.
torch::Device select_device(const std::string& device);

// Sets LibTorch's thread count: `threads`, or all cores when 0 (LibTorch may start with one).
void configure_threads(int64_t threads);

}  // namespace difflab
