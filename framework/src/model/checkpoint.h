// Checkpoints: everything a run needs to continue exactly where it stopped, and what sampling
// needs to rebuild its model (the resolved experiment is stored inside).
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <torch/optim/optimizer.h>
#include <vector>

#include "difflab/error.h"
#include "model/diffusion_model.h"

namespace difflab {

struct TrainingState {
  int64_t epoch = 0;  // epochs completed
  int64_t step = 0;   // optimiser steps completed
  double best_kid = std::numeric_limits<double>::infinity();
  // A checkpoint written inside epoch `epoch + 1` (a run stopped by a signal, e.g. a Slurm
  // preemption warning): the batches of that epoch done so far, its shuffle, and the sums of its
  // losses so far (loss, noise, image, velocity), so that the epoch continues where it stopped and
  // ends with the losses it would have had. epoch_batches == 0: the checkpoint of an epoch's end.
  int64_t epoch_batches = 0;
  torch::Tensor epoch_order;
  std::vector<double> epoch_sums;
  // The rows of every completed epoch and the run's sweep decisions (training/run_ledger.h's
  // text; empty in a checkpoint written before it existed).
  std::string ledger{};
};

// Network, EMA network, optimiser, normaliser, state, the default CPU (and CUDA) generator
// states, the resolved experiment's TOML and its training hash, with a checksum. Written beside
// the old checkpoint and renamed over it; the old one stays as previous_path(path). A write that
// fails (full disk, file-size limit) throws a runtime Error naming the path and leaves both
// files as they were.
void save_checkpoint(const std::filesystem::path& path, DiffusionModel& model,
                     torch::optim::Optimizer& optimizer, const TrainingState& state,
                     const std::string& config_toml, const std::string& training_hash);
// The same in two steps, so that one serialisation can be written to two places (best.pt, then
// checkpoint.pt): the file's bytes, and putting them in place as save_checkpoint does.
std::string checkpoint_bytes(DiffusionModel& model, torch::optim::Optimizer& optimizer, const TrainingState& state,
                             const std::string& config_toml, const std::string& training_hash);
void install_checkpoint(const std::filesystem::path& path, const std::string& bytes);

// Restores everything save_checkpoint wrote into `model` (already on its device), `optimizer`
// and the generators; returns the state. A checkpoint of another training configuration (its
// training hash differs from `training_hash`, when both are known) is refused naming both; a
// damaged one is refused naming the path.
TrainingState load_checkpoint(const std::filesystem::path& path, DiffusionModel& model,
                              torch::optim::Optimizer& optimizer, const std::string& training_hash);

// checkpoint.pt -> checkpoint.previous.pt: the checkpoint before the last one.
std::filesystem::path previous_path(const std::filesystem::path& path);

// The error for a checkpoint whose bytes do not check out (its message says "damaged" or "not
// a readable difflab checkpoint").
Error CheckpointDamaged(const std::string& message, const std::filesystem::path& path);
bool is_damaged_checkpoint(const Error& error);

// Only the networks and the normaliser (for sampling).
void load_weights(const std::filesystem::path& path, DiffusionModel& model);

// The resolved experiment stored in a checkpoint. Throws a config Error for a missing file.
std::string read_checkpoint_config(const std::filesystem::path& path);

}  // namespace difflab
