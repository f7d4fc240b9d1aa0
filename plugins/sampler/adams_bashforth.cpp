// adams_bashforth: linear multistep DDIM (PNDM's PLMS, Liu et al. 2022, eq. 12;
// clear-diffusion-keras's multistep_correction): the noise estimate of each step is replaced by
// the Adams–Bashforth combination of the last `order` estimates, lower orders while fewer exist.
// One network evaluation per step.
#include <deque>

#include "difflab/plugin.h"
#include "difflab/sampler.h"

using namespace difflab;

namespace {
// Adams–Bashforth coefficients, oldest estimate first (e.g. order 2: (3·ε_n − ε_{n−1}) / 2).
const std::vector<std::vector<double>> kCoefficients = {
    {1.0},
    {-1.0 / 2, 3.0 / 2},
    {5.0 / 12, -16.0 / 12, 23.0 / 12},
    {-9.0 / 24, 37.0 / 24, -59.0 / 24, 55.0 / 24},
    {251.0 / 720, -1274.0 / 720, 2616.0 / 720, -2774.0 / 720, 1901.0 / 720},
};
}  // namespace

class AdamsBashforthSampler : public Sampler {
 public:
  AdamsBashforthSampler(const Params& params, const BuildContext&) : order_(params.integer("order")) {}

  static ParamSchema schema() {
    return {ParamSpec::integer("order", 4, "how many noise estimates are combined (PLMS: 4)").at_least(1).at_most(5)};
  }

  torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise, const Schedule& schedule,
                       int64_t diffusion_steps) const override {
    const double step_size = 1.0 / static_cast<double>(diffusion_steps);
    std::deque<torch::Tensor> previous_pred_noises;
    torch::Tensor noisy_images = initial_noise, pred_images;
    for (int64_t step = 0; step < diffusion_steps; ++step) {
      const double diffusion_time = 1.0 - static_cast<double>(step) * step_size;
      const Rates rates = rates_at(schedule, diffusion_time, initial_noise);
      previous_pred_noises.push_back(denoise(noisy_images, rates.noise_rates, rates.signal_rates).pred_noises);
      if (static_cast<int64_t>(previous_pred_noises.size()) > order_) previous_pred_noises.pop_front();
      const std::vector<double>& coefficients = kCoefficients[previous_pred_noises.size() - 1];
      torch::Tensor pred_noises = torch::zeros_like(noisy_images);
      for (size_t i = 0; i < coefficients.size(); ++i) pred_noises += coefficients[i] * previous_pred_noises[i];
      DdimStep step_result =
          ddim_step(noisy_images, pred_noises, rates, rates_at(schedule, diffusion_time - step_size, initial_noise));
      pred_images = step_result.pred_images;
      noisy_images = step_result.next_noisy_images;
    }
    return pred_images;
  }

 private:
  int64_t order_;
};

DIFFLAB_PLUGIN(sampler, "adams_bashforth", AdamsBashforthSampler, "1.0.0",
               "Adams-Bashforth multistep DDIM of order 1-5 (PLMS); 1 evaluation a step")
