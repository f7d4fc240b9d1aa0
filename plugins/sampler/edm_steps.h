// The EDM samplers' shared part (Karras et al. 2022, Algorithm 1): the probability-flow ODE in
// the variance-exploding form x̃ = x / s with σ = n / s (sec. 2), dx̃/dσ = (x̃ − D(x̃; σ)) / σ,
// stepped over σ_0 > σ_1 > … either on the experiment's schedule (σ at t = 1 − i/N, the seed's
// grid) or on EDM's ρ-spaced σ (eq. 5) between the schedule's σ(1) and σ(0).
#pragma once

#include <cmath>
#include <vector>

#include "difflab/sampler.h"

namespace difflab::edm {

inline ParamSchema schema() {
  return {ParamSpec::boolean("karras_sigmas", true,
                             "EDM's rho-spaced noise levels (eq. 5) between the schedule's ends; false: the "
                             "schedule's own grid t = 1 - i/N"),
          ParamSpec::real("rho", 7.0, "EDM's rho: larger spends more steps at low noise").greater_than(0)};
}

// σ_0 … σ_{N−1}: the noise levels where the network is evaluated (the last one's x̂₀ is returned).
inline std::vector<double> sigmas(const Schedule& schedule, int64_t steps, bool karras, double rho) {
  auto sigma_at = [&](double t) {
    const Rates rates = schedule.rates(torch::full({1}, t, torch::kFloat64));
    return rates.noise_rates.item<double>() / rates.signal_rates.item<double>();
  };
  std::vector<double> result;
  const double high = sigma_at(1.0), low = sigma_at(0.0);
  for (int64_t i = 0; i < steps; ++i) {
    if (!karras) {
      result.push_back(sigma_at(1.0 - static_cast<double>(i) / static_cast<double>(steps)));
      continue;
    }
    const double fraction = steps > 1 ? static_cast<double>(i) / static_cast<double>(steps - 1) : 0.0;
    result.push_back(std::pow(std::pow(high, 1 / rho) + fraction * (std::pow(low, 1 / rho) - std::pow(high, 1 / rho)), rho));
  }
  return result;
}

// D(x̃; σ) through the variance-preserving denoiser: x = s·x̃, s = 1/√(1+σ²), n = σ·s.
inline torch::Tensor denoised(const Denoiser& denoise, const torch::Tensor& scaled, double sigma) {
  const double signal_rate = 1.0 / std::sqrt(1.0 + sigma * sigma);
  const torch::Tensor signal_rates = torch::full({scaled.size(0), 1, 1, 1}, signal_rate, scaled.options());
  return denoise(signal_rate * scaled, sigma * signal_rates, signal_rates).pred_images;
}

// Euler (second_order = false) or Heun (true) from x(t = 1) = initial_noise.
inline torch::Tensor solve(const Denoiser& denoise, const torch::Tensor& initial_noise, const Schedule& schedule,
                           int64_t steps, bool karras, double rho, bool second_order) {
  const std::vector<double> sigma = sigmas(schedule, steps, karras, rho);
  torch::Tensor scaled = initial_noise * std::sqrt(1.0 + sigma[0] * sigma[0]);  // x̃ = x / s
  for (size_t i = 0; i + 1 < sigma.size(); ++i) {
    const torch::Tensor slope = (scaled - denoised(denoise, scaled, sigma[i])) / sigma[i];  // d_i
    torch::Tensor next = scaled + (sigma[i + 1] - sigma[i]) * slope;
    if (second_order) {  // Heun's correction: the mean of the slopes at both ends
      const torch::Tensor next_slope = (next - denoised(denoise, next, sigma[i + 1])) / sigma[i + 1];
      next = scaled + (sigma[i + 1] - sigma[i]) * 0.5 * (slope + next_slope);
    }
    scaled = next;
  }
  return denoised(denoise, scaled, sigma.back());
}

}  // namespace difflab::edm
