// Schedule plugins against the seed's formulas: golden values computed in float64 by an
// independent port (../shared/reference/seed_network.md), end points, unit power, monotonicity.
#include "difflab/schedule.h"
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

INSTANTIATE_TEST_SUITE_P(AllSchedules, ScheduleProperties, ::testing::Values("cosine", "linear"));

TEST(LinearSchedule, NoisePowerIsLinearInTime) {
  auto s = schedule("linear");
  Rates rates = s->rates(torch::linspace(0, 1, 101, f64()));
  torch::Tensor noise_powers = rates.noise_rates.pow(2);
  // Second differences of a linear function vanish.
  EXPECT_LT(noise_powers.diff().diff().abs().max().item<double>(), 1e-12);
  EXPECT_NEAR(noise_powers[50].item<double>(), ((1 - 0.95 * 0.95) + (1 - 0.02 * 0.02)) / 2, 1e-12);
}
