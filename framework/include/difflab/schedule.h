// Noise schedule family: continuous diffusion time t in [0, 1] -> (noise_rates, signal_rates),
// with noise_rates² + signal_rates² = 1 (the seed's diffusion_schedule).
#pragma once

#include "difflab/export.h"

#include <torch/types.h>

#include "difflab/component.h"

namespace difflab {

struct Rates {
  torch::Tensor noise_rates;   // same shape as diffusion_times
  torch::Tensor signal_rates;  // same shape as diffusion_times
};

class DIFFLAB_API Schedule : public Component {
 public:
  // Bump when a virtual function of this interface changes (plugin.h checks it).
  static constexpr uint32_t interface_version = 1;
  ~Schedule() override;
  // t = 0 is the cleanest image, t = 1 the noisiest.
  virtual Rates rates(const torch::Tensor& diffusion_times) const = 0;
};

// The end points shared by the schedules defined by noise power P(t) = noise_rate² (signal_rate
// = √(1 − P)): `endpoints = "signal_rate"` takes the seed's min/max_signal_rate (signal rate at
// t = 1 and t = 0), `endpoints = "log_snr"` takes start_log_snr > end_log_snr (log(s²/n²) at
// t = 0 and t = 1), as in the companion repository clear-diffusion-keras.
DIFFLAB_API ParamSchema schedule_end_schema();
// `log_of_noise`: the schedule takes log P(0), so P(0) > 0 (max_signal_rate < 1) is required.
DIFFLAB_API ParamIssue check_schedule_ends(const Params& params, bool log_of_noise = false);

struct NoisePowerEnds {
  double start;  // P(0): the least noise
  double end;    // P(1): the most noise
};
DIFFLAB_API NoisePowerEnds noise_power_ends(const Params& params);

// noise_rate = √P, signal_rate = √(1 − P).
DIFFLAB_API Rates rates_from_noise_powers(const torch::Tensor& noise_powers);

}  // namespace difflab
