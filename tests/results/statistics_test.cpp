// Differences with their uncertainty (results/statistics.h): Welch's t-test against
// scipy.stats.ttest_ind(equal_var=False) (Debian's python3-scipy), the incomplete beta function
// against closed forms, the bootstrap against a bootstrap written here from its documented
// algorithm, and its interval's coverage.
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "results/statistics.h"
#include "test_support.h"

using namespace difflab;

TEST(Statistics, IncompleteBetaMatchesItsClosedForms) {
  // I_x(1, 1) = x, I_x(a, 1) = x^a, I_x(1, b) = 1 − (1 − x)^b, I_x(a, b) = 1 − I_{1−x}(b, a).
  for (double x : {0.01, 0.2, 0.5, 0.77, 0.999}) {
    EXPECT_NEAR(regularized_incomplete_beta(1.0, 1.0, x), x, 1e-14);
    EXPECT_NEAR(regularized_incomplete_beta(3.5, 1.0, x), std::pow(x, 3.5), 1e-14);
    EXPECT_NEAR(regularized_incomplete_beta(1.0, 7.0, x), 1.0 - std::pow(1.0 - x, 7.0), 1e-14);
    EXPECT_NEAR(regularized_incomplete_beta(2.5, 0.5, x), 1.0 - regularized_incomplete_beta(0.5, 2.5, 1.0 - x), 1e-14);
  }
}

// Welch's t and p against scipy on 60 random pairs of groups (2 to 20 values, different spreads).
// Tolerance: t is the same few float64 operations in both (1e-13 relative); p = I_x(ν/2, 1/2)
// has the prefactor exp(lgamma(a+b) − lgamma(a) − lgamma(b) + a log x + b log(1−x)), whose terms
// are at most ~50 for ν ≤ 40, so its absolute error is ~4 · 50 · 2.2e-16 ≈ 4.4e-14, a relative
// error of the same size in p; the continued fraction stops below 1e-15, and scipy's incbet is
// as accurate: 1e-12 relative leaves a margin of 20.
TEST(Statistics, WelchAgreesWithScipy) {
  if (difflab::test::shell_command("/usr/bin/python3 -c 'import scipy'").exit_code != 0)
    GTEST_SKIP() << "Debian's python3-scipy is not installed (tools/install_deps.sh --tests installs it)";
  difflab::test::TempDir dir;
  std::mt19937_64 engine(7);
  std::normal_distribution<double> normal;
  std::vector<std::pair<std::vector<double>, std::vector<double>>> cases;
  std::ofstream data(dir / "groups.txt");
  for (int c = 0; c < 60; ++c) {
    std::vector<double> a(2 + engine() % 19), b(2 + engine() % 19);
    const double spread = 0.1 + static_cast<double>(engine() % 100) / 10.0, shift = normal(engine);
    for (double& v : a) v = normal(engine);
    for (double& v : b) v = shift + spread * normal(engine);
    for (const auto* group : {&a, &b}) {
      for (double v : *group) data << fmt::format("{} ", v);
      data << "\n";
    }
    cases.emplace_back(a, b);
  }
  data.close();
  std::ofstream(dir / "welch.py") << "import sys\nfrom scipy import stats\nlines = open(sys.argv[1]).read().split('\\n')\n"
                                     "for i in range(0, len(lines) - 1, 2):\n"
                                     "    a = [float(x) for x in lines[i].split()]; b = [float(x) for x in lines[i + 1].split()]\n"
                                     "    r = stats.ttest_ind(a, b, equal_var=False)\n"
                                     "    print(repr(float(r.statistic)), repr(float(r.pvalue)))\n";
  const auto scipy = difflab::test::shell_command("/usr/bin/python3 " + (dir / "welch.py").string() + " " +
                                                  (dir / "groups.txt").string());
  ASSERT_EQ(scipy.exit_code, 0) << scipy.output;
  std::istringstream lines(scipy.output);
  double worst = 0.0;
  for (const auto& [a, b] : cases) {
    double t = 0.0, p = 0.0;
    ASSERT_TRUE(static_cast<bool>(lines >> t >> p)) << scipy.output;
    const WelchTest test = welch_test(a, b);
    EXPECT_NEAR(test.t, t, 1e-13 * std::abs(t));
    EXPECT_NEAR(test.p, p, 1e-12 * p) << "t " << t << " df " << test.df;
    worst = std::max(worst, std::abs(test.p - p) / p);
  }
  std::printf("Welch: 60 cases agree with scipy.stats.ttest_ind(equal_var=False); worst relative p error %.2e\n", worst);
  // Fewer than 2 values, or no variance: no test.
  EXPECT_TRUE(std::isnan(welch_test({1.0}, {1.0, 2.0}).p));
  EXPECT_TRUE(std::isnan(welch_test({1.0, 1.0}, {2.0, 2.0}).p));
}

namespace {

// The bootstrap of statistics.h, written again from its documentation.
std::pair<double, double> bootstrap_here(const std::vector<double>& a, const std::vector<double>& b, bool paired,
                                         int64_t resamples, uint64_t seed) {
  std::mt19937_64 engine(seed);
  const auto index = [&](size_t n) {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
    for (;;) {
      const uint64_t v = engine();
      if (v < limit) return static_cast<size_t>(v % n);
    }
  };
  std::vector<double> stats;
  for (int64_t r = 0; r < resamples; ++r) {
    if (paired) {
      double sum = 0.0;
      for (size_t i = 0; i < a.size(); ++i) {
        const size_t k = index(a.size());
        sum += a[k] - b[k];
      }
      stats.push_back(sum / static_cast<double>(a.size()));
    } else {
      double sa = 0.0, sb = 0.0;
      for (size_t i = 0; i < a.size(); ++i) sa += a[index(a.size())];
      for (size_t i = 0; i < b.size(); ++i) sb += b[index(b.size())];
      stats.push_back(sa / static_cast<double>(a.size()) - sb / static_cast<double>(b.size()));
    }
  }
  std::sort(stats.begin(), stats.end());
  const auto at = [&](double q) {
    const double position = q * static_cast<double>(stats.size() - 1);
    const size_t below = static_cast<size_t>(position);
    const size_t above = std::min(below + 1, stats.size() - 1);
    return stats[below] + (position - static_cast<double>(below)) * (stats[above] - stats[below]);
  };
  return {at((1.0 - 0.95) / 2.0), at((1.0 + 0.95) / 2.0)};  // the documented (1 ∓ level) / 2
}

std::vector<std::pair<std::string, double>> seeded(const std::vector<double>& values, int first_seed) {
  std::vector<std::pair<std::string, double>> result;
  for (size_t i = 0; i < values.size(); ++i) result.emplace_back(std::to_string(first_seed + static_cast<int>(i)), values[i]);
  return result;
}

}  // namespace

TEST(Statistics, BootstrapIsItsDocumentedAlgorithmPairedBySeed) {
  std::mt19937_64 engine(11);
  std::normal_distribution<double> normal;
  std::vector<double> a(8), b(8);
  for (size_t i = 0; i < a.size(); ++i) {
    const double seed_effect = 3.0 * normal(engine);  // shared by both groups' run of the seed
    a[i] = seed_effect + normal(engine) * 0.1 + 0.2;
    b[i] = seed_effect + normal(engine) * 0.1;
  }
  // Seeds 0..7 in both: paired, the seeds' differences resampled.
  const BootstrapInterval paired = bootstrap_difference(seeded(a, 0), seeded(b, 0), 4000, 0.95, 3);
  EXPECT_TRUE(paired.paired);
  const auto [low, high] = bootstrap_here(a, b, true, 4000, 3);
  EXPECT_EQ(paired.low, low);
  EXPECT_EQ(paired.high, high);
  // Other seeds: each group on its own; the seed effect then widens the interval a lot.
  const BootstrapInterval unpaired = bootstrap_difference(seeded(a, 0), seeded(b, 100), 4000, 0.95, 3);
  EXPECT_FALSE(unpaired.paired);
  const auto [ulow, uhigh] = bootstrap_here(a, b, false, 4000, 3);
  EXPECT_EQ(unpaired.low, ulow);
  EXPECT_EQ(unpaired.high, uhigh);
  EXPECT_NEAR(paired.difference, unpaired.difference, 1e-12);
  EXPECT_GT(unpaired.high - unpaired.low, 5.0 * (paired.high - paired.low));
  EXPECT_LT(paired.low, 0.2);
  EXPECT_GT(paired.high, 0.2);
  EXPECT_GT(paired.low, 0.0);  // the paired interval sees the 0.2 through the seeds' noise
}

// The 95% percentile interval's coverage of the true difference over 400 simulated comparisons of
// two normal groups of 20: about 0.94 (the percentile bootstrap undercovers slightly at this
// size); the binomial standard error of 400 trials is 0.011, so [0.90, 0.98] fails a broken
// interval (e.g. one of a standard deviation instead of a standard error covers ~1.0; a wrong
// quantile ~0.7) and passes the right one.
TEST(Statistics, BootstrapIntervalCoversTheTrueDifference) {
  std::mt19937_64 engine(5);
  std::normal_distribution<double> normal;
  int covered = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<double> a(20), b(20);
    for (double& v : a) v = 1.0 + normal(engine);
    for (double& v : b) v = 2.0 * normal(engine);
    const BootstrapInterval interval = bootstrap_difference(seeded(a, 0), seeded(b, 100), 1000, 0.95, trial);
    covered += interval.low <= 1.0 && 1.0 <= interval.high;
  }
  std::printf("bootstrap 95%% interval: covered the true difference in %d of 400 comparisons\n", covered);
  EXPECT_GE(covered, 360);
  EXPECT_LE(covered, 392);
}
