// noise_step_linear: P(t) = P1 · (P0 / P1)^((1 − t)²): log P is quadratic in t, so the ratio of
// consecutive noise powers falls about linearly to 1 at t = 1 (clear-diffusion-keras, schedule.py).
// Needs P0 > 0 (max_signal_rate < 1).

#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class NoiseStepLinearSchedule : public Schedule {
 public:
  NoiseStepLinearSchedule(const Params& params, const BuildContext&) : ends_(noise_power_ends(params)) {}

  static ParamSchema schema() { return schedule_end_schema(); }
  static ParamIssue validate(const Params& params) { return check_schedule_ends(params, true); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    const torch::Tensor remaining = 1.0 - diffusion_times;
    return rates_from_noise_powers(ends_.end * torch::pow(ends_.start / ends_.end, remaining * remaining));
  }

 private:
  NoisePowerEnds ends_;
};

DIFFLAB_PLUGIN(schedule, "noise_step_linear", NoiseStepLinearSchedule, "1.0.0",
               "ratio of consecutive noise powers linear in time")
