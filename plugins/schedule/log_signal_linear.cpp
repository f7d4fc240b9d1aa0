// log_signal_linear: log(1 − P(t)) falls linearly, 1 − P(t) = (1 − P0) · ((1 − P1) / (1 − P0))^t —
// the ratio of consecutive signal powers is constant (clear-diffusion-keras, schedule.py).

#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class LogSignalLinearSchedule : public Schedule {
 public:
  LogSignalLinearSchedule(const Params& params, const BuildContext&) : ends_(noise_power_ends(params)) {}

  static ParamSchema schema() { return schedule_end_schema(); }
  static ParamIssue validate(const Params& params) { return check_schedule_ends(params); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    const double start_signal = 1.0 - ends_.start, end_signal = 1.0 - ends_.end;
    return rates_from_noise_powers(1.0 -
                                   start_signal * torch::pow(end_signal / start_signal, diffusion_times));
  }

 private:
  NoisePowerEnds ends_;
};

DIFFLAB_PLUGIN(schedule, "log_signal_linear", LogSignalLinearSchedule, "1.0.0",
               "log signal power linear in time")
