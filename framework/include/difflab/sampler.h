// Sampler family: reverse diffusion from an initial noise with a denoiser and a schedule.
#pragma once

#include "difflab/export.h"

#include <functional>
#include <torch/types.h>

#include "difflab/component.h"
#include "difflab/schedule.h"

namespace difflab {

struct Denoised {
  torch::Tensor pred_noises;  // [B, C, H, W]
  torch::Tensor pred_images;  // [B, C, H, W]
};

// Separates noisy images into their noise and image components (the seed's denoise()).
using Denoiser = std::function<Denoised(const torch::Tensor& noisy_images,
                                        const torch::Tensor& noise_rates,
                                        const torch::Tensor& signal_rates)>;

class DIFFLAB_API Sampler : public Component {
 public:
  // Bump when a virtual function of this interface changes (plugin.h checks it).
  static constexpr uint32_t interface_version = 1;
  ~Sampler() override;
  // Returns the predicted clean images after `diffusion_steps` steps from t = 1 to t = 0.
  // Random draws use the global torch generator (seeded by the host).
  virtual torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise,
                               const Schedule& schedule, int64_t diffusion_steps) const = 0;
};

// The schedule's rates at one diffusion time for every image of a batch: [B, 1, 1, 1] tensors of
// the images' dtype and device.
DIFFLAB_API Rates rates_at(const Schedule& schedule, double diffusion_time, const torch::Tensor& images);

// The DDIM step (eta = 0) with a combined noise estimate: the image it implies at `rates`,
// x̂₀ = (x − n·ε̂) / s, and the next noisy images, both components remixed at `next`.
struct DdimStep {
  torch::Tensor pred_images;
  torch::Tensor next_noisy_images;
};
DIFFLAB_API DdimStep ddim_step(const torch::Tensor& noisy_images, const torch::Tensor& pred_noises, const Rates& rates,
                   const Rates& next);

}  // namespace difflab
