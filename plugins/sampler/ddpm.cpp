// ddpm: stochastic ancestral sampling (Ho et al. 2020, Algorithm 2) on the continuous schedule.
// The step from t to the next time s < t samples the posterior q(x_s | x_t, x̂₀).

#include "difflab/plugin.h"
#include "difflab/sampler.h"

using namespace difflab;

class DdpmSampler : public Sampler {
 public:
  DdpmSampler(const Params& params, const BuildContext&)
      : large_variance_(params.string("variance") == "large") {}

  static ParamSchema schema() {
    return {ParamSpec::string("variance", "small",
                              "small = posterior variance β̃ (DDPM eq. 7), large = β (sec. 3.2)")
                .one_of({"small", "large"})};
  }

  torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise,
                       const Schedule& schedule, int64_t diffusion_steps) const override {
    const double step_size = 1.0 / static_cast<double>(diffusion_steps);

    torch::Tensor noisy_images = initial_noise;
    torch::Tensor pred_images;
    for (int64_t step = 0; step < diffusion_steps; ++step) {
      const double diffusion_time = 1.0 - static_cast<double>(step) * step_size;
      Rates rates = rates_at(schedule, diffusion_time, initial_noise);
      Denoised denoised = denoise(noisy_images, rates.noise_rates, rates.signal_rates);
      pred_images = denoised.pred_images;
      if (step + 1 == diffusion_steps) break;  // the last step returns x̂₀, as the seed does

      Rates next = rates_at(schedule, diffusion_time - step_size, initial_noise);
      // With α = signal_rate²: β = 1 − α_t / α_s is the step's noise and
      // β̃ = (1 − α_s) / (1 − α_t) · β the posterior variance (DDPM eq. 7).
      torch::Tensor betas =
          torch::clamp_min(1.0 - rates.signal_rates.pow(2) / next.signal_rates.pow(2), 0.0);
      torch::Tensor posterior_variances = next.noise_rates.pow(2) / rates.noise_rates.pow(2) * betas;
      // Posterior mean μ̃ (DDPM eq. 7), written as x̂₀ remixed with the part of ε̂ that the
      // posterior noise does not replace (DDIM eq. 12 with σ² = β̃).
      torch::Tensor mean_noise_rates =
          torch::sqrt(torch::clamp_min(next.noise_rates.pow(2) - posterior_variances, 0.0));
      torch::Tensor posterior_means =
          next.signal_rates * pred_images + mean_noise_rates * denoised.pred_noises;
      // Algorithm 2, line 4: x_s = μ̃ + σ·z with σ² = β̃ (small) or β (large, sec. 3.2).
      torch::Tensor sigmas = torch::sqrt(large_variance_ ? betas : posterior_variances);
      noisy_images = posterior_means + sigmas * torch::randn_like(pred_images);
    }
    return pred_images;
  }

 private:
  bool large_variance_;
};

DIFFLAB_PLUGIN(sampler, "ddpm", DdpmSampler, "1.0.0",
               "DDPM ancestral sampling, small (posterior) or large variance")
