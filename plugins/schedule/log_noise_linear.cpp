// log_noise_linear: log P(t) rises linearly, P(t) = P0 · (P1 / P0)^t — the ratio of consecutive
// noise powers is constant (clear-diffusion-keras, schedule.py). Needs P0 > 0 (max_signal_rate < 1).

#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class LogNoiseLinearSchedule : public Schedule {
 public:
  LogNoiseLinearSchedule(const Params& params, const BuildContext&) : ends_(noise_power_ends(params)) {}

  static ParamSchema schema() { return schedule_end_schema(); }
  static ParamIssue validate(const Params& params) { return check_schedule_ends(params, true); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    return rates_from_noise_powers(ends_.start * torch::pow(ends_.end / ends_.start, diffusion_times));
  }

 private:
  NoisePowerEnds ends_;
};

DIFFLAB_PLUGIN(schedule, "log_noise_linear", LogNoiseLinearSchedule, "1.0.0",
               "log noise power linear in time")
