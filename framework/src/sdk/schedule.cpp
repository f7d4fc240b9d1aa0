// The schedule families' shared helpers (difflab/schedule.h): the end points every schedule takes,
// and rates from noise powers.
#include <cmath>
#include <torch/torch.h>

#include "difflab/schedule.h"

namespace difflab {

ParamSchema schedule_end_schema() {
  return {
      ParamSpec::string("endpoints", "signal_rate",
                        "how the end points are given: signal_rate (min/max_signal_rate) or "
                        "log_snr (start/end_log_snr)")
          .one_of({"signal_rate", "log_snr"}),
      ParamSpec::real("min_signal_rate", 0.02,
                      "signal rate at t = 1; too low oversaturates, 0 divides by zero")
          .greater_than(0)
          .less_than(1),
      ParamSpec::real("max_signal_rate", 0.95, "signal rate at t = 0").greater_than(0).at_most(1),
      ParamSpec::real("start_log_snr", 2.5, "log signal-to-noise ratio at t = 0 (endpoints = log_snr)"),
      ParamSpec::real("end_log_snr", -7.5, "log signal-to-noise ratio at t = 1 (endpoints = log_snr)"),
  };
}

ParamIssue check_schedule_ends(const Params& params, bool log_of_noise) {
  if (params.string("endpoints") == "log_snr") {
    if (params.real("start_log_snr") <= params.real("end_log_snr"))
      return {"start_log_snr", "start_log_snr must be above end_log_snr (t = 0 is the cleanest)"};
  } else if (params.real("min_signal_rate") >= params.real("max_signal_rate")) {
    return {"min_signal_rate", "min_signal_rate must be below max_signal_rate"};
  }
  if (log_of_noise && noise_power_ends(params).start <= 0)
    return {"max_signal_rate", "this schedule takes log of the noise power: max_signal_rate must be below 1"};
  return {};
}

NoisePowerEnds noise_power_ends(const Params& params) {
  if (params.string("endpoints") == "log_snr") {
    // SNR = s² / n² = (1 − P) / P  =>  P = 1 / (1 + SNR)
    return {1.0 / (1.0 + std::exp(params.real("start_log_snr"))),
            1.0 / (1.0 + std::exp(params.real("end_log_snr")))};
  }
  const double max = params.real("max_signal_rate"), min = params.real("min_signal_rate");
  return {1.0 - max * max, 1.0 - min * min};
}

Rates rates_from_noise_powers(const torch::Tensor& noise_powers) {
  return {torch::sqrt(noise_powers), torch::sqrt(1.0 - noise_powers)};
}

}  // namespace difflab
