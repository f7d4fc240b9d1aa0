// euler: EDM's first-order sampler (Karras et al. 2022, Algorithm 1 without the correction) on
// EDM's ρ-spaced noise levels; on the schedule's own grid it is exactly DDIM (sec. 4: DDIM is
// Euler's method in x̃ and σ). One network evaluation per step.
#include "difflab/plugin.h"
#include "edm_steps.h"

using namespace difflab;

class EulerSampler : public Sampler {
 public:
  EulerSampler(const Params& params, const BuildContext&)
      : karras_(params.boolean("karras_sigmas")), rho_(params.real("rho")) {}
  static ParamSchema schema() { return edm::schema(); }

  torch::Tensor sample(const Denoiser& denoise, const torch::Tensor& initial_noise, const Schedule& schedule,
                       int64_t diffusion_steps) const override {
    return edm::solve(denoise, initial_noise, schedule, diffusion_steps, karras_, rho_, false);
  }

 private:
  bool karras_;
  double rho_;
};

DIFFLAB_PLUGIN(sampler, "euler", EulerSampler, "1.0.0",
               "EDM Euler on rho-spaced noise levels; 1 evaluation a step")
