// Sampler plugins: exact recovery with an oracle denoiser, the seed's update on hand-computed
// values, and the statistics of DDPM's stochastic step (Ho et al. 2020, eq. 7).
#include "difflab/sampler.h"
#include "difflab/schedule.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::f64;
using difflab::test::make;

namespace {

std::shared_ptr<Schedule> cosine() { return make<Schedule>(Family::schedule, "cosine"); }

std::shared_ptr<Sampler> sampler(const std::string& name, const std::string& key = "",
                                 ParamValue value = 0.0) {
  Params params;
  if (!key.empty()) params.set(key, value);
  return make<Sampler>(Family::sampler, name, params);
}

// Knows the clean images: returns them, and the noise that explains the noisy images exactly.
struct OracleDenoiser {
  torch::Tensor clean_images;
  std::vector<torch::Tensor> seen_noisy_images = {};
  std::vector<torch::Tensor> seen_pred_noises = {};

  Denoiser denoiser() {
    return [this](const torch::Tensor& noisy_images, const torch::Tensor& noise_rates,
                  const torch::Tensor& signal_rates) {
      torch::Tensor pred_noises = (noisy_images - signal_rates * clean_images) / noise_rates;
      seen_noisy_images.push_back(noisy_images);
      seen_pred_noises.push_back(pred_noises);
      return Denoised{pred_noises, clean_images};
    };
  }
};

double rate(const Schedule& schedule, double t, bool noise) {
  Rates rates = schedule.rates(torch::full({1}, t, f64()));
  return (noise ? rates.noise_rates : rates.signal_rates).item<double>();
}

}  // namespace

TEST(DdimSampler, RecoversImageWithOracleDenoiser) {
  torch::manual_seed(1);
  OracleDenoiser oracle{torch::randn({4, 3, 8, 8}, f64())};
  torch::Tensor initial_noise = torch::randn({4, 3, 8, 8}, f64());
  for (int64_t steps : {1, 5, 20}) {
    torch::Tensor images = sampler("ddim")->sample(oracle.denoiser(), initial_noise, *cosine(), steps);
    EXPECT_LT((images - oracle.clean_images).abs().max().item<double>(), 1e-12) << steps << " steps";
  }
}

TEST(DdimSampler, DeterministicPathKeepsTheInitialNoise) {
  // With eta = 0 and an oracle, every step re-mixes the same noise: x_t = s_t·x₀ + n_t·ε.
  torch::manual_seed(2);
  OracleDenoiser oracle{torch::randn({2, 1, 4, 4}, f64())};
  torch::Tensor initial_noise = torch::randn({2, 1, 4, 4}, f64());
  sampler("ddim")->sample(oracle.denoiser(), initial_noise, *cosine(), 10);
  ASSERT_EQ(oracle.seen_pred_noises.size(), 10u);
  // The first step reads x_1 = ε as s·x₀ + n·ε̂; every later step must find that same ε̂.
  for (size_t step = 1; step < oracle.seen_pred_noises.size(); ++step)
    EXPECT_LT((oracle.seen_pred_noises[step] - oracle.seen_pred_noises[0]).abs().max().item<double>(),
              1e-12);
}

TEST(DdimSampler, FollowsTheSeedsUpdateOnHandComputedValues) {
  // A fixed (non-oracle) denoiser: pred_noises = 0.5·x, pred_images from the seed's denoise().
  // Two steps from x = 1: t = 1 -> 0.5 -> returns pred_images at t = 0.5.
  auto schedule = cosine();
  Denoiser half = [](const torch::Tensor& x, const torch::Tensor& n, const torch::Tensor& s) {
    torch::Tensor pred_noises = 0.5 * x;
    return Denoised{pred_noises, (x - n * pred_noises) / s};
  };
  torch::Tensor images =
      sampler("ddim")->sample(half, torch::ones({1, 1, 1, 1}, f64()), *schedule, 2);
  const double n1 = rate(*schedule, 1.0, true), s1 = rate(*schedule, 1.0, false);
  const double n2 = rate(*schedule, 0.5, true), s2 = rate(*schedule, 0.5, false);
  const double x1 = 1.0;
  const double pred_noise1 = 0.5 * x1, pred_image1 = (x1 - n1 * pred_noise1) / s1;
  const double x2 = s2 * pred_image1 + n2 * pred_noise1;  // the seed's next_noisy_images
  const double pred_image2 = (x2 - n2 * 0.5 * x2) / s2;
  EXPECT_NEAR(images.item<double>(), pred_image2, 1e-12);
}

TEST(DdimSampler, WithEtaOneIsDdpmAncestralSampling) {
  // DDIM paper, sec. 4.1: eta = 1 gives the DDPM posterior (eq. 16); same draws, same images.
  OracleDenoiser oracle{torch::randn({2, 1, 8, 8}, f64())};
  Denoiser approximate = [&](const torch::Tensor& x, const torch::Tensor& n, const torch::Tensor& s) {
    torch::Tensor pred_noises = 0.9 * (x - s * oracle.clean_images) / n;
    return Denoised{pred_noises, (x - n * pred_noises) / s};
  };
  torch::Tensor initial_noise = torch::randn({2, 1, 8, 8}, f64());
  torch::manual_seed(7);
  torch::Tensor ddim = sampler("ddim", "eta", 1.0)->sample(approximate, initial_noise, *cosine(), 6);
  torch::manual_seed(7);
  torch::Tensor ddpm = sampler("ddpm")->sample(approximate, initial_noise, *cosine(), 6);
  EXPECT_LT((ddim - ddpm).abs().max().item<double>(), 1e-12);
}

class DdpmStep : public ::testing::TestWithParam<std::string> {};

TEST_P(DdpmStep, HasThePosteriorMeanAndVariance) {
  // One stochastic step from t = 1 to t = 0.5 with an oracle: x_s = μ̃ + σ·z, where
  // μ̃ = s_s·x₀ + sqrt(n_s² − β̃)·ε̂ and σ² = β̃ (small) or β (large).
  const bool large = GetParam() == "large";
  auto schedule = cosine();
  torch::manual_seed(3);
  OracleDenoiser oracle{torch::randn({1, 1, 256, 256}, f64())};
  torch::Tensor initial_noise = torch::randn({1, 1, 256, 256}, f64());
  sampler("ddpm", "variance", GetParam())->sample(oracle.denoiser(), initial_noise, *schedule, 2);
  ASSERT_EQ(oracle.seen_noisy_images.size(), 2u);

  const double n_t = rate(*schedule, 1.0, true), s_t = rate(*schedule, 1.0, false);
  const double n_s = rate(*schedule, 0.5, true), s_s = rate(*schedule, 0.5, false);
  const double beta = 1.0 - (s_t * s_t) / (s_s * s_s);
  const double posterior_variance = (n_s * n_s) / (n_t * n_t) * beta;
  const double variance = large ? beta : posterior_variance;
  torch::Tensor mean = s_s * oracle.clean_images +
                       std::sqrt(n_s * n_s - posterior_variance) * oracle.seen_pred_noises[0];
  torch::Tensor residual = oracle.seen_noisy_images[1] - mean;  // σ·z
  const double samples = static_cast<double>(residual.numel());
  EXPECT_NEAR(residual.mean().item<double>(), 0.0, 4.0 * std::sqrt(variance / samples));
  // Standard error of a sample variance: σ²·sqrt(2 / N).
  EXPECT_NEAR(residual.var().item<double>(), variance, 4.0 * variance * std::sqrt(2.0 / samples));
  EXPECT_GT(beta, 1.05 * posterior_variance);  // the two variants are distinguishable here
}

INSTANTIATE_TEST_SUITE_P(Variances, DdpmStep, ::testing::Values("small", "large"));

TEST(DdpmSampler, ReturnsTheCleanImageWithOracleDenoiser) {
  torch::manual_seed(4);
  OracleDenoiser oracle{torch::randn({2, 3, 8, 8}, f64())};
  torch::Tensor images = sampler("ddpm")->sample(oracle.denoiser(), torch::randn({2, 3, 8, 8}, f64()),
                                                 *cosine(), 10);
  EXPECT_LT((images - oracle.clean_images).abs().max().item<double>(), 1e-12);
}
