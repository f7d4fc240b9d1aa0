#include "results/statistics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

namespace difflab {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The continued fraction of I_x(a, b) (Numerical Recipes' betacf), modified Lentz.
double beta_continued_fraction(double a, double b, double x) {
  constexpr double tiny = 1e-300, epsilon = 1e-15;
  const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
  double c = 1.0, d = 1.0 - qab * x / qap;
  if (std::abs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < epsilon) break;
  }
  return h;
}

double mean_of(const std::vector<double>& values) {
  double sum = 0.0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

double variance_of(const std::vector<double>& values, double mean) {
  double sum = 0.0;
  for (double v : values) sum += (v - mean) * (v - mean);
  return sum / static_cast<double>(values.size() - 1);
}

// An index in [0, n): the generator's next value, the draws at or above the largest multiple of n
// rejected.
size_t draw(std::mt19937_64& engine, size_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t value = engine();
  while (value >= limit) value = engine();
  return static_cast<size_t>(value % n);
}

// numpy's default percentile: linear interpolation between the order statistics at q·(n − 1).
double quantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (position - static_cast<double>(below)) * (values[above] - values[below]);
}

}  // namespace

double regularized_incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  // The continued fraction converges fast for x < (a + 1) / (a + b + 2); the symmetry
  // I_x(a, b) = 1 − I_{1−x}(b, a) covers the rest.
  if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_continued_fraction(a, b, x) / a;
  return 1.0 - front * beta_continued_fraction(b, a, 1.0 - x) / b;
}

WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b) {
  WelchTest test{kNaN, kNaN, kNaN};
  if (a.size() < 2 || b.size() < 2) return test;
  const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  const double ma = mean_of(a), mb = mean_of(b);
  const double va = variance_of(a, ma) / na, vb = variance_of(b, mb) / nb;
  if (va + vb == 0.0) return test;
  test.t = (ma - mb) / std::sqrt(va + vb);
  test.df = (va + vb) * (va + vb) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));  // Welch–Satterthwaite
  test.p = regularized_incomplete_beta(test.df / 2.0, 0.5, test.df / (test.df + test.t * test.t));
  return test;
}

BootstrapInterval bootstrap_difference(const std::vector<std::pair<std::string, double>>& a,
                                       const std::vector<std::pair<std::string, double>>& b, int64_t resamples,
                                       double level, uint64_t seed) {
  BootstrapInterval interval{kNaN, kNaN, kNaN, false};
  if (a.empty() || b.empty() || resamples < 1) return interval;
  std::map<std::string, double> by_seed_a, by_seed_b;
  for (const auto& [s, v] : a) by_seed_a[s] = v;
  for (const auto& [s, v] : b) by_seed_b[s] = v;
  std::set<std::string> seeds_a, seeds_b;
  for (const auto& entry : by_seed_a) seeds_a.insert(entry.first);
  for (const auto& entry : by_seed_b) seeds_b.insert(entry.first);
  interval.paired = seeds_a == seeds_b && by_seed_a.size() == a.size() && by_seed_b.size() == b.size();
  std::mt19937_64 engine(seed);
  std::vector<double> statistics;
  statistics.reserve(static_cast<size_t>(resamples));
  if (interval.paired) {
    std::vector<double> differences;  // in seed order
    for (const auto& [s, v] : by_seed_a) differences.push_back(v - by_seed_b.at(s));
    interval.difference = mean_of(differences);
    for (int64_t r = 0; r < resamples; ++r) {
      double sum = 0.0;
      for (size_t i = 0; i < differences.size(); ++i) sum += differences[draw(engine, differences.size())];
      statistics.push_back(sum / static_cast<double>(differences.size()));
    }
  } else {
    std::vector<double> va, vb;
    for (const auto& entry : a) va.push_back(entry.second);
    for (const auto& entry : b) vb.push_back(entry.second);
    interval.difference = mean_of(va) - mean_of(vb);
    for (int64_t r = 0; r < resamples; ++r) {
      double sa = 0.0, sb = 0.0;
      for (size_t i = 0; i < va.size(); ++i) sa += va[draw(engine, va.size())];
      for (size_t i = 0; i < vb.size(); ++i) sb += vb[draw(engine, vb.size())];
      statistics.push_back(sa / static_cast<double>(va.size()) - sb / static_cast<double>(vb.size()));
    }
  }
  interval.low = quantile(statistics, (1.0 - level) / 2.0);
  interval.high = quantile(statistics, (1.0 + level) / 2.0);
  return interval;
}

}  // namespace difflab
