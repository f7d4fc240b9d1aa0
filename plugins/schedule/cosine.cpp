// cosine: the seed's continuous cosine schedule (Nichol & Dhariwal 2021, sec. 3.2, simplified):
// diffusion times map linearly to angles, signal_rate = cos(angle), noise_rate = sin(angle).
#include <torch/torch.h>

#include "difflab/schedule.h"

using namespace difflab;

class CosineSchedule : public Schedule {
 public:
  CosineSchedule(const Params& params, const BuildContext&)
      : min_signal_rate_(params.real("min_signal_rate")),
        max_signal_rate_(params.real("max_signal_rate")) {}

  static ParamSchema schema() { return signal_rate_schema(); }
  static ParamIssue validate(const Params& params) { return check_signal_rates(params); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    // diffusion times -> angles
    const double start_angle = std::acos(max_signal_rate_);
    const double end_angle = std::acos(min_signal_rate_);
    torch::Tensor diffusion_angles = start_angle + diffusion_times * (end_angle - start_angle);
    // angles -> signal and noise rates; sin²(x) + cos²(x) = 1
    return {torch::sin(diffusion_angles), torch::cos(diffusion_angles)};
  }

 private:
  double min_signal_rate_;
  double max_signal_rate_;
};

DIFFLAB_PLUGIN(schedule, "cosine", CosineSchedule, "1.0.0",
               "the seed's continuous cosine schedule between min and max signal rate")
