// DiffusionModel: the seed's DiffusionModel class — normalizer, network, EMA network, schedule,
// denoise(), train_step(), generate() — on difflab's plugin interfaces.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "difflab/loss.h"
#include "difflab/network.h"
#include "difflab/parameterisation.h"
#include "difflab/sampler.h"
#include "difflab/schedule.h"

namespace difflab {

// What one step measured: the objective (what trains the network) and the loss of each component,
// unweighted, for comparison across parameterisations.
struct StepLosses {
  torch::Tensor loss;           // the objective: loss on the target, weighted
  torch::Tensor noise_loss;     // n_loss (the seed's training loss)
  torch::Tensor image_loss;     // i_loss
  torch::Tensor velocity_loss;  // v_loss
};

// What the network predicts, what the loss compares, and how it is weighted.
struct Objective {
  Quantity prediction = Quantity::noise;
  Quantity target = Quantity::noise;
  double min_snr_gamma = 0.0;  // > 0: min-SNR-γ weighting
};

enum class Precision { fp32, bf16 };

// One rank's part of a data-parallel step: the batch's noise and times are drawn for the whole
// (global) batch on every rank, exactly as one process draws them, and the rank trains on its
// slice; `synchronise` (after backward, before the optimiser step) averages the gradients and
// the losses over the ranks.
struct StepShard {
  int64_t rank = 0;
  int64_t world = 1;
  std::function<void(StepLosses&)> synchronise;
};

class DiffusionModel {
 public:
  DiffusionModel(std::shared_ptr<Network> network, std::shared_ptr<Network> ema_network,
                 std::shared_ptr<Schedule> schedule, std::shared_ptr<Loss> loss,
                 std::shared_ptr<Sampler> sampler, int64_t image_size, int64_t image_channels,
                 Objective objective = {});

  // Per-channel mean and variance over the training images [N, C, H, W] (Keras Normalization).
  void adapt(const torch::Tensor& train_images);
  void set_normalizer(torch::Tensor mean, torch::Tensor variance);
  torch::Tensor normalize(const torch::Tensor& images) const;
  // Back to [0, 1], clipped.
  torch::Tensor denormalize(const torch::Tensor& images) const;

  // Moves everything to `device`; channels_last applies to 4-d weights and to inputs.
  void to(torch::Device device, bool channels_last);
  void set_precision(Precision precision) { precision_ = precision; }
  Precision precision() const { return precision_; }

  // The seed's denoise(): the network predicts its quantity (the noise, in the seed), the others
  // follow (parameterisation.h).
  Denoised denoise(const torch::Tensor& noisy_images, const torch::Tensor& noise_rates,
                   const torch::Tensor& signal_rates, bool training);

  // The seed's train_step() on a batch of raw [0, 1] images: forward, backward, optimiser step.
  // With `shard`, `images` is the global batch and this rank trains on its slice. With
  // `ema_decay`, the step also moves the EMA parameters (step_optimizer); update_ema_buffers then
  // completes the EMA update.
  StepLosses train_step(const torch::Tensor& images, torch::optim::Optimizer& optimizer,
                        const StepShard* shard = nullptr, std::optional<double> ema_decay = std::nullopt);
  // optimizer.step(), and with `ema_decay` the EMA update of the parameters (not the buffers): in
  // the same pass where the optimiser is a FusedAdamW (fused_adamw.h).
  void step_optimizer(torch::optim::Optimizer& optimizer, std::optional<double> ema_decay);
  // Network evaluations since the last reset (what a sampler spent on each image: generating in
  // several batches counts the trajectory once, as kid.nfe means it).
  int64_t evaluations() const { return evaluations_; }
  void reset_evaluations() { evaluations_ = 0; }
  // Validation losses with the EMA network (the seed's test_step without KID).
  StepLosses test_step(const torch::Tensor& images);

  // ema_weight = decay * ema_weight + (1 - decay) * weight, over parameters and buffers (as
  // Keras does over network.weights, BatchNorm moving statistics included).
  void update_ema(double decay);
  // The same over the buffers alone (BatchNorm's running statistics), after step_optimizer.
  void update_ema_buffers(double decay);

  // The seed's generate(): initial noise -> sampler with the EMA network -> [0, 1] images, in
  // batches of at most `sample_batch_size` (set_sample_batch_size; 0 = all at once).
  torch::Tensor generate(int64_t num_images, int64_t diffusion_steps);
  // The same from a given initial noise [N, C, S, S] (on any device).
  torch::Tensor generate_from(const torch::Tensor& initial_noise, int64_t diffusion_steps);
  void set_sample_batch_size(int64_t size) { sample_batch_size_ = size; }
  // Whether sampling may use the EMA network's inference path (Network::prepare_inference; on by
  // default, used where the network offers it), and whether the last sampling pass did.
  void set_inference_path(bool enabled) { inference_path_ = enabled; }
  bool used_inference_path() const { return used_inference_path_; }

  Network& network() { return *network_; }
  Network& ema_network() { return *ema_network_; }
  const Schedule& schedule() const { return *schedule_; }
  const torch::Tensor& mean() const { return mean_; }
  const torch::Tensor& variance() const { return variance_; }
  torch::Device device() const { return device_; }

 private:
  torch::Tensor prepare_input(const torch::Tensor& images) const;
  Decomposition predict(const torch::Tensor& noisy_images, const torch::Tensor& noise_rates,
                        const torch::Tensor& signal_rates, bool training);
  StepLosses losses(const torch::Tensor& images, const torch::Tensor& noises, const Rates& rates,
                    const Decomposition& predicted) const;
  // The EMA network's inference path, prepared again when any EMA weight has changed since (by
  // its tensors' version counters and addresses); nullptr where the network has none.
  InferenceNetwork* inference_network();
  torch::Tensor sample_batch(const torch::Tensor& initial_noise, int64_t diffusion_steps);

  std::shared_ptr<Network> network_;
  std::shared_ptr<Network> ema_network_;
  std::shared_ptr<Schedule> schedule_;
  std::shared_ptr<Loss> loss_;
  std::shared_ptr<Sampler> sampler_;
  torch::Tensor mean_;      // [1, C, 1, 1]
  torch::Tensor variance_;  // [1, C, 1, 1]
  int64_t image_size_;
  int64_t image_channels_;
  torch::Device device_ = torch::kCPU;
  bool channels_last_ = false;
  Precision precision_ = Precision::fp32;
  Objective objective_;
  int64_t evaluations_ = 0;
  int64_t sample_batch_size_ = 0;
  bool inference_path_ = true;
  bool used_inference_path_ = false;
  std::unique_ptr<InferenceNetwork> inference_;
  std::vector<std::pair<const void*, int64_t>> inference_weights_;  // what inference_ was made from
  InferenceNetwork* sampling_network_ = nullptr;                     // set while sampling with it
};

// EMA decay with warm-up, as diffusers does: min(ema, (1 + step) / (10 + step)). Without it an
// EMA of 0.999 still holds mostly the random initial weights after ~1,000 steps.
double ema_decay(double ema, int64_t step, bool warmup);

// Enables bf16 autocast on `device` for its lifetime (a no-op when `enabled` is false) and clears
// the autocast weight cache on exit, so that no step sees another step's stale weight casts.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool previous_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat32;
};

}  // namespace difflab
