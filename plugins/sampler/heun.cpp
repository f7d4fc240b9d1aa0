// heun: EDM's second-order sampler (Karras et al. 2022, Algorithm 1): an Euler step, then the
// slope at its end averaged with the first. 2N − 1 network evaluations for N steps.
#include "difflab/plugin.h"
#include "edm_steps.h"

using namespace difflab;

class HeunSampler : public Sampler {
 public:
  HeunSampler(const Params& params, const BuildContext&)
      : karras_(params.boolean("karras_sigmas")), rho_(params.real("rho")) {}
  static ParamSchema schema() { return edm::schema(); }

  torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise, const Schedule& schedule,
                       int64_t diffusion_steps) const override {
    return edm::solve(denoise, initial_noise, schedule, diffusion_steps, karras_, rho_, true);
  }

 private:
  bool karras_;
  double rho_;
};

DIFFLAB_PLUGIN(sampler, "heun", HeunSampler, "1.0.0",
               "EDM Heun (second order) on rho-spaced noise levels; 2N - 1 evaluations")
