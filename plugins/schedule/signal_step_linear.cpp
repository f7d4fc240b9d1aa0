// signal_step_linear: 1 − P(t) = (1 − P0) · ((1 − P1) / (1 − P0))^(t²): the ratio of consecutive
// signal powers falls about linearly — the continuous form of DDPM's linear β schedule (Ho et al.
// 2020, sec. 4: ᾱ_t = Π(1 − β_s) with β linear gives log ᾱ quadratic in t) (clear-diffusion-keras).

#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class SignalStepLinearSchedule : public Schedule {
 public:
  SignalStepLinearSchedule(const Params& params, const BuildContext&) : ends_(noise_power_ends(params)) {}

  static ParamSchema schema() { return schedule_end_schema(); }
  static ParamIssue validate(const Params& params) { return check_schedule_ends(params); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    const double start_signal = 1.0 - ends_.start, end_signal = 1.0 - ends_.end;
    return rates_from_noise_powers(
        1.0 - start_signal * torch::pow(end_signal / start_signal, diffusion_times * diffusion_times));
  }

 private:
  NoisePowerEnds ends_;
};

DIFFLAB_PLUGIN(schedule, "signal_step_linear", SignalStepLinearSchedule, "1.0.0",
               "ratio of consecutive signal powers linear in time (DDPM linear betas)")
