// Noise schedule family: continuous diffusion time t in [0, 1] -> (noise_rates, signal_rates),
// with noise_rates² + signal_rates² = 1 (the seed's diffusion_schedule).
#pragma once

#include <torch/types.h>

#include "difflab/plugin.h"

namespace difflab {

struct Rates {
  torch::Tensor noise_rates;   // same shape as diffusion_times
  torch::Tensor signal_rates;  // same shape as diffusion_times
};

class BOOST_SYMBOL_VISIBLE Schedule : public Component {
 public:
  ~Schedule() override;
  // t = 0 is the cleanest image, t = 1 the noisiest.
  virtual Rates rates(const torch::Tensor& diffusion_times) const = 0;
};

// The end points of schedules defined by signal rates (the seed's min/max_signal_rate), and the
// check that min < max; shared by every such schedule plugin.
ParamSchema signal_rate_schema();
ParamIssue check_signal_rates(const Params& params);

}  // namespace difflab
