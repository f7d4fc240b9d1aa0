// Schedule plugins against the seed's formulas: golden values computed in float64 by an
// independent port (../shared/reference/seed_network.md), end points, unit power, monotonicity.
#include <cmath>

#include "difflab/schedule.h"
#include "plugin_host/registry.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::f64;
using difflab::test::make;

namespace {

std::shared_ptr<Schedule> schedule(const std::string& name, double min_signal_rate = 0.02,
                                   double max_signal_rate = 0.95) {
  Params params;
  params.set("min_signal_rate", min_signal_rate);
  params.set("max_signal_rate", max_signal_rate);
  return make<Schedule>(Family::schedule, name, params);
}

}  // namespace

TEST(CosineSchedule, MatchesSeedGoldenValuesInFloat64) {
  // diffusion_time -> (noise_rate, signal_rate), from seed_network.md; tolerance 1e-6 in float64.
  const double expected[5][3] = {{0.0, 0.312249899920, 0.950000000000},
                                 {0.25, 0.585801835835, 0.810454322669},
                                 {0.5, 0.804110515941, 0.594479838307},
                                 {0.75, 0.946588633195, 0.322443730761},
                                 {1.0, 0.999799979996, 0.020000000000}};
  auto cosine = schedule("cosine");
  for (const auto& row : expected) {
    Rates rates = cosine->rates(torch::full({1, 1, 1, 1}, row[0], f64()));
    EXPECT_EQ(rates.noise_rates.scalar_type(), torch::kFloat64);
    EXPECT_NEAR(rates.noise_rates.item<double>(), row[1], 1e-9) << "t = " << row[0];
    EXPECT_NEAR(rates.signal_rates.item<double>(), row[2], 1e-9) << "t = " << row[0];
  }
}

class ScheduleProperties : public ::testing::TestWithParam<std::string> {};

TEST_P(ScheduleProperties, EndPointsAreTheSignalRates) {
  auto s = schedule(GetParam(), 0.05, 0.9);
  Rates start = s->rates(torch::zeros({1}, f64()));
  Rates end = s->rates(torch::ones({1}, f64()));
  EXPECT_NEAR(start.signal_rates.item<double>(), 0.9, 1e-12);
  EXPECT_NEAR(end.signal_rates.item<double>(), 0.05, 1e-12);
  EXPECT_NEAR(start.noise_rates.item<double>(), std::sqrt(1 - 0.81), 1e-12);
  EXPECT_NEAR(end.noise_rates.item<double>(), std::sqrt(1 - 0.0025), 1e-12);
}

TEST_P(ScheduleProperties, SquaredRatesSumToOne) {
  auto s = schedule(GetParam());
  Rates rates = s->rates(torch::linspace(0, 1, 1001, f64()));
  torch::Tensor power = rates.noise_rates.pow(2) + rates.signal_rates.pow(2);
  EXPECT_LT((power - 1).abs().max().item<double>(), 1e-12);
}

TEST_P(ScheduleProperties, NoiseRisesAndSignalFallsWithTime) {
  auto s = schedule(GetParam());
  Rates rates = s->rates(torch::linspace(0, 1, 1001, f64()));
  EXPECT_GT(rates.noise_rates.diff().min().item<double>(), 0.0);
  EXPECT_LT(rates.signal_rates.diff().max().item<double>(), 0.0);
}

TEST_P(ScheduleProperties, KeepsTheShapeAndDtypeOfDiffusionTimes) {
  auto s = schedule(GetParam());
  Rates rates = s->rates(torch::rand({7, 1, 1, 1}));
  EXPECT_EQ(rates.noise_rates.sizes(), torch::IntArrayRef({7, 1, 1, 1}));
  EXPECT_EQ(rates.signal_rates.scalar_type(), torch::kFloat32);
}

INSTANTIATE_TEST_SUITE_P(AllSchedules, ScheduleProperties,
                         ::testing::Values("cosine", "linear", "log_snr_linear", "sigmoid", "log_noise_linear",
                                           "log_signal_linear", "noise_step_linear", "signal_step_linear"));

namespace {

// The noise power P(t) of each schedule, in float64 from the formulas (clear-diffusion-keras's
// schedule.py; VDM for log-SNR; Chen 2023 Algorithm 1 for sigmoid), with P0 = P(0), P1 = P(1).
double expected_noise_power(const std::string& name, double t, double p0, double p1) {
  const double s0 = 1 - p0, s1 = 1 - p1;
  if (name == "linear") return p0 + t * (p1 - p0);
  if (name == "cosine") {
    const double a0 = std::asin(std::sqrt(p0)), a1 = std::asin(std::sqrt(p1));
    return std::pow(std::sin(a0 + t * (a1 - a0)), 2);
  }
  if (name == "log_snr_linear") {  // λ = log(s²/n²) linear in t; P = 1 / (1 + e^λ)
    const double l0 = std::log(s0 / p0), l1 = std::log(s1 / p1);
    return 1 / (1 + std::exp(l0 + t * (l1 - l0)));
  }
  if (name == "log_noise_linear") return p0 * std::pow(p1 / p0, t);
  if (name == "log_signal_linear") return 1 - s0 * std::pow(s1 / s0, t);
  if (name == "noise_step_linear") return p1 * std::pow(p0 / p1, (1 - t) * (1 - t));
  if (name == "signal_step_linear") return 1 - s0 * std::pow(s1 / s0, t * t);
  if (name == "sigmoid") {  // start -3, end 3, tau 1
    auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
    const double g = (sig(3) - sig(-3 + 6 * t)) / (sig(3) - sig(-3));
    return p1 - (p1 - p0) * g;
  }
  return NAN;
}

}  // namespace

TEST_P(ScheduleProperties, NoisePowerFollowsItsFormulaInFloat64) {
  const std::string name = GetParam();
  const double p0 = 1 - 0.95 * 0.95, p1 = 1 - 0.02 * 0.02;
  Rates rates = schedule(name)->rates(torch::linspace(0, 1, 11, f64()));
  for (int i = 0; i <= 10; ++i)
    EXPECT_NEAR(rates.noise_rates[i].item<double>() * rates.noise_rates[i].item<double>(),
                expected_noise_power(name, i / 10.0, p0, p1), 1e-12)
        << name << " t = " << i / 10.0;
}

TEST_P(ScheduleProperties, LogSnrEndPointsAreHonoured) {
  Params params;
  params.set("endpoints", std::string("log_snr"));
  params.set("start_log_snr", 3.0);
  params.set("end_log_snr", -6.0);
  auto s = make<Schedule>(Family::schedule, GetParam(), params);
  auto log_snr = [&](double t) {
    Rates rates = s->rates(torch::full({1}, t, f64()));
    return 2 * std::log(rates.signal_rates.item<double>() / rates.noise_rates.item<double>());
  };
  EXPECT_NEAR(log_snr(0), 3.0, 1e-9);
  EXPECT_NEAR(log_snr(1), -6.0, 1e-9);
  EXPECT_GT(log_snr(0.3), log_snr(0.6));
}

TEST(LogSnrLinearSchedule, LogSnrIsLinearInTime) {
  Rates rates = schedule("log_snr_linear")->rates(torch::linspace(0, 1, 101, f64()));
  torch::Tensor log_snrs = 2 * torch::log(rates.signal_rates / rates.noise_rates);
  EXPECT_LT(log_snrs.diff().diff().abs().max().item<double>(), 1e-10);
}

TEST(KarrasSchedule, SigmasFollowEdmEquation5) {
  // EDM eq. 5 with σ_min 0.002, σ_max 80, ρ 7: σ_i for i = 0..N-1 over N = 5 steps, reversed in t.
  auto karras = make<Schedule>(Family::schedule, "karras");
  const double low = std::pow(0.002, 1 / 7.0), high = std::pow(80.0, 1 / 7.0);
  for (int i = 0; i < 5; ++i) {
    const double t = 1 - i / 4.0;  // step i of the sampler
    const double sigma = std::pow(high + i / 4.0 * (low - high), 7);
    Rates rates = karras->rates(torch::full({1}, t, f64()));
    EXPECT_NEAR(rates.noise_rates.item<double>() / rates.signal_rates.item<double>(), sigma, 1e-9 * sigma);
    EXPECT_NEAR(std::pow(rates.noise_rates.item<double>(), 2) + std::pow(rates.signal_rates.item<double>(), 2), 1,
                1e-12);
  }
}

TEST(ScheduleValidation, EndPointsAreCheckedPerForm) {
  const PluginInfo& info = difflab::test::registry().get(Family::schedule, "log_noise_linear");
  Params params;
  for (const auto& spec : info.schema) params.set(spec.name, spec.default_value);
  EXPECT_TRUE(info.validate(params).key.empty());
  params.set("max_signal_rate", 1.0);
  EXPECT_EQ(info.validate(params).key, "max_signal_rate");  // log of zero noise
  params.set("endpoints", std::string("log_snr"));
  params.set("start_log_snr", -8.0);
  EXPECT_EQ(info.validate(params).key, "start_log_snr");
}

TEST(LinearSchedule, NoisePowerIsLinearInTime) {
  auto s = schedule("linear");
  Rates rates = s->rates(torch::linspace(0, 1, 101, f64()));
  torch::Tensor noise_powers = rates.noise_rates.pow(2);
  // Second differences of a linear function vanish.
  EXPECT_LT(noise_powers.diff().diff().abs().max().item<double>(), 1e-12);
  EXPECT_NEAR(noise_powers[50].item<double>(), ((1 - 0.95 * 0.95) + (1 - 0.02 * 0.02)) / 2, 1e-12);
}
