#include "model/fused_adamw.h"

#include "difflab/parallel.h"
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <type_traits>

#include "model/adamw_kernel.h"

namespace difflab {
namespace {

using torch::optim::AdamWOptions;
using torch::optim::AdamWParamState;

// The optimiser state's key for a parameter, as LibTorch forms it: the TensorImpl's address, as a
// string in LibTorch 1.x and as a pointer in 2.x.
template <typename Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& parameter) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << parameter.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(parameter.unsafeGetTensorImpl());
  }
}

// The part of `flat` at `offset` with the sizes and strides of `like` (a dense tensor).
torch::Tensor view_of(const torch::Tensor& flat, const torch::Tensor& like, int64_t offset) {
  return flat.as_strided(like.sizes(), like.strides(), offset);
}

bool lies_in(const torch::Tensor& tensor, const torch::Tensor& flat, int64_t offset) {
  return tensor.defined() && flat.defined() &&
         static_cast<const float*>(tensor.data_ptr()) == flat.data_ptr<float>() + offset;
}

void lerp_ema(torch::Tensor& ema, const torch::Tensor& value, double decay) {
  if (decay == 0.0)
    ema.copy_(value);
  else
    ema.lerp_(value, 1.0 - decay);  // decay * ema + (1 - decay) * value
}

constexpr int64_t kGrain = 1 << 14;  // values per task of the CPU loop

}  // namespace

bool fused_optimizer_enabled() {
  const char* setting = std::getenv("DIFFLAB_FUSED_OPTIMIZER");
  return setting == nullptr || std::strcmp(setting, "0") != 0;
}

FusedAdamW::FusedAdamW(std::vector<torch::Tensor> parameters, AdamWOptions options)
    : torch::optim::AdamW(std::move(parameters), std::move(options)) {}

bool FusedAdamW::fusable(const std::vector<torch::Tensor>* ema) const {
  if (param_groups().size() != 1) return false;
  const auto& options = static_cast<const AdamWOptions&>(param_groups().front().options());
  const auto& parameters = param_groups().front().params();
  if (options.amsgrad() || parameters.empty() || (ema != nullptr && ema->size() != parameters.size()))
    return false;
  const torch::Device device = parameters.front().device();
  auto usable = [&](const torch::Tensor& t, const torch::Tensor& like) {
    return t.defined() && t.scalar_type() == torch::kFloat32 && t.device() == device &&
           t.sizes() == like.sizes() && t.is_non_overlapping_and_dense();
  };
  std::optional<int64_t> steps;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const torch::Tensor& parameter = parameters[i];
    if (!usable(parameter, parameter) || !usable(parameter.grad(), parameter)) return false;
    if (ema != nullptr && !usable((*ema)[i], parameter)) return false;
    int64_t step = 0;
    if (auto it = state().find(state_key(state(), parameter)); it != state().end()) {
      const auto& adam = static_cast<const AdamWParamState&>(*it->second);
      if (!usable(adam.exp_avg(), parameter) || !usable(adam.exp_avg_sq(), parameter)) return false;
      step = adam.step();
    }
    if (steps && *steps != step) return false;
    steps = step;
  }
  return true;
}

bool FusedAdamW::intact(const std::vector<torch::Tensor>* ema) const {
  if (param_groups().size() != 1 ||
      static_cast<const AdamWOptions&>(param_groups().front().options()).amsgrad())
    return false;
  const auto& parameters = param_groups().front().params();
  if (offsets_.size() != parameters.size() || states_.size() != parameters.size() ||
      (ema != nullptr && (!ema_flat_.defined() || ema->size() != parameters.size())))
    return false;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const int64_t offset = offsets_[i];
    const torch::Tensor& gradient = parameters[i].grad();
    if (!lies_in(parameters[i], parameters_flat_, offset) || !lies_in(gradient, gradients_flat_, offset) ||
        gradient.strides() != parameters[i].strides() || !lies_in(states_[i]->exp_avg(), first_moments_, offset) ||
        !lies_in(states_[i]->exp_avg_sq(), second_moments_, offset) ||
        (ema != nullptr && !lies_in((*ema)[i], ema_flat_, offset)))
      return false;
  }
  return true;
}

std::pair<torch::Tensor, torch::Tensor> FusedAdamW::moments(size_t index) const {
  const torch::Tensor& parameter = param_groups().front().params().at(index);
  const auto it = state().find(state_key(state(), parameter));
  if (it == state().end()) return {};
  const auto& adam = static_cast<const AdamWParamState&>(*it->second);
  return {adam.exp_avg(), adam.exp_avg_sq()};
}

void FusedAdamW::load(torch::serialize::InputArchive& archive) {
  torch::optim::AdamW::load(archive);
  // New state objects: the buffers are rebuilt from them at the next step.
  offsets_.clear();
  states_.clear();
}

void FusedAdamW::flatten(const std::vector<torch::Tensor>* ema) {
  torch::NoGradGuard no_grad;
  const auto& parameters = param_groups().front().params();
  ++flattenings_;
  offsets_.clear();
  states_.clear();
  total_ = 0;
  for (const auto& parameter : parameters) {
    offsets_.push_back(total_);
    total_ += parameter.numel();
  }
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(parameters.front().device());
  // New buffers, filled from the tensors as they are (which may be views of the old ones).
  parameters_flat_ = torch::empty({total_}, options);
  gradients_flat_ = torch::empty({total_}, options);
  first_moments_ = torch::zeros({total_}, options);
  second_moments_ = torch::zeros({total_}, options);
  ema_flat_ = ema != nullptr ? torch::empty({total_}, options) : torch::Tensor();
  for (size_t i = 0; i < parameters.size(); ++i) {
    torch::Tensor parameter = parameters[i];
    const int64_t offset = offsets_[i];
    torch::Tensor values = view_of(parameters_flat_, parameter, offset);
    torch::Tensor gradient = view_of(gradients_flat_, parameter, offset);
    torch::Tensor first = view_of(first_moments_, parameter, offset);
    torch::Tensor second = view_of(second_moments_, parameter, offset);
    values.copy_(parameter);
    gradient.copy_(parameter.grad());
    auto& slot = state()[state_key(state(), parameter)];
    if (!slot) {
      auto fresh = std::make_unique<AdamWParamState>();
      fresh->step(0);
      slot = std::move(fresh);
    } else {
      const auto& adam = static_cast<const AdamWParamState&>(*slot);
      first.copy_(adam.exp_avg());
      second.copy_(adam.exp_avg_sq());
    }
    auto& adam = static_cast<AdamWParamState&>(*slot);
    adam.exp_avg(first);
    adam.exp_avg_sq(second);
    states_.push_back(&adam);
    if (ema != nullptr) {
      torch::Tensor twin = (*ema)[i];
      torch::Tensor ema_values = view_of(ema_flat_, parameter, offset);
      ema_values.copy_(twin);
      twin.set_data(ema_values);
    }
    parameter.set_data(values);
    parameter.mutable_grad() = gradient;
  }
}

bool FusedAdamW::fused_step(const std::vector<torch::Tensor>* ema, double decay) {
  if (!intact(ema)) {  // the first step, or something replaced a tensor's storage
    if (!fusable(ema)) return false;
    flatten(ema);
  }
  torch::NoGradGuard no_grad;
  const auto& options = static_cast<const AdamWOptions&>(param_groups().front().options());
  const auto& parameters = param_groups().front().params();
  int64_t step = 0;
  for (AdamWParamState* adam : states_) {
    adam->step(adam->step() + 1);
    step = adam->step();
  }
  // LibTorch's AdamW::step computes these in double; its float32 kernels apply them as float.
  const double lr = options.lr(), weight_decay = options.weight_decay();
  const auto [beta1, beta2] = options.betas();
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const double step_size = lr / bias_correction1;
  if (parameters_flat_.is_cpu() && !tensor_operations_) {
    AdamWScalars scalars{};
    scalars.decay_factor = weight_decay != 0.0 ? static_cast<float>(1.0 - lr * weight_decay) : 1.0f;
    scalars.beta1 = static_cast<float>(beta1);
    scalars.one_minus_beta1 = static_cast<float>(1.0 - beta1);
    scalars.beta2 = static_cast<float>(beta2);
    scalars.one_minus_beta2 = static_cast<float>(1.0 - beta2);
    scalars.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    scalars.eps = static_cast<float>(options.eps());
    scalars.step_size = static_cast<float>(-step_size);
    scalars.ema_weight = static_cast<float>(1.0 - decay);
    float* p = parameters_flat_.data_ptr<float>();
    const float* g = gradients_flat_.data_ptr<float>();
    float* m = first_moments_.data_ptr<float>();
    float* v = second_moments_.data_ptr<float>();
    float* e = ema != nullptr ? ema_flat_.data_ptr<float>() : nullptr;
    difflab::parallel_for(0, total_, kGrain, [&](int64_t begin, int64_t end) {
      adamw_ema_pass(p + begin, g + begin, m + begin, v + begin, e ? e + begin : nullptr, end - begin, scalars);
    });
  } else {  // AdamW::step's operations, on the whole buffers at once
    if (weight_decay != 0.0) parameters_flat_.mul_(1.0 - lr * weight_decay);
    first_moments_.mul_(beta1).add_(gradients_flat_, 1.0 - beta1);
    second_moments_.mul_(beta2).addcmul_(gradients_flat_, gradients_flat_, 1.0 - beta2);
    const torch::Tensor denominator = (second_moments_.sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
    parameters_flat_.addcdiv_(first_moments_, denominator, -step_size);
    if (ema != nullptr) lerp_ema(ema_flat_, parameters_flat_, decay);
  }
  // Written through the buffers: the tensors' version counters are told (autograd's checks, and
  // the inference path's "has this weight changed" test, read them).
  for (const auto& parameter : parameters) parameter.unsafeGetTensorImpl()->bump_version();
  if (ema != nullptr)
    for (const auto& twin : *ema) twin.unsafeGetTensorImpl()->bump_version();
  return true;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  last_step_fused_ = closure == nullptr && fused_step(nullptr, 0.0);
  return last_step_fused_ ? torch::Tensor() : torch::optim::AdamW::step(closure);
}

void FusedAdamW::step_with_ema(const std::vector<torch::Tensor>& ema_parameters, double decay) {
  last_step_fused_ = fused_step(&ema_parameters, decay);
  if (last_step_fused_) return;
  torch::optim::AdamW::step();
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (const auto& group : param_groups())
    for (const auto& parameter : group.params()) {
      if (i >= ema_parameters.size()) return;
      torch::Tensor twin = ema_parameters[i++];
      lerp_ema(twin, parameter, decay);
    }
}

void FusedAdamW::zero_gradients() {
  torch::NoGradGuard no_grad;
  bool flat = gradients_flat_.defined();
  const auto& parameters = param_groups().front().params();
  for (size_t i = 0; flat && i < parameters.size(); ++i)
    flat = i < offsets_.size() && lies_in(parameters[i].grad(), gradients_flat_, offsets_[i]);
  if (flat) {
    gradients_flat_.zero_();
    return;
  }
  for (const auto& group : param_groups())
    for (const auto& parameter : group.params())
      if (parameter.grad().defined()) {
        torch::Tensor gradient = parameter.grad();
        gradient.zero_();
      }
}

}  // namespace difflab
