// Sampler plugins: exact recovery with an oracle denoiser, the seed's update on hand-computed
// values, and the statistics of DDPM's stochastic step (Ho et al. 2020, eq. 7).
#include <map>

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

namespace {

const std::vector<std::string> kAllSamplers = {"ddim", "ddpm", "second_order", "adams_bashforth",
                                               "dpm_solver_pp", "euler", "heun"};

// Gaussian data x₀ ~ N(μ, σ_d²) per value: the exact denoiser is the posterior mean
// E[x₀ | x] = μ + s·σ_d² / (s²σ_d² + n²) · (x − s·μ), and the probability-flow ODE is solved in
// closed form, x(t) = s(t)·μ + √(s(t)²σ_d² + n(t)²)·z with z fixed by x(1).
constexpr double kMean = 0.3, kDeviation = 0.5;

Denoiser gaussian_denoiser(int64_t* evaluations = nullptr) {
  return [evaluations](const torch::Tensor& x, const torch::Tensor& n, const torch::Tensor& s) {
    if (evaluations != nullptr) ++*evaluations;
    const double variance = kDeviation * kDeviation;
    torch::Tensor pred_images = kMean + s * variance / (s * s * variance + n * n) * (x - s * kMean);
    return Denoised{(x - s * pred_images) / n, pred_images};
  };
}

// The exact state on the ODE's path where the rates are (s, n), from the initial noise at t = 1.
torch::Tensor exact_state(const Schedule& schedule, const torch::Tensor& initial_noise, const torch::Tensor& s,
                          const torch::Tensor& n) {
  const double variance = kDeviation * kDeviation;
  const double s1 = rate(schedule, 1.0, false), n1 = rate(schedule, 1.0, true);
  const torch::Tensor z = (initial_noise - s1 * kMean) / std::sqrt(s1 * s1 * variance + n1 * n1);
  return s * kMean + torch::sqrt(s * s * variance + n * n) * z;
}

// How far a sampler's path is from the exact one at its last point on the path (the input of its
// last network evaluation; for second_order the one before, the last being its predictor).
double ode_error(const std::string& name, int64_t steps, const std::string& key = "", ParamValue value = 0.0) {
  auto schedule = cosine();
  torch::manual_seed(11);
  const torch::Tensor initial_noise = torch::randn({1, 1, 16, 16}, f64());
  std::vector<double> errors;
  Denoiser recording = [&](const torch::Tensor& x, const torch::Tensor& n, const torch::Tensor& s) {
    errors.push_back((x - exact_state(*schedule, initial_noise, s, n)).abs().max().item<double>());
    return gaussian_denoiser()(x, n, s);
  };
  sampler(name, key, value)->sample(recording, initial_noise, *schedule, steps);
  return errors[errors.size() - (name == "second_order" ? 2 : 1)];
}

}  // namespace

class EverySampler : public ::testing::TestWithParam<std::string> {};

TEST_P(EverySampler, RecoversTheCleanImageWithAnOracleDenoiser) {
  torch::manual_seed(5);
  OracleDenoiser oracle{torch::randn({2, 3, 8, 8}, f64())};
  for (int64_t steps : {1, 3, 12}) {
    torch::Tensor images =
        sampler(GetParam())->sample(oracle.denoiser(), torch::randn({2, 3, 8, 8}, f64()), *cosine(), steps);
    EXPECT_LT((images - oracle.clean_images).abs().max().item<double>(), 1e-10) << GetParam() << ", " << steps;
  }
}

class DeterministicSampler : public ::testing::TestWithParam<std::string> {};

TEST_P(DeterministicSampler, ConvergesToTheExactOdeSolutionOnGaussianData) {
  const double coarse = ode_error(GetParam(), 16), fine = ode_error(GetParam(), 64);
  EXPECT_LT(fine, coarse / 3) << GetParam() << ": " << coarse << " -> " << fine;
  EXPECT_LT(fine, 0.03) << GetParam();
}

TEST_P(EverySampler, CountsItsNetworkEvaluations) {
  int64_t evaluations = 0;
  sampler(GetParam())->sample(gaussian_denoiser(&evaluations), torch::randn({1, 1, 4, 4}, f64()), *cosine(), 6);
  const std::map<std::string, int64_t> expected = {{"ddim", 6},  {"ddpm", 6},  {"second_order", 12},
                                                   {"adams_bashforth", 6}, {"dpm_solver_pp", 6}, {"euler", 6},
                                                   {"heun", 11}};
  EXPECT_EQ(evaluations, expected.at(GetParam())) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Samplers, EverySampler, ::testing::ValuesIn(kAllSamplers));
INSTANTIATE_TEST_SUITE_P(Samplers, DeterministicSampler,
                         ::testing::Values("ddim", "second_order", "adams_bashforth", "dpm_solver_pp", "euler",
                                           "heun"));  // all but the stochastic ddpm: they solve the ODE

TEST(HigherOrderSamplers, ConvergeWithTheirOrder) {
  // Four times the steps: error / 4 for first order (DDIM, Euler), / 16 for second order.
  for (const char* name : {"ddim", "euler"}) {
    const double ratio = ode_error(name, 16) / ode_error(name, 64);
    EXPECT_GT(ratio, 3.0) << name;
    EXPECT_LT(ratio, 5.5) << name;
  }
  for (const char* name : {"second_order", "heun", "dpm_solver_pp"})
    EXPECT_GT(ode_error(name, 16) / ode_error(name, 64), 12.0) << name;
  // Adams–Bashforth: every order better than the one below (order 1 is DDIM).
  EXPECT_NEAR(ode_error("adams_bashforth", 16, "order", int64_t{1}), ode_error("ddim", 16), 1e-12);
  double lower = ode_error("ddim", 16);
  for (int64_t order = 2; order <= 4; ++order) {  // order 5 is limited by its order-1..4 start
    const double error = ode_error("adams_bashforth", 16, "order", order);
    EXPECT_LT(error, lower / 2) << "order " << order;
    lower = error;
  }
}

TEST(HigherOrderSamplers, BeatFirstOrderAtTheSameNumberOfSteps) {
  const double ddim = ode_error("ddim", 16);
  for (const char* name : {"second_order", "adams_bashforth", "dpm_solver_pp"})
    EXPECT_LT(ode_error(name, 16), ddim / 3) << name << " vs ddim " << ddim;
  EXPECT_LT(ode_error("heun", 16), ode_error("euler", 16) / 3);
  // The generic second-order step with α = 1 is EDM's Heun on the schedule's own grid.
  EXPECT_NEAR(ode_error("second_order", 16), ode_error("heun", 16, "karras_sigmas", false), 1e-12);
}

TEST(EulerSampler, OnTheSchedulesGridIsDdim) {
  // DDIM is Euler's method on the ODE in x̃ = x/s and σ = n/s (Karras et al. 2022, sec. 4).
  torch::manual_seed(12);
  const torch::Tensor initial_noise = torch::randn({2, 1, 8, 8}, f64());
  const torch::Tensor ddim = sampler("ddim")->sample(gaussian_denoiser(), initial_noise, *cosine(), 7);
  const torch::Tensor euler =
      sampler("euler", "karras_sigmas", false)->sample(gaussian_denoiser(), initial_noise, *cosine(), 7);
  EXPECT_LT((ddim - euler).abs().max().item<double>(), 1e-12);
}

namespace {
// A fixed, non-oracle denoiser for hand computation: ε̂ = 0.5·x, x̂₀ from the seed's denoise().
Denoised half(const torch::Tensor& x, const torch::Tensor& n, const torch::Tensor& s) {
  torch::Tensor pred_noises = 0.5 * x;
  return Denoised{pred_noises, (x - n * pred_noises) / s};
}
double half_image(double x, double n, double s) { return (x - n * 0.5 * x) / s; }
}  // namespace

TEST(SecondOrderSampler, FollowsTheRungeKuttaUpdateOnHandComputedValues) {
  // Two steps (t = 1 -> 0.5 -> 0) with alpha = 0.5: the second evaluation at t − Δt/2.
  auto schedule = cosine();
  auto s = [&](double t) { return rate(*schedule, t, false); };
  auto n = [&](double t) { return rate(*schedule, t, true); };
  double x = 1.0, pred_image = 0.0;
  for (double t : {1.0, 0.5}) {
    const double e1 = 0.5 * x, i1 = half_image(x, n(t), s(t));
    const double xa = s(t - 0.25) * i1 + n(t - 0.25) * e1, ea = 0.5 * xa;
    const double e = (1 - 1.0) * e1 + 1.0 * ea;  // 1/(2α) = 1
    pred_image = (x - n(t) * e) / s(t);
    x = s(t - 0.5) * pred_image + n(t - 0.5) * e;
  }
  torch::Tensor images =
      sampler("second_order", "alpha", 0.5)->sample(half, torch::ones({1, 1, 1, 1}, f64()), *schedule, 2);
  EXPECT_NEAR(images.item<double>(), pred_image, 1e-12);
}

TEST(AdamsBashforthSampler, CombinesNoiseEstimatesWithItsCoefficients) {
  // Three steps with order 2: ε_1 = ε̂_1, then (3·ε̂_2 − ε̂_1)/2, then (3·ε̂_3 − ε̂_2)/2.
  auto schedule = cosine();
  auto s = [&](double t) { return rate(*schedule, t, false); };
  auto n = [&](double t) { return rate(*schedule, t, true); };
  double x = 1.0, pred_image = 0.0, previous = 0.0;
  int step = 0;
  for (double t : {1.0, 2.0 / 3, 1.0 / 3}) {
    const double estimate = 0.5 * x;
    const double e = step++ == 0 ? estimate : 1.5 * estimate - 0.5 * previous;
    previous = estimate;
    pred_image = (x - n(t) * e) / s(t);
    x = s(t - 1.0 / 3) * pred_image + n(t - 1.0 / 3) * e;
  }
  torch::Tensor images =
      sampler("adams_bashforth", "order", int64_t{2})->sample(half, torch::ones({1, 1, 1, 1}, f64()), *schedule, 3);
  EXPECT_NEAR(images.item<double>(), pred_image, 1e-12);
}

TEST(DpmSolverPlusPlus, FollowsAlgorithm2OnHandComputedValues) {
  // Three steps: a first-order step, a 2M step, then the last evaluation's x̂₀.
  auto schedule = cosine();
  auto s = [&](double t) { return rate(*schedule, t, false); };
  auto n = [&](double t) { return rate(*schedule, t, true); };
  auto lambda = [&](double t) { return std::log(s(t) / n(t)); };
  const double t0 = 1.0, t1 = 2.0 / 3, t2 = 1.0 / 3;
  double x = 1.0;
  const double d0 = half_image(x, n(t0), s(t0));
  const double h1 = lambda(t1) - lambda(t0);
  x = n(t1) / n(t0) * x - s(t1) * std::expm1(-h1) * d0;
  const double d1 = half_image(x, n(t1), s(t1));
  const double h2 = lambda(t2) - lambda(t1), r = h1 / h2;
  const double derivative = (1 + 1 / (2 * r)) * d1 - 1 / (2 * r) * d0;
  x = n(t2) / n(t1) * x - s(t2) * std::expm1(-h2) * derivative;
  torch::Tensor images = sampler("dpm_solver_pp")->sample(half, torch::ones({1, 1, 1, 1}, f64()), *schedule, 3);
  EXPECT_NEAR(images.item<double>(), half_image(x, n(t2), s(t2)), 1e-12);
}

TEST(HeunSampler, FollowsEdmAlgorithm1OnHandComputedValues) {
  // Two steps on EDM's σ: σ_0 = σ(t=1), σ_1 = σ(t=0) (ρ-spacing with N = 2 hits the ends).
  auto schedule = cosine();
  const double sigma0 = rate(*schedule, 1.0, true) / rate(*schedule, 1.0, false);
  const double sigma1 = rate(*schedule, 0.0, true) / rate(*schedule, 0.0, false);
  auto denoise = [](double scaled, double sigma) {  // D(x̃; σ) through `half` in VP form
    const double s = 1 / std::sqrt(1 + sigma * sigma), n = sigma * s;
    return half_image(s * scaled, n, s);
  };
  const double x0 = 1.0 * std::sqrt(1 + sigma0 * sigma0);  // x̃ = x / s
  const double d0 = (x0 - denoise(x0, sigma0)) / sigma0;
  const double euler = x0 + (sigma1 - sigma0) * d0;
  const double d1 = (euler - denoise(euler, sigma1)) / sigma1;
  const double heun = x0 + (sigma1 - sigma0) * 0.5 * (d0 + d1);
  EXPECT_NEAR(sampler("heun")->sample(half, torch::ones({1, 1, 1, 1}, f64()), *schedule, 2).item<double>(),
              denoise(heun, sigma1), 1e-12);
  EXPECT_NEAR(sampler("euler")->sample(half, torch::ones({1, 1, 1, 1}, f64()), *schedule, 2).item<double>(),
              denoise(euler, sigma1), 1e-12);
}
