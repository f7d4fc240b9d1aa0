// karras: the EDM noise levels (Karras et al. 2022, eq. 5), as a continuous schedule:
//   σ(t) = (σ_min^(1/ρ) + t (σ_max^(1/ρ) − σ_min^(1/ρ)))^ρ,  t = 1 → σ_max, t = 0 → σ_min,
// read in the variance-preserving form x_t = s x₀ + n ε with σ = n / s (EDM sec. 2 / table 1:
// x/s = x₀ + σ ε), so s = 1 / √(1 + σ²), n = σ / √(1 + σ²). ρ = 7 spends more steps at low noise.

#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class KarrasSchedule : public Schedule {
 public:
  KarrasSchedule(const Params& params, const BuildContext&)
      : sigma_min_(params.real("sigma_min")),
        sigma_max_(params.real("sigma_max")),
        rho_(params.real("rho")) {}

  static ParamSchema schema() {
    return {
        ParamSpec::real("sigma_min", 0.002, "noise-to-signal ratio σ at t = 0").greater_than(0),
        ParamSpec::real("sigma_max", 80.0, "σ at t = 1").greater_than(0),
        ParamSpec::real("rho", 7.0, "curvature of the σ steps").greater_than(0),
    };
  }
  static ParamIssue validate(const Params& params) {
    if (params.real("sigma_min") >= params.real("sigma_max"))
      return {"sigma_min", "sigma_min must be below sigma_max"};
    return {};
  }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    const double low = std::pow(sigma_min_, 1.0 / rho_), high = std::pow(sigma_max_, 1.0 / rho_);
    const torch::Tensor sigmas = torch::pow(low + diffusion_times * (high - low), rho_);
    const torch::Tensor scale = torch::rsqrt(1.0 + sigmas * sigmas);
    return {sigmas * scale, scale};
  }

 private:
  double sigma_min_;
  double sigma_max_;
  double rho_;
};

DIFFLAB_PLUGIN(schedule, "karras", KarrasSchedule, "1.0.0",
               "the EDM sigma schedule with rho (Karras et al. 2022)")
