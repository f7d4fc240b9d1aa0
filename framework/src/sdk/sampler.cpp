// The sampler families' shared helpers (difflab/sampler.h): a schedule's rates at one time, and
// one DDIM step.
#include <torch/torch.h>

#include "difflab/sampler.h"
#include "difflab/schedule.h"

namespace difflab {

Rates rates_at(const Schedule& schedule, double diffusion_time, const torch::Tensor& images) {
  return schedule.rates(torch::full({images.size(0), 1, 1, 1}, diffusion_time, images.options()));
}

DdimStep ddim_step(const torch::Tensor& noisy_images, const torch::Tensor& pred_noises, const Rates& rates,
                   const Rates& next) {
  torch::Tensor pred_images = (noisy_images - rates.noise_rates * pred_noises) / rates.signal_rates;
  torch::Tensor next_noisy_images = next.signal_rates * pred_images + next.noise_rates * pred_noises;
  return {pred_images, next_noisy_images};
}

}  // namespace difflab
