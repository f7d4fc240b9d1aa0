// linear: the noise power (variance, noise_rate²) is linear in diffusion time.
// Why that quantity: the seed's network is fed the noise variance, so a variance-linear schedule
// trains every network input level equally often; and with signal_rate² = 1 − noise power it is
// the continuous analogue of interpolating ᾱ linearly (DDPM's ᾱ_t, Ho et al. 2020, eq. 4).
// End points are given as signal rates, like the seed's cosine schedule, or as log-SNR.

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class LinearSchedule : public Schedule {
 public:
  LinearSchedule(const Params& params, const BuildContext&) : ends_(noise_power_ends(params)) {}

  static ParamSchema schema() { return schedule_end_schema(); }
  static ParamIssue validate(const Params& params) { return check_schedule_ends(params); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    return rates_from_noise_powers(ends_.start + diffusion_times * (ends_.end - ends_.start));
  }

 private:
  NoisePowerEnds ends_;
};

DIFFLAB_PLUGIN(schedule, "linear", LinearSchedule, "1.1.0",
               "noise variance linear in time between max and min signal rate (or log-SNR)")
