// dpm_solver_pp: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order
// multistep solver of the diffusion ODE in λ = log(s/n) with the data prediction x̂₀:
//   h_i = λ_i − λ_{i−1},  r_i = h_{i−1} / h_i,
//   D_i = (1 + 1/(2 r_i))·x̂₀_{i−1} − 1/(2 r_i)·x̂₀_{i−2}   (D_1 = x̂₀_0: first order)
//   x_i = (n_i / n_{i−1})·x_{i−1} − s_i·(e^{−h_i} − 1)·D_i
// One network evaluation per step; returns the last evaluation's x̂₀, like the seed's DDIM.
#include <cmath>

#include "difflab/plugin.h"
#include "difflab/sampler.h"

using namespace difflab;

class DpmSolverPlusPlus : public Sampler {
 public:
  DpmSolverPlusPlus(const Params&, const BuildContext&) {}
  static ParamSchema schema() { return {}; }

  torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise, const Schedule& schedule,
                       int64_t diffusion_steps) const override {
    const double step_size = 1.0 / static_cast<double>(diffusion_steps);
    torch::Tensor noisy_images = initial_noise, pred_images, previous_pred_images, previous_step;
    for (int64_t step = 0; step < diffusion_steps; ++step) {
      const double diffusion_time = 1.0 - static_cast<double>(step) * step_size;
      const Rates rates = rates_at(schedule, diffusion_time, initial_noise);
      pred_images = denoise(noisy_images, rates.noise_rates, rates.signal_rates).pred_images;
      if (step + 1 == diffusion_steps) break;
      const Rates next = rates_at(schedule, diffusion_time - step_size, initial_noise);
      // h = λ_next − λ, λ = log(s / n)
      const torch::Tensor h = torch::log(next.signal_rates / next.noise_rates) -
                              torch::log(rates.signal_rates / rates.noise_rates);
      torch::Tensor derivative_images = pred_images;  // D: first order at the first step
      if (previous_pred_images.defined()) {
        const torch::Tensor r = previous_step / h;
        derivative_images = (1.0 + 0.5 / r) * pred_images - (0.5 / r) * previous_pred_images;
      }
      noisy_images = (next.noise_rates / rates.noise_rates) * noisy_images -
                     next.signal_rates * torch::expm1(-h) * derivative_images;
      previous_pred_images = pred_images;
      previous_step = h;
    }
    return pred_images;
  }
};

DIFFLAB_PLUGIN(sampler, "dpm_solver_pp", DpmSolverPlusPlus, "1.0.0",
               "DPM-Solver++(2M): second-order multistep in log-SNR; 1 evaluation a step")
