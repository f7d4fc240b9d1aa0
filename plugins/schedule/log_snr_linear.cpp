// log_snr_linear: the log signal-to-noise ratio λ(t) = log(s²/n²) falls linearly from λ(0) to
// λ(1) (VDM, Kingma et al. 2021, sec. 3.3 / appendix: a linear λ is what the learned schedule
// is compared with). Noise power P = n² = sigmoid(−λ), since s² + n² = 1.

#include <cmath>

#include "difflab/plugin.h"
#include "difflab/schedule.h"

using namespace difflab;

class LogSnrLinearSchedule : public Schedule {
 public:
  LogSnrLinearSchedule(const Params& params, const BuildContext&)
      : start_(log_snr(noise_power_ends(params).start)), end_(log_snr(noise_power_ends(params).end)) {}

  static ParamSchema schema() { return schedule_end_schema(); }
  static ParamIssue validate(const Params& params) { return check_schedule_ends(params); }

  Rates rates(const torch::Tensor& diffusion_times) const override {
    const torch::Tensor log_snrs = start_ + diffusion_times * (end_ - start_);
    return rates_from_noise_powers(torch::sigmoid(-log_snrs));
  }

 private:
  // λ = log((1 − P) / P)
  static double log_snr(double noise_power) { return std::log((1.0 - noise_power) / noise_power); }
  double start_;
  double end_;
};

DIFFLAB_PLUGIN(schedule, "log_snr_linear", LogSnrLinearSchedule, "1.0.0", "log-SNR linear in time (VDM)")
