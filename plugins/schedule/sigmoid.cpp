// sigmoid: the signal power follows a scaled sigmoid (Jabri et al. 2022; Chen 2023, "On the
// importance of noise scheduling for diffusion models", Algorithm 1):
//   g(t) = (sigmoid(end/τ) − sigmoid((start + t (end − start))/τ)) / (sigmoid(end/τ) − sigmoid(start/τ)),
// g(0) = 1, g(1) = 0, and the signal power 1 − P(t) = (1 − P1) + (P1 − P0) g(t) runs between the
// end points.

#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class SigmoidSchedule : public Schedule {
 public:
  SigmoidSchedule(const Params& params, const BuildContext&)
      : ends_(noise_power_ends(params)),
        start_(params.real("sigmoid_start")),
        end_(params.real("sigmoid_end")),
        tau_(params.real("sigmoid_tau")) {}

  static ParamSchema schema() {
    ParamSchema schema = schedule_end_schema();
    schema.push_back(ParamSpec::real("sigmoid_start", -3.0, "sigmoid input at t = 0"));
    schema.push_back(ParamSpec::real("sigmoid_end", 3.0, "sigmoid input at t = 1"));
    schema.push_back(
        ParamSpec::real("sigmoid_tau", 1.0, "temperature: larger is closer to linear").greater_than(0));
    return schema;
  }
  static ParamIssue validate(const Params& params) {
    const ParamIssue ends = check_schedule_ends(params);
    if (!ends.key.empty()) return ends;
    if (params.real("sigmoid_start") >= params.real("sigmoid_end"))
      return {"sigmoid_start", "sigmoid_start must be below sigmoid_end"};
    return {};
  }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    const double v_start = 1.0 / (1.0 + std::exp(-start_ / tau_)),
                 v_end = 1.0 / (1.0 + std::exp(-end_ / tau_));
    const torch::Tensor g =
        (v_end - torch::sigmoid((start_ + diffusion_times * (end_ - start_)) / tau_)) / (v_end - v_start);
    return rates_from_noise_powers(ends_.end - (ends_.end - ends_.start) * g);
  }

 private:
  NoisePowerEnds ends_;
  double start_;
  double end_;
  double tau_;
};

DIFFLAB_PLUGIN(schedule, "sigmoid", SigmoidSchedule, "1.0.0", "signal power along a sigmoid (Chen 2023)")
