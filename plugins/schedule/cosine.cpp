// cosine: the seed's continuous cosine schedule (Nichol & Dhariwal 2021, sec. 3.2, simplified):
// diffusion times map linearly to angles, signal_rate = cos(angle), noise_rate = sin(angle).
#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class CosineSchedule : public Schedule {
 public:
  CosineSchedule(const Params& params, const BuildContext&) {
    if (params.string("endpoints") == "signal_rate") {  // exactly the seed's angles
      start_angle_ = std::acos(params.real("max_signal_rate"));
      end_angle_ = std::acos(params.real("min_signal_rate"));
    } else {  // noise_rate = sin(angle)
      const NoisePowerEnds ends = noise_power_ends(params);
      start_angle_ = std::asin(std::sqrt(ends.start));
      end_angle_ = std::asin(std::sqrt(ends.end));
    }
  }

  static ParamSchema schema() { return schedule_end_schema(); }
  static ParamIssue validate(const Params& params) { return check_schedule_ends(params); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    // diffusion times -> angles
    const double start_angle = start_angle_;
    const double end_angle = end_angle_;
    torch::Tensor diffusion_angles = start_angle + diffusion_times * (end_angle - start_angle);
    // angles -> signal and noise rates; sin²(x) + cos²(x) = 1
    return {torch::sin(diffusion_angles), torch::cos(diffusion_angles)};
  }

 private:
  double start_angle_ = 0.0;
  double end_angle_ = 0.0;
};

DIFFLAB_PLUGIN(schedule, "cosine", CosineSchedule, "1.1.0",
               "the seed's continuous cosine schedule between min and max signal rate (or log-SNR)")
