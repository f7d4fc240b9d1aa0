// The tree-structured Parzen estimator, step for step as Optuna 3.1 computes it
// (optuna/samplers/_tpe/sampler.py, parzen_estimator.py, _truncnorm.py); see tpe.h.
#include "strategy/samplers/tpe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace difflab::tpe {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kSqrt2 = 1.41421356237309504880;
const double kLogSqrt2Pi = 0.5 * std::log(2.0 * M_PI);
constexpr double kEps = 1e-12;
constexpr double kSigma0Magnitude = 0.2;  // Optuna's SIGMA0_MAGNITUDE: BOHB's bandwidth factor

// Φ(a), computed where it does not cancel (Optuna's _ndtr_single).
double ndtr(double a) {
  const double x = a / kSqrt2;
  if (x < -1.0 / kSqrt2) return 0.5 * std::erfc(-x);
  if (x < 1.0 / kSqrt2) return 0.5 + 0.5 * std::erf(x);
  return 1.0 - 0.5 * std::erfc(x);
}

// log(exp(p) - exp(q)) for p > q.
double log_diff(double log_p, double log_q) { return log_p + std::log1p(-std::exp(log_q - log_p)); }

double log_add(double a, double b) {  // numpy's logaddexp
  if (a == b) return a + std::log(2.0);
  const double high = std::max(a, b), low = std::min(a, b);
  return high + std::log1p(std::exp(low - high));
}

double bisect_log_ndtr(double target) {  // Optuna's _ndtri_exp_single: x with log Φ(x) = target
  double a = -100.0, b = 100.0, m = 0.0;
  if (log_ndtr(a) > target) std::swap(a, b);
  for (int i = 0; i < 100; ++i) {
    m = (a + b) / 2.0;
    if (log_ndtr(m) < target) a = m;
    else b = m;
  }
  return m;
}

bool numeric(const Axis& axis) { return axis.kind != Axis::Kind::choice; }

// A draw from `weights` (numpy's RandomState.choice with p: the first index whose cumulative sum
// exceeds a uniform draw).
size_t draw_index(const std::vector<double>& weights, double u) {
  double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  double cumulative = 0.0;
  for (size_t i = 0; i < weights.size(); ++i) {
    cumulative += weights[i] / total;
    if (u < cumulative) return i;
  }
  return weights.size() - 1;
}

// numpy's round: half to even (the default rounding mode).
double round_even(double value) { return std::nearbyint(value); }

}  // namespace


Rank rank_of(const Observation& observation, bool maximize) {
  const double sign = maximize ? -1.0 : 1.0;
  const double value = std::isnan(observation.value) ? kInf : sign * observation.value;
  switch (observation.state) {
    case Observation::State::complete: return {-kInf, value};
    case Observation::State::pruned:
      if (observation.step <= 0) return {1.0, 0.0};
      return {-static_cast<double>(observation.step), value};
    case Observation::State::running: return {kInf, kInf};
  }
  return {kInf, kInf};
}

int64_t below_count(int64_t n) {
  // min(⌈0.1 n⌉, 25), in integers: ⌈n/10⌉.
  return std::min<int64_t>((n + 9) / 10, 25);
}

std::vector<double> ramp_weights(int64_t n) {
  if (n <= 0) return {};
  if (n < 25) return std::vector<double>(static_cast<size_t>(n), 1.0);
  // numpy.linspace(1/n, 1, n - 25): start + i * step, the last exactly 1.
  const int64_t ramp = n - 25;
  std::vector<double> weights;
  weights.reserve(static_cast<size_t>(n));
  const double start = 1.0 / static_cast<double>(n);
  const double step = ramp > 1 ? (1.0 - start) / static_cast<double>(ramp - 1) : 0.0;
  for (int64_t i = 0; i < ramp; ++i) weights.push_back(i == ramp - 1 && ramp > 1 ? 1.0 : start + static_cast<double>(i) * step);
  weights.insert(weights.end(), 25, 1.0);
  return weights;
}

Split split(const std::vector<Rank>& ranks, int64_t n_below) {
  std::vector<size_t> order(ranks.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // numpy sorts NaN last; ranks carry no NaN (rank_of maps it to +inf).
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (ranks[a].first != ranks[b].first) return ranks[a].first < ranks[b].first;
    return ranks[a].second < ranks[b].second;
  });
  const size_t k = std::min(order.size(), static_cast<size_t>(std::max<int64_t>(n_below, 0)));
  Split result;
  result.below.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
  result.above.assign(order.begin() + static_cast<std::ptrdiff_t>(k), order.end());
  std::sort(result.below.begin(), result.below.end());
  std::sort(result.above.begin(), result.above.end());
  return result;
}

double log_ndtr(double a) {
  if (a > 6.0) return -ndtr(-a);  // log(1 - ε) ≈ -ε
  if (a > -20.0) return std::log(ndtr(a));
  // The asymptotic series of log Φ(a) for a → -∞ (Abramowitz & Stegun 26.2.12), summed until
  // it stops changing.
  const double log_lhs = -0.5 * a * a - std::log(-a) - 0.5 * std::log(2.0 * M_PI);
  double last_total = 0.0, right_hand_side = 1.0, numerator = 1.0, denominator_factor = 1.0;
  const double denominator_constant = 1.0 / (a * a);
  double sign = 1.0;
  for (int i = 1; std::abs(last_total - right_hand_side) > std::numeric_limits<double>::epsilon(); ++i) {
    last_total = right_hand_side;
    sign = -sign;
    denominator_factor *= denominator_constant;
    numerator *= 2.0 * i - 1.0;
    right_hand_side += sign * numerator * denominator_factor;
  }
  return log_lhs + std::log(right_hand_side);
}

double log_gauss_mass(double a, double b) {
  // Computed in the left tail, where it is accurate; the right tail by symmetry; the middle as
  // log(1 - Φ(a) - Φ(-b)), which does not cancel as the mass nears 1.
  if (b <= 0.0) return log_diff(log_ndtr(b), log_ndtr(a));
  if (a > 0.0) return log_diff(log_ndtr(-a), log_ndtr(-b));
  return std::log1p(-(0.5 + 0.5 * std::erf(a / kSqrt2)) - (0.5 + 0.5 * std::erf(-b / kSqrt2)));
}

double truncated_normal_quantile(double q, double a, double b) {
  if (a == b) return std::numeric_limits<double>::quiet_NaN();
  if (q == 0.0) return a;
  if (q == 1.0) return b;
  if (a < 0.0) return bisect_log_ndtr(log_add(log_ndtr(a), std::log(q) + log_gauss_mass(a, b)));
  return -bisect_log_ndtr(log_add(log_ndtr(-b), std::log1p(-q) + log_gauss_mass(a, b)));
}

ParzenEstimator::ParzenEstimator(const std::vector<std::vector<double>>& observations, const std::vector<Axis>& space,
                                 const Settings& settings)
    : space_(space) {
  if (observations.size() != space.size()) throw std::invalid_argument("tpe: one row of observations per axis");
  const size_t n = observations.empty() ? 0 : observations[0].size();
  const bool prior = settings.consider_prior || n == 0;
  // The components' weights: the ramp, then the prior's, normalised (_calculate_weights).
  weights_ = ramp_weights(static_cast<int64_t>(n));
  if (prior) weights_.push_back(settings.prior_weight);
  const double total = std::accumulate(weights_.begin(), weights_.end(), 0.0);
  for (double& weight : weights_) weight /= total;
  const size_t components = n + (prior ? 1 : 0);
  // Scott's rule as BOHB uses it, for the multivariate estimator: σ0 = 0.2 n^(-1/(d+4)).
  const double sigma0 = kSigma0Magnitude *
                        std::pow(static_cast<double>(std::max<size_t>(n, 1)), -1.0 / (static_cast<double>(space.size()) + 4.0));

  for (size_t a = 0; a < space.size(); ++a) {
    const Axis& axis = space[a];
    Component component;
    if (!numeric(axis)) {
      // Each observation's one-hot, smoothed by prior_weight / (n + 1) on every choice; the
      // prior's row uniform (_calculate_categorical_params).
      const size_t choices = static_cast<size_t>(axis.choices);
      const double fill = settings.prior_weight / static_cast<double>(prior ? n + 1 : n);
      component.choice_weights.assign(components, std::vector<double>(choices, fill));
      for (size_t i = 0; i < n; ++i) component.choice_weights[i][static_cast<size_t>(observations[a][i])] += 1.0;
      for (auto& row : component.choice_weights) {
        const double sum = std::accumulate(row.begin(), row.end(), 0.0);
        for (double& value : row) value /= sum;
      }
      axes_.push_back(std::move(component));
      continue;
    }
    // Bounds in the estimator's space (_calculate_parzen_bounds).
    if (axis.kind == Axis::Kind::log_uniform) {
      component.low = std::log(axis.low);
      component.high = std::log(axis.high);
    } else if (axis.kind == Axis::Kind::int_uniform) {
      component.step = 1.0;
      component.low = axis.low - 0.5;
      component.high = axis.high + 0.5;
    } else {
      component.low = axis.low;
      component.high = axis.high;
    }
    const double low = component.low, high = component.high;
    std::vector<double>& mus = component.mus;
    for (size_t i = 0; i < n; ++i)
      mus.push_back(axis.kind == Axis::Kind::log_uniform ? std::log(observations[a][i]) : observations[a][i]);
    if (prior) mus.push_back(0.5 * (low + high));
    std::vector<double>& sigmas = component.sigmas;
    sigmas.assign(mus.size(), 0.0);
    if (settings.multivariate) {
      std::fill(sigmas.begin(), sigmas.end(), sigma0 * (high - low));
    } else if (!mus.empty()) {
      // Each component's bandwidth: the larger distance to its neighbours, the bounds included
      // (the first and the last take their inner neighbour's without consider_endpoints).
      // Ties are ordered by trial (a stable sort; numpy's default sort leaves them unspecified).
      std::vector<size_t> order(mus.size());
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return mus[x] < mus[y]; });
      std::vector<double> with_ends{low};
      for (size_t index : order) with_ends.push_back(mus[index]);
      with_ends.push_back(high);
      std::vector<double> sorted_sigmas(mus.size());
      for (size_t i = 0; i < mus.size(); ++i)
        sorted_sigmas[i] = std::max(with_ends[i + 1] - with_ends[i], with_ends[i + 2] - with_ends[i + 1]);
      if (!settings.endpoints && with_ends.size() >= 4) {
        sorted_sigmas.front() = with_ends[2] - with_ends[1];
        sorted_sigmas.back() = with_ends[with_ends.size() - 2] - with_ends[with_ends.size() - 3];
      }
      for (size_t i = 0; i < order.size(); ++i) sigmas[order[i]] = sorted_sigmas[i];
    }
    // The magic clip (Bergstra's hyperopt): no bandwidth under (high - low) / min(100, 1 + n).
    const double max_sigma = high - low;
    const double min_sigma =
        settings.magic_clip ? (high - low) / std::min(100.0, 1.0 + static_cast<double>(mus.size())) : kEps;
    for (double& sigma : sigmas) sigma = std::clamp(sigma, min_sigma, max_sigma);
    if (prior) sigmas.back() = high - low;
    axes_.push_back(std::move(component));
  }
}

std::vector<std::vector<double>> ParzenEstimator::sample(std::mt19937_64& random, int64_t size) const {
  // The draws in Optuna's order: the components first, then each axis.
  std::vector<size_t> active(static_cast<size_t>(size));
  for (size_t& index : active) index = draw_index(weights_, unit_draw(random));
  std::vector<std::vector<double>> samples(space_.size(), std::vector<double>(static_cast<size_t>(size)));
  for (size_t a = 0; a < space_.size(); ++a) {
    const Axis& axis = space_[a];
    const Component& component = axes_[a];
    for (size_t j = 0; j < active.size(); ++j) {
      const double u = unit_draw(random);
      const size_t k = active[j];
      if (!numeric(axis)) {
        // numpy: the number of cumulative probabilities below the draw.
        const auto& row = component.choice_weights[k];
        double cumulative = 0.0;
        size_t index = 0;
        for (double p : row) {
          cumulative += p;
          if (cumulative < u) ++index;
        }
        samples[a][j] = static_cast<double>(std::min(index, row.size() - 1));
        continue;
      }
      const double mu = component.mus[k], sigma = component.sigmas[k];
      const double x = truncated_normal_quantile(u, (component.low - mu) / sigma, (component.high - mu) / sigma);
      double value = x * sigma + mu;
      // Back to the axis (_transform_from_uniform).
      if (axis.kind == Axis::Kind::log_uniform) {
        value = std::exp(value);
      } else if (axis.kind == Axis::Kind::int_uniform) {
        value = round_even((value - axis.low) / component.step) * component.step + axis.low;
        value = std::clamp(value, axis.low, axis.high);
      }
      samples[a][j] = value;
    }
  }
  return samples;
}

std::vector<double> ParzenEstimator::log_pdf(const std::vector<std::vector<double>>& samples) const {
  const size_t count = samples.empty() ? 0 : samples[0].size();
  const size_t components = weights_.size();
  // component_log_pdf[j][k]: sample j under component k, summed over the axes.
  std::vector<std::vector<double>> log_pdf(count, std::vector<double>(components, 0.0));
  for (size_t a = 0; a < space_.size(); ++a) {
    const Axis& axis = space_[a];
    const Component& component = axes_[a];
    if (!numeric(axis)) {
      for (size_t j = 0; j < count; ++j)
        for (size_t k = 0; k < components; ++k)
          log_pdf[j][k] += std::log(component.choice_weights[k][static_cast<size_t>(samples[a][j])]);
      continue;
    }
    const double low = component.low, high = component.high;
    for (size_t k = 0; k < components; ++k) {
      const double mu = component.mus[k], sigma = component.sigmas[k];
      const double a_k = (low - mu) / sigma, b_k = (high - mu) / sigma;
      const double log_accept = log_gauss_mass(a_k, b_k);
      for (size_t j = 0; j < count; ++j) {
        const double x = axis.kind == Axis::Kind::log_uniform ? std::log(samples[a][j]) : samples[a][j];
        if (component.step > 0.0) {
          // A discretised normal: its mass on [x - q/2, x + q/2] within the bounds.
          const double upper = std::min(x + component.step / 2.0, high), lower = std::max(x - component.step / 2.0, low);
          log_pdf[j][k] += log_gauss_mass((lower - mu) / sigma, (upper - mu) / sigma) - log_accept;
        } else {
          // A normal truncated to [low, high]: φ(z)/σ over its mass (the -log σ Optuna 3.1 omits).
          const double z = (x - mu) / sigma;
          log_pdf[j][k] += (z < a_k || z > b_k) ? -kInf : -z * z / 2.0 - kLogSqrt2Pi - log_accept - std::log(sigma);
        }
      }
    }
  }
  std::vector<double> result(count);
  for (size_t j = 0; j < count; ++j) {
    double max = -kInf;
    for (size_t k = 0; k < components; ++k) {
      log_pdf[j][k] += std::log(weights_[k]);
      max = std::max(max, log_pdf[j][k]);
    }
    double sum = 0.0;
    for (size_t k = 0; k < components; ++k) sum += std::exp(log_pdf[j][k] - max);
    result[j] = std::log(sum) + max;
  }
  return result;
}

size_t best_candidate(const std::vector<double>& log_l, const std::vector<double>& log_g) {
  size_t best = 0;
  double best_score = -kInf;
  for (size_t j = 0; j < log_l.size(); ++j) {
    const double score = log_l[j] - log_g[j];
    if (std::isnan(score)) return j;
    if (j == 0 || score > best_score) {
      best = j;
      best_score = score;
    }
  }
  return best;
}

namespace {

// A draw from the axis alone (Optuna's RandomSampler).
double prior_draw(const Axis& axis, std::mt19937_64& random) {
  const double u = unit_draw(random);
  switch (axis.kind) {
    case Axis::Kind::uniform: return axis.low + u * (axis.high - axis.low);
    case Axis::Kind::log_uniform: return std::exp(std::log(axis.low) + u * (std::log(axis.high) - std::log(axis.low)));
    case Axis::Kind::int_uniform: return std::min(axis.high, axis.low + std::floor(u * (axis.high - axis.low + 1.0)));
    case Axis::Kind::choice:
      return std::min(static_cast<double>(axis.choices - 1), std::floor(u * static_cast<double>(axis.choices)));
  }
  return axis.low;
}

// l and g over `axes`, the chosen candidate's values, its score.
struct Choice {
  std::vector<double> values;
  double score = 0.0;
};
Choice choose(const std::vector<Axis>& space, const std::vector<size_t>& axes, const std::vector<Observation>& history,
              const std::vector<size_t>& included, const Split& parts, const Settings& settings,
              std::mt19937_64& random) {
  std::vector<Axis> subspace;
  for (size_t a : axes) subspace.push_back(space[a]);
  // A trial that lacks the first axis is left out (Optuna's param_mask).
  auto rows = [&](const std::vector<size_t>& part) {
    std::vector<std::vector<double>> observations(axes.size());
    for (size_t index : part) {
      const Observation& observation = history[included[index]];
      if (std::isnan(observation.values[axes[0]])) continue;
      for (size_t i = 0; i < axes.size(); ++i) observations[i].push_back(observation.values[axes[i]]);
    }
    return observations;
  };
  const ParzenEstimator below(rows(parts.below), subspace, settings), above(rows(parts.above), subspace, settings);
  const auto candidates = below.sample(random, settings.candidates);
  const auto log_l = below.log_pdf(candidates), log_g = above.log_pdf(candidates);
  const size_t best = best_candidate(log_l, log_g);
  Choice choice;
  for (const auto& axis_values : candidates) choice.values.push_back(axis_values[best]);
  choice.score = log_l[best] - log_g[best];
  return choice;
}

}  // namespace

Proposal propose(const std::vector<Axis>& space, const std::vector<Observation>& history, const Settings& settings,
                 bool maximize, uint64_t seed) {
  std::mt19937_64 random(seed);
  Proposal proposal;
  // The trials TPE learns from: complete ones with a value, pruned ones, running ones with the
  // constant liar (a complete trial without a value failed, and Optuna leaves failures out).
  std::vector<size_t> included;
  std::vector<Rank> ranks;
  int64_t finished = 0;
  for (size_t i = 0; i < history.size(); ++i) {
    const Observation& observation = history[i];
    if (observation.state == Observation::State::complete && std::isnan(observation.value)) continue;
    if (observation.state == Observation::State::running && !settings.constant_liar) continue;
    included.push_back(i);
    ranks.push_back(rank_of(observation, maximize));
    if (observation.state != Observation::State::running) ++finished;
  }
  if (finished < settings.random_trials || space.empty()) {
    proposal.random = true;
    for (const Axis& axis : space) proposal.values.push_back(prior_draw(axis, random));
    return proposal;
  }
  const Split parts = split(ranks, below_count(finished));
  for (size_t index : parts.below) proposal.below.push_back(included[index]);
  for (size_t index : parts.above) proposal.above.push_back(included[index]);
  if (settings.multivariate) {
    std::vector<size_t> all(space.size());
    std::iota(all.begin(), all.end(), size_t{0});
    const Choice choice = choose(space, all, history, included, parts, settings, random);
    proposal.values = choice.values;
    proposal.score = choice.score;
  } else {
    // Axis by axis, each from its own pair of estimators; the score is the sum of the axes'.
    proposal.score = 0.0;
    for (size_t a = 0; a < space.size(); ++a) {
      const Choice choice = choose(space, {a}, history, included, parts, settings, random);
      proposal.values.push_back(choice.values[0]);
      proposal.score += choice.score;
    }
  }
  return proposal;
}

}  // namespace difflab::tpe

// ---- the sampler: sampler = "tpe" ------------------------------------------------------------
namespace difflab {
namespace {

class TpeSampler final : public TrialSampler {
 public:
  explicit TpeSampler(const StrategySettings& keys) {
    settings_.random_trials = keys.integer("random_trials");
    settings_.candidates = keys.integer("candidates");
    settings_.multivariate = keys.boolean("multivariate");
    settings_.constant_liar = keys.boolean("constant_liar");
  }
  std::optional<std::vector<Assignments>> points(const SweepSpace&, const std::string&) const override {
    return std::nullopt;
  }
  Proposal propose(const std::vector<SearchDimension>& space, const std::vector<Observation>& history, bool maximize,
                   uint64_t seed) const override {
    std::vector<tpe::Axis> axes;
    for (const SearchDimension& dimension : space) {
      tpe::Axis axis;
      if (dimension.kind == "choice") {
        axis.kind = tpe::Axis::Kind::choice;
        axis.choices = static_cast<int64_t>(dimension.alternatives.size());
      } else {
        axis.kind = dimension.kind == "uniform"       ? tpe::Axis::Kind::uniform
                    : dimension.kind == "log_uniform" ? tpe::Axis::Kind::log_uniform
                                                      : tpe::Axis::Kind::int_uniform;
        axis.low = dimension.low;
        axis.high = dimension.high;
      }
      axes.push_back(axis);
    }
    return tpe::propose(axes, history, settings_, maximize, seed);
  }
  int64_t random_trials() const override { return settings_.random_trials; }

 private:
  tpe::Settings settings_;
};

}  // namespace

// Optuna 3.1's defaults (tpe::Settings); `random_trials` is its n_startup_trials, named apart from
// the median pruner's startup_trials, which counts something else.
const SamplerKind& tpe_sampler() {
  static const SamplerKind kind{
      "tpe",
      {{"random_trials", StrategyKey::Type::integer, 0, 10, "trials drawn at random before the model"},
       {"candidates", StrategyKey::Type::integer, 1, 24, "draws from l(x) scored per proposal"},
       {"multivariate", StrategyKey::Type::boolean, 0, 0, "one joint mixture over every dimension"},
       {"constant_liar", StrategyKey::Type::boolean, 0, 1, "running trials count, as the worst"}},
      /*draws=*/true,
      /*proposes=*/true,
      /*method=*/false,
      [](const StrategySettings& settings) -> std::unique_ptr<TrialSampler> {
        return std::make_unique<TpeSampler>(settings);
      }};
  return kind;
}

}  // namespace difflab
