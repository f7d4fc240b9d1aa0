// ddim: the seed's reverse_diffusion (Song et al. 2021, DDIM), deterministic at eta = 0,
// stochastic for eta > 0 (eta = 1 is DDPM's ancestral sampler).

#include "difflab/plugin.h"
#include "difflab/sampler.h"

using namespace difflab;

class DdimSampler : public Sampler {
 public:
  DdimSampler(const Params& params, const BuildContext&) : eta_(params.real("eta")) {}

  static ParamSchema schema() {
    return {ParamSpec::real("eta", 0.0, "stochasticity: 0 = deterministic DDIM, 1 = DDPM")
                .at_least(0)
                .at_most(1)};
  }

  torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise,
                       const Schedule& schedule, int64_t diffusion_steps) const override {
    const double step_size = 1.0 / static_cast<double>(diffusion_steps);

    // At the first step the "noisy image" is pure noise, but its signal rate is assumed to be
    // nonzero (min_signal_rate).
    torch::Tensor next_noisy_images = initial_noise;
    torch::Tensor pred_images;
    for (int64_t step = 0; step < diffusion_steps; ++step) {
      torch::Tensor noisy_images = next_noisy_images;
      // Separate the current noisy image into its components.
      const double diffusion_time = 1.0 - static_cast<double>(step) * step_size;
      Rates rates = rates_at(schedule, diffusion_time, initial_noise);
      Denoised denoised = denoise(noisy_images, rates.noise_rates, rates.signal_rates);
      pred_images = denoised.pred_images;
      // Remix the predicted components using the next signal and noise rates.
      Rates next = rates_at(schedule, diffusion_time - step_size, initial_noise);
      if (eta_ == 0.0) {
        next_noisy_images = next.signal_rates * pred_images + next.noise_rates * denoised.pred_noises;
        continue;
      }
      // DDIM eq. 16 with α = signal_rate²:
      //   σ = η · sqrt((1 − α_next) / (1 − α)) · sqrt(1 − α / α_next)
      torch::Tensor sigmas =
          eta_ * (next.noise_rates / rates.noise_rates) *
          torch::sqrt(torch::clamp_min(1.0 - rates.signal_rates.pow(2) / next.signal_rates.pow(2), 0.0));
      // DDIM eq. 12: x_next = sqrt(α_next)·x̂₀ + sqrt(1 − α_next − σ²)·ε̂ + σ·z
      torch::Tensor pred_noise_rates = torch::sqrt(torch::clamp_min(next.noise_rates.pow(2) - sigmas.pow(2), 0.0));
      next_noisy_images = next.signal_rates * pred_images + pred_noise_rates * denoised.pred_noises +
                          sigmas * torch::randn_like(pred_images);
    }
    return pred_images;
  }

 private:
  double eta_;
};

DIFFLAB_PLUGIN(sampler, "ddim", DdimSampler, "1.0.0",
               "DDIM (the seed's sampler); eta > 0 adds DDIM eq. 16 noise")
