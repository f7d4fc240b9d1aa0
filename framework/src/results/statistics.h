// Differences between groups of runs with their uncertainty, for `difflab results --baseline`:
// "is MAE better than MSE here, or is it the seeds?"
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace difflab {

// The regularized incomplete beta function I_x(a, b) (Numerical Recipes §6.4: the continued
// fraction by Lentz's method, in float64, to a relative change below 1e-15 per step).
double regularized_incomplete_beta(double a, double b, double x);

// Welch's unequal-variances t-test, two-sided (Welch 1947): t = (m_a − m_b) / √(s_a²/n_a + s_b²/n_b),
// ν by the Welch–Satterthwaite equation, p = I_{ν/(ν+t²)}(ν/2, 1/2). NaN t and p when a group has
// fewer than 2 values or both variances are 0.
struct WelchTest {
  double t = 0.0, df = 0.0, p = 0.0;
};
WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b);

// The difference of means of `a` and `b` (a − b) with a percentile bootstrap confidence interval
// (Efron & Tibshirani 1993, §13.3). Paired by seed when both groups have the same seeds (each
// once): the seeds' differences are resampled; otherwise each group is resampled on its own.
// Resample r draws its indices from a std::mt19937_64 seeded with `seed`, index = next() mod n
// with the draws at or above the largest multiple of n rejected (portable across standard
// libraries); the interval's ends are the (1−level)/2 and (1+level)/2 quantiles of the
// `resamples` statistics, linearly interpolated (numpy's default percentile).
struct BootstrapInterval {
  double difference = 0.0, low = 0.0, high = 0.0;
  bool paired = false;
};
BootstrapInterval bootstrap_difference(const std::vector<std::pair<std::string, double>>& a,
                                       const std::vector<std::pair<std::string, double>>& b, int64_t resamples = 10000,
                                       double level = 0.95, uint64_t seed = 0);

}  // namespace difflab
