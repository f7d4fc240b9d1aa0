#include "model/diffusion_model.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "model/fused_adamw.h"

namespace difflab {
namespace {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define DIFFLAB_DEVICE_AUTOCAST_API 1
#endif

// ema = decay * ema + (1 - decay) * value, tensor by tensor; a copy for integer tensors
// (num_batches_tracked) and at decay 0.
void lerp_ema(const std::vector<torch::Tensor>& values, const std::vector<torch::Tensor>& emas, double decay) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < values.size(); ++i) {
    torch::Tensor ema = emas[i];
    if (!torch::isFloatingType(ema.scalar_type()) || decay == 0.0)
      ema.copy_(values[i]);
    else
      ema.lerp_(values[i], 1.0 - decay);
  }
}

void set_memory_format(torch::nn::Module& module, bool channels_last) {
  if (!channels_last) return;
  torch::NoGradGuard no_grad;
  for (auto& parameter : module.parameters())
    if (parameter.dim() == 4) parameter.set_data(parameter.data().contiguous(torch::MemoryFormat::ChannelsLast));
}

}  // namespace


AutocastGuard::AutocastGuard(torch::Device device, bool enabled) {
  if (!enabled) return;
  active_ = true;
  cuda_ = device.is_cuda();
#ifdef DIFFLAB_DEVICE_AUTOCAST_API
  const auto type = cuda_ ? at::kCUDA : at::kCPU;
  previous_enabled_ = at::autocast::is_autocast_enabled(type);
  previous_dtype_ = at::autocast::get_autocast_dtype(type);
  at::autocast::set_autocast_enabled(type, true);
  at::autocast::set_autocast_dtype(type, at::kBFloat16);
#else
  if (cuda_) {
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  } else {
    previous_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
#endif
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
#ifdef DIFFLAB_DEVICE_AUTOCAST_API
  const auto type = cuda_ ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_enabled(type, previous_enabled_);
  at::autocast::set_autocast_dtype(type, previous_dtype_);
#else
  if (cuda_) {
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(previous_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
#endif
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

double ema_decay(double ema, int64_t step, bool warmup) {
  if (!warmup) return ema;
  return std::min(ema, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
}

DiffusionModel::DiffusionModel(std::shared_ptr<Network> network,
                               std::shared_ptr<Network> ema_network,
                               std::shared_ptr<Schedule> schedule, std::shared_ptr<Loss> loss,
                               std::shared_ptr<Sampler> sampler, int64_t image_size,
                               int64_t image_channels, Objective objective)
    : network_(std::move(network)),
      ema_network_(std::move(ema_network)),
      schedule_(std::move(schedule)),
      loss_(std::move(loss)),
      sampler_(std::move(sampler)),
      mean_(torch::zeros({1, image_channels, 1, 1})),
      variance_(torch::ones({1, image_channels, 1, 1})),
      image_size_(image_size),
      image_channels_(image_channels),
      objective_(objective) {
  // The EMA network starts as a copy of the network (Keras' clone_model would re-initialise it;
  // with the EMA warm-up the difference is gone after a few steps either way).
  update_ema(0.0);
}

void DiffusionModel::adapt(const torch::Tensor& train_images) {
  // Keras Normalization.adapt: per-channel mean and (population) variance over the dataset.
  torch::Tensor images = train_images.to(torch::kFloat64);
  torch::Tensor mean = images.mean({0, 2, 3}, /*keepdim=*/true);
  torch::Tensor variance = (images - mean).pow(2).mean({0, 2, 3}, /*keepdim=*/true);
  set_normalizer(mean.to(torch::kFloat32), variance.to(torch::kFloat32));
}

void DiffusionModel::set_normalizer(torch::Tensor mean, torch::Tensor variance) {
  mean_ = mean.to(device_);
  variance_ = variance.to(device_);
}

torch::Tensor DiffusionModel::normalize(const torch::Tensor& images) const {
  return (images - mean_) / variance_.sqrt();
}

torch::Tensor DiffusionModel::denormalize(const torch::Tensor& images) const {
  return (mean_ + images * variance_.sqrt()).clamp(0.0, 1.0);
}

void DiffusionModel::to(torch::Device device, bool channels_last) {
  device_ = device;
  channels_last_ = channels_last;
  network_->to(device);
  ema_network_->to(device);
  set_memory_format(*network_, channels_last);
  set_memory_format(*ema_network_, channels_last);
  mean_ = mean_.to(device);
  variance_ = variance_.to(device);
}

torch::Tensor DiffusionModel::prepare_input(const torch::Tensor& images) const {
  torch::Tensor prepared = images.to(device_, torch::kFloat32);
  if (channels_last_) prepared = prepared.contiguous(torch::MemoryFormat::ChannelsLast);
  return prepared;
}

Decomposition DiffusionModel::predict(const torch::Tensor& noisy_images, const torch::Tensor& noise_rates,
                                     const torch::Tensor& signal_rates, bool training) {
  // The EMA weights are used at evaluation.
  Network& network = training ? *network_ : *ema_network_;
  torch::Tensor predictions;
  if (!training && sampling_network_ != nullptr) {
    predictions = sampling_network_->forward(noisy_images, noise_rates.pow(2));
  } else {
    AutocastGuard autocast(device_, precision_ == Precision::bf16);
    predictions = network.forward(noisy_images, noise_rates.pow(2));
  }
  ++evaluations_;
  return decompose(objective_.prediction, predictions.to(torch::kFloat32), noisy_images, signal_rates, noise_rates);
}

Denoised DiffusionModel::denoise(const torch::Tensor& noisy_images,
                                 const torch::Tensor& noise_rates,
                                 const torch::Tensor& signal_rates, bool training) {
  Decomposition predicted = predict(noisy_images, noise_rates, signal_rates, training);
  return {predicted.noises, predicted.images};
}

StepLosses DiffusionModel::losses(const torch::Tensor& images, const torch::Tensor& noises, const Rates& rates,
                                  const Decomposition& predicted) const {
  const Decomposition truth{noises, images, velocities(images, noises, rates.signal_rates, rates.noise_rates)};
  StepLosses result;
  result.noise_loss = (*loss_)(truth.noises, predicted.noises);
  result.image_loss = (*loss_)(truth.images, predicted.images);
  result.velocity_loss = (*loss_)(truth.velocities, predicted.velocities);
  const Quantity target = objective_.target;
  if (objective_.min_snr_gamma > 0) {
    // Per-sample weights times the elementwise loss, averaged (Hang et al. 2023, eq. 7).
    const torch::Tensor weights =
        min_snr_weights(target, rates.signal_rates, rates.noise_rates, objective_.min_snr_gamma);
    result.loss = (loss_->elementwise(component(truth, target), component(predicted, target)) * weights).mean();
  } else {
    result.loss = target == Quantity::noise ? result.noise_loss
                  : target == Quantity::image ? result.image_loss
                                              : result.velocity_loss;
  }
  return result;
}

StepLosses DiffusionModel::train_step(const torch::Tensor& raw_images, torch::optim::Optimizer& optimizer,
                                      const StepShard* shard, std::optional<double> ema_decay) {
  network_->train();
  // Normalize images to have standard deviation 1, like the noises.
  torch::Tensor images = normalize(prepare_input(raw_images));  // [B, C, S, S]
  torch::Tensor noises = torch::randn_like(images);
  const int64_t batch_size = images.size(0);
  // Sample uniform random diffusion times.
  torch::Tensor diffusion_times = torch::rand({batch_size, 1, 1, 1}, images.options());
  if (shard != nullptr && shard->world > 1) {  // this rank's slice of the global batch
    const int64_t begin = batch_size * shard->rank / shard->world, end = batch_size * (shard->rank + 1) / shard->world;
    images = images.slice(0, begin, end);
    noises = noises.slice(0, begin, end);
    diffusion_times = diffusion_times.slice(0, begin, end);
  }
  Rates rates = schedule_->rates(diffusion_times);
  // Mix the images with noises accordingly.
  torch::Tensor noisy_images = rates.signal_rates * images + rates.noise_rates * noises;

  // Train the network to separate noisy images into their components: the objective trains, the
  // other losses are only metrics.
  Decomposition predicted = predict(noisy_images, rates.noise_rates, rates.signal_rates, true);
  StepLosses step = losses(images, noises, rates, predicted);
  if (auto* fused = dynamic_cast<FusedAdamW*>(&optimizer))
    fused->zero_gradients();  // in place: the gradients stay views of its flat buffer
  else
    optimizer.zero_grad();
  step.loss.backward();
  StepLosses measured{step.loss.detach(), step.noise_loss.detach(), step.image_loss.detach(),
                      step.velocity_loss.detach()};
  if (shard != nullptr && shard->synchronise) shard->synchronise(measured);
  step_optimizer(optimizer, ema_decay);
  return measured;
}

void DiffusionModel::step_optimizer(torch::optim::Optimizer& optimizer, std::optional<double> ema_decay) {
  auto* fused = dynamic_cast<FusedAdamW*>(&optimizer);
  if (fused != nullptr && ema_decay) {
    fused->step_with_ema(ema_network_->parameters(), *ema_decay);
    return;
  }
  optimizer.step();
  if (ema_decay) lerp_ema(network_->parameters(), ema_network_->parameters(), *ema_decay);
}

StepLosses DiffusionModel::test_step(const torch::Tensor& raw_images) {
  torch::NoGradGuard no_grad;
  ema_network_->eval();
  torch::Tensor images = normalize(prepare_input(raw_images));
  torch::Tensor noises = torch::randn_like(images);
  torch::Tensor diffusion_times = torch::rand({images.size(0), 1, 1, 1}, images.options());
  Rates rates = schedule_->rates(diffusion_times);
  torch::Tensor noisy_images = rates.signal_rates * images + rates.noise_rates * noises;
  Decomposition predicted = predict(noisy_images, rates.noise_rates, rates.signal_rates, false);
  return losses(images, noises, rates, predicted);
}

void DiffusionModel::update_ema(double decay) {
  lerp_ema(network_->parameters(), ema_network_->parameters(), decay);
  update_ema_buffers(decay);
}

void DiffusionModel::update_ema_buffers(double decay) {
  lerp_ema(network_->buffers(), ema_network_->buffers(), decay);
}

torch::Tensor DiffusionModel::generate(int64_t num_images, int64_t diffusion_steps) {
  torch::Tensor initial_noise =
      torch::randn({num_images, image_channels_, image_size_, image_size_});
  return generate_from(initial_noise, diffusion_steps);
}

InferenceNetwork* DiffusionModel::inference_network() {
  if (!inference_path_ || precision_ != Precision::bf16 || !device_.is_cpu()) return nullptr;
  std::vector<std::pair<const void*, int64_t>> weights;
  for (const auto& tensors : {ema_network_->parameters(), ema_network_->buffers()})
    for (const auto& tensor : tensors) weights.emplace_back(tensor.data_ptr(), static_cast<int64_t>(tensor._version()));
  if (weights != inference_weights_ || !inference_) {
    inference_ = ema_network_->prepare_inference();
    inference_weights_ = std::move(weights);
  }
  return inference_.get();
}

torch::Tensor DiffusionModel::generate_from(const torch::Tensor& initial_noise,
                                            int64_t diffusion_steps) {
  torch::NoGradGuard no_grad;
  ema_network_->eval();
  sampling_network_ = inference_network();
  used_inference_path_ = sampling_network_ != nullptr;
  struct Reset {
    InferenceNetwork*& network;
    ~Reset() { network = nullptr; }
  } reset{sampling_network_};
  const int64_t count = initial_noise.size(0);
  if (sample_batch_size_ <= 0 || count <= sample_batch_size_) return sample_batch(initial_noise, diffusion_steps);
  // Every batch runs the same trajectory: the evaluations count once, not once per batch.
  const int64_t before = evaluations_;
  int64_t per_trajectory = 0;
  std::vector<torch::Tensor> batches;
  for (int64_t first = 0; first < count; first += sample_batch_size_) {
    evaluations_ = before;
    batches.push_back(sample_batch(initial_noise.slice(0, first, std::min(count, first + sample_batch_size_)),
                                   diffusion_steps));
    per_trajectory = std::max(per_trajectory, evaluations_ - before);
  }
  evaluations_ = before + per_trajectory;
  return torch::cat(batches);
}

torch::Tensor DiffusionModel::sample_batch(const torch::Tensor& initial_noise, int64_t diffusion_steps) {
  Denoiser denoiser = [this](const torch::Tensor& noisy_images, const torch::Tensor& noise_rates,
                             const torch::Tensor& signal_rates) {
    return denoise(noisy_images, noise_rates, signal_rates, /*training=*/false);
  };
  torch::Tensor generated_images =
      sampler_->sample(denoiser, prepare_input(initial_noise), *schedule_, diffusion_steps);
  return denormalize(generated_images);
}

}  // namespace difflab
