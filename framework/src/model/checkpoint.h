// Checkpoints: everything a run needs to continue exactly where it stopped, and what sampling
// needs to rebuild its model (the resolved experiment is stored inside).
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <torch/optim/optimizer.h>

#include "model/diffusion_model.h"

namespace difflab {

struct TrainingState {
  int64_t epoch = 0;  // epochs completed
  int64_t step = 0;   // optimiser steps completed
  double best_kid = std::numeric_limits<double>::infinity();
};

// Network, EMA network, optimiser, normaliser, state, the default CPU (and CUDA) generator
// states and the resolved experiment's TOML. Written to a temporary file, then renamed.
void save_checkpoint(const std::filesystem::path& path, DiffusionModel& model,
                     torch::optim::Optimizer& optimizer, const TrainingState& state,
                     const std::string& config_toml);

// Restores everything save_checkpoint wrote into `model` (already on its device), `optimizer`
// and the generators; returns the state.
TrainingState load_checkpoint(const std::filesystem::path& path, DiffusionModel& model,
                              torch::optim::Optimizer& optimizer);

// Only the networks and the normaliser (for sampling).
void load_weights(const std::filesystem::path& path, DiffusionModel& model);

// The resolved experiment stored in a checkpoint. Throws a config Error for a missing file.
std::string read_checkpoint_config(const std::filesystem::path& path);

}  // namespace difflab
