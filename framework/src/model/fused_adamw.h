// FusedAdamW: LibTorch's AdamW, with the step (and the EMA update after it) as one pass over flat
// buffers instead of ~10 tensor operations on each of ~100 parameters.
//
// On its first step it moves the parameters, their gradients, AdamW's moments and the EMA
// parameters into five flat float32 buffers, each tensor a view of its part (set_data, so that
// modules, autograd and the optimiser state keep the same tensors). A step is then one vectorised,
// threaded loop on the CPU, or ~10 whole-buffer operations on another device. The optimiser state
// is AdamW's own (AdamWParamState per parameter): save() and load() write and read exactly what
// torch::optim::AdamW does, and a checkpoint moves between the two either way.
//
// Anything that replaces a tensor's storage (loading a checkpoint, moving a module) is noticed at
// the next step by the tensors' addresses, and the buffers are rebuilt from the tensors' values.
// Where a step cannot be fused (several parameter groups, amsgrad, a parameter without a gradient,
// not float32, uneven step counts), it is AdamW's own step.
#pragma once

#include <torch/optim/adamw.h>

#include <utility>
#include <vector>

namespace difflab {

class FusedAdamW : public torch::optim::AdamW {
 public:
  FusedAdamW(std::vector<torch::Tensor> parameters, torch::optim::AdamWOptions options);

  torch::Tensor step(LossClosure closure = nullptr) override;
  // AdamW's load; the buffers are rebuilt from the loaded state at the next step.
  void load(torch::serialize::InputArchive& archive) override;
  // The step, then ema = lerp(ema, parameter, 1 - decay) for each parameter and its EMA twin
  // (`ema_parameters`, in the parameters' order and shapes), in the same pass where fused.
  void step_with_ema(const std::vector<torch::Tensor>& ema_parameters, double decay);
  // Zeroes the gradients in place: one fill of the flat gradient buffer once there is one.
  void zero_gradients();

  // Whether the last step ran fused; how many values the flat buffers hold; how often they were
  // built (once, unless something replaced a tensor's storage).
  bool last_step_fused() const { return last_step_fused_; }
  int64_t flat_size() const { return total_; }
  int64_t flattenings() const { return flattenings_; }
  // AdamW's moments (exp_avg, exp_avg_sq) of parameter `index` of the first group; undefined
  // tensors before its first step.
  std::pair<torch::Tensor, torch::Tensor> moments(size_t index) const;
  // The CPU loop (default) or the whole-buffer tensor operations other devices use (for tests).
  void use_tensor_operations(bool enabled) { tensor_operations_ = enabled; }

 private:
  // Whether the tensors allow a fused step at all (checked only when the buffers are not intact).
  bool fusable(const std::vector<torch::Tensor>* ema) const;
  // Whether every tensor is still the view of its part that flatten() made.
  bool intact(const std::vector<torch::Tensor>* ema) const;
  void flatten(const std::vector<torch::Tensor>* ema);
  bool fused_step(const std::vector<torch::Tensor>* ema, double decay);

  std::vector<int64_t> offsets_;  // each parameter's first value in the flat buffers
  // Each parameter's AdamW state, as flatten() left it (load() replaces the state objects and
  // clears this), so that a step finds them without the state map's string keys.
  std::vector<torch::optim::AdamWParamState*> states_;
  int64_t total_ = 0;
  torch::Tensor parameters_flat_, gradients_flat_, first_moments_, second_moments_, ema_flat_;
  int64_t flattenings_ = 0;
  bool last_step_fused_ = false;
  bool tensor_operations_ = false;
};

// False where the environment says DIFFLAB_FUSED_OPTIMIZER=0 (for comparisons): the optimiser is
// then LibTorch's AdamW.
bool fused_optimizer_enabled();

}  // namespace difflab
