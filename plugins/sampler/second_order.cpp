// second_order: the generic second-order Runge–Kutta step (EDM, Karras et al. 2022, sec. 3 and
// Algorithm 1 for α = 1; clear-diffusion-keras's second_order_correction): the noise estimate at
// t is re-evaluated α steps further, at t − α·Δt, from the first estimate's components, and the
// two are mixed, ε = (1 − 1/(2α))·ε̂ + 1/(2α)·ε̂_α, before the DDIM step. α = 0.5: midpoint,
// α = 1: Heun. Two network evaluations per step.

#include "difflab/plugin.h"
#include "difflab/sampler.h"

using namespace difflab;

class SecondOrderSampler : public Sampler {
 public:
  SecondOrderSampler(const Params& params, const BuildContext&) : alpha_(params.real("alpha")) {}

  static ParamSchema schema() {
    return {ParamSpec::real("alpha", 1.0, "where the second evaluation is, in steps: 0.5 midpoint, 1 Heun")
                .greater_than(0)
                .at_most(1)};
  }

  torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise, const Schedule& schedule,
                       int64_t diffusion_steps) const override {
    const double step_size = 1.0 / static_cast<double>(diffusion_steps);
    torch::Tensor noisy_images = initial_noise, pred_images;
    for (int64_t step = 0; step < diffusion_steps; ++step) {
      const double diffusion_time = 1.0 - static_cast<double>(step) * step_size;
      const Rates rates = rates_at(schedule, diffusion_time, initial_noise);
      const Denoised first = denoise(noisy_images, rates.noise_rates, rates.signal_rates);
      // The first estimate's components remixed α steps away, and the noise estimated there.
      const Rates alpha_rates = rates_at(schedule, diffusion_time - alpha_ * step_size, initial_noise);
      const torch::Tensor alpha_noisy_images =
          alpha_rates.signal_rates * first.pred_images + alpha_rates.noise_rates * first.pred_noises;
      const Denoised second = denoise(alpha_noisy_images, alpha_rates.noise_rates, alpha_rates.signal_rates);
      const double weight = 1.0 / (2.0 * alpha_);
      const torch::Tensor pred_noises = (1.0 - weight) * first.pred_noises + weight * second.pred_noises;
      DdimStep step_result =
          ddim_step(noisy_images, pred_noises, rates, rates_at(schedule, diffusion_time - step_size, initial_noise));
      pred_images = step_result.pred_images;
      noisy_images = step_result.next_noisy_images;
    }
    return pred_images;
  }

 private:
  double alpha_;
};

DIFFLAB_PLUGIN(sampler, "second_order", SecondOrderSampler, "1.0.0",
               "second-order Runge-Kutta DDIM (alpha 0.5 midpoint, 1 Heun); 2 evaluations a step")
