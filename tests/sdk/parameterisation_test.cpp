// Noise / image / velocity conversions, min-SNR-γ weights and the pseudo-Huber loss, in float64
// against their definitions (Salimans & Ho 2022; Hang et al. 2023; Song & Dhariwal 2023).
#include <cmath>

#include "difflab/loss.h"
#include "difflab/parameterisation.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::f64;
using difflab::test::make;

namespace {
struct Sample {
  torch::Tensor images, noises, signal_rates, noise_rates, noisy_images, velocities;
};

Sample sample() {
  torch::manual_seed(3);
  Sample s;
  s.images = torch::randn({4, 1, 3, 3}, f64());
  s.noises = torch::randn({4, 1, 3, 3}, f64());
  torch::Tensor angles = torch::tensor({0.1, 0.6, 1.0, 1.5}, f64()).view({4, 1, 1, 1});
  s.signal_rates = torch::cos(angles);
  s.noise_rates = torch::sin(angles);
  s.noisy_images = s.signal_rates * s.images + s.noise_rates * s.noises;
  s.velocities = s.signal_rates * s.noises - s.noise_rates * s.images;  // v = s·ε − n·x₀
  return s;
}

double max_difference(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
}  // namespace

TEST(Parameterisation, AnyComponentGivesTheOtherTwo) {
  const Sample s = sample();
  EXPECT_LT(max_difference(velocities(s.images, s.noises, s.signal_rates, s.noise_rates), s.velocities), 1e-15);
  for (Quantity known : {Quantity::noise, Quantity::image, Quantity::velocity}) {
    const torch::Tensor& truth = known == Quantity::noise ? s.noises : known == Quantity::image ? s.images : s.velocities;
    const Decomposition d = decompose(known, truth, s.noisy_images, s.signal_rates, s.noise_rates);
    EXPECT_LT(max_difference(d.noises, s.noises), 1e-12) << to_string(known);
    EXPECT_LT(max_difference(d.images, s.images), 1e-12) << to_string(known);
    EXPECT_LT(max_difference(d.velocities, s.velocities), 1e-12) << to_string(known);
    EXPECT_EQ(parse_quantity(to_string(known)), known);
  }
}

TEST(Parameterisation, MinSnrWeightsFollowHangEtAl) {
  // s = 0.8, n = 0.6: SNR = 0.64 / 0.36 = 16/9.
  const torch::Tensor s = torch::full({1}, 0.8, f64()), n = torch::full({1}, 0.6, f64());
  const double snr = 16.0 / 9.0;
  EXPECT_NEAR(min_snr_weights(Quantity::image, s, n, 1.0).item<double>(), 1.0, 1e-15);
  EXPECT_NEAR(min_snr_weights(Quantity::noise, s, n, 1.0).item<double>(), 1.0 / snr, 1e-15);
  EXPECT_NEAR(min_snr_weights(Quantity::velocity, s, n, 1.0).item<double>(), 1.0 / (snr + 1), 1e-15);
  EXPECT_NEAR(min_snr_weights(Quantity::image, s, n, 5.0).item<double>(), snr, 1e-15);
  EXPECT_NEAR(min_snr_weights(Quantity::noise, s, n, 5.0).item<double>(), 1.0, 1e-15);
  EXPECT_NEAR(min_snr_weights(Quantity::velocity, s, n, 5.0).item<double>(), 0.64, 1e-15);  // SNR/(SNR+1) = s²
}

TEST(Parameterisation, MinSnrWeightingIsTheSameObjectiveWhicheverTargetIsCompared) {
  // With squared errors, an error δ in the noise estimate is an error −(n/s)·δ in the image and
  // −δ/s in the velocity, so the three weighted losses agree per sample: the weights make the
  // objective independent of the target (Hang et al. 2023, sec. 3.4).
  const Sample s = sample();
  const torch::Tensor pred_noises = s.noises + 0.3 * torch::randn_like(s.noises);
  const Decomposition predicted = decompose(Quantity::noise, pred_noises, s.noisy_images, s.signal_rates, s.noise_rates);
  auto weighted = [&](Quantity target, const torch::Tensor& truth) {
    const torch::Tensor squared = (component(predicted, target) - truth).pow(2).mean({1, 2, 3}, true);
    return squared * min_snr_weights(target, s.signal_rates, s.noise_rates, 2.0);
  };
  const torch::Tensor on_noise = weighted(Quantity::noise, s.noises);
  EXPECT_LT(max_difference(weighted(Quantity::image, s.images), on_noise), 1e-12);
  EXPECT_LT(max_difference(weighted(Quantity::velocity, s.velocities), on_noise), 1e-12);
}

TEST(PseudoHuberLoss, IsQuadraticNearZeroAndLinearFarOut) {
  Params params;
  params.set("c", 1.0);
  auto loss = make<Loss>(Family::loss, "pseudo_huber", params);
  const torch::Tensor target = torch::tensor({1.0, 0.5, -1.0, 3.0}, f64()).view({1, 1, 2, 2});
  const torch::Tensor prediction = torch::tensor({0.5, 2.0, -3.0, 3.0}, f64()).view({1, 1, 2, 2});
  // d = [0.5, −1.5, 2, 0]: √(d² + 1) − 1
  const torch::Tensor values = loss->elementwise(target, prediction);
  const double expected[4] = {std::sqrt(1.25) - 1, std::sqrt(3.25) - 1, std::sqrt(5.0) - 1, 0.0};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(values.view({4})[i].item<double>(), expected[i], 1e-15);
  // c = 0: Song & Dhariwal's 0.00054·√D with D = 4 values per image; tiny d: ≈ d² / (2c).
  auto automatic = make<Loss>(Family::loss, "pseudo_huber");
  const double c = 0.00054 * 2;
  const torch::Tensor small = torch::full({1, 1, 2, 2}, 1e-5, f64());
  EXPECT_NEAR((*automatic)(small, torch::zeros_like(small)).item<double>(), std::sqrt(1e-10 + c * c) - c, 1e-18);
  EXPECT_NEAR((*automatic)(torch::full({1, 1, 2, 2}, 10.0, f64()), torch::zeros({1, 1, 2, 2}, f64())).item<double>(),
              10.0 - c, 1e-6);
}
