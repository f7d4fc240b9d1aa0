// linear: the noise power (variance, noise_rate²) is linear in diffusion time.
// Why that quantity: the seed's network is fed the noise variance, so a variance-linear schedule
// trains every network input level equally often; and with signal_rate² = 1 − noise power it is
// the continuous analogue of interpolating ᾱ linearly (DDPM's ᾱ_t, Ho et al. 2020, eq. 4).
// End points are given as signal rates, like the seed's cosine schedule.
#include <torch/torch.h>

#include "difflab/schedule.h"

using namespace difflab;

class LinearSchedule : public Schedule {
 public:
  LinearSchedule(const Params& params, const BuildContext&)
      : start_noise_power_(1.0 - params.real("max_signal_rate") * params.real("max_signal_rate")),
        end_noise_power_(1.0 - params.real("min_signal_rate") * params.real("min_signal_rate")) {}

  static ParamSchema schema() { return signal_rate_schema(); }
  static ParamIssue validate(const Params& params) { return check_signal_rates(params); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    torch::Tensor noise_powers =
        start_noise_power_ + diffusion_times * (end_noise_power_ - start_noise_power_);
    return {torch::sqrt(noise_powers), torch::sqrt(1.0 - noise_powers)};
  }

 private:
  double start_noise_power_;
  double end_noise_power_;
};

DIFFLAB_PLUGIN(schedule, "linear", LinearSchedule, "1.0.0",
               "noise variance linear in time between max and min signal rate")
