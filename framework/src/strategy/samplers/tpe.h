// The tree-structured Parzen estimator (Bergstra et al. 2011, "Algorithms for Hyper-Parameter
// Optimization", §4), as Optuna 3.1's TPESampler computes it, univariate and multivariate
// (Falkner et al. 2018, "BOHB", §3.1). Pure functions of the trials recorded so far and a seed, so
// that a sweep can record every proposal and replay it from its database alone.
//
// One deliberate difference from Optuna 3.1: a continuous component's log density includes its
// -log σ (Optuna's _truncnorm.logpdf left it out until 3.5: optuna/optuna#5109, fixed by #5110),
// so that each Parzen mixture integrates to 1 and l(x)/g(x) is the ratio of two densities.
// Golden-tested against Optuna 3.1 with that fix applied (tests/sweep/tpe_test.cpp).
#pragma once

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "strategy/strategy.h"

namespace difflab::tpe {

// One axis of the space, as Optuna's distributions: uniform = FloatDistribution(low, high),
// log_uniform = FloatDistribution(low, high, log=True), int_uniform = IntDistribution(low, high),
// choice = CategoricalDistribution over `choices` alternatives (a value is the alternative's index).
struct Axis {
  enum class Kind { uniform, log_uniform, int_uniform, choice };
  Kind kind = Kind::uniform;
  double low = 0.0, high = 1.0;
  int64_t choices = 0;
};

// TPESampler's settings; the defaults are Optuna 3.1's.
struct Settings {
  int64_t random_trials = 10;  // n_startup_trials: trials drawn at random before the model
  int64_t candidates = 24;     // n_ei_candidates
  double prior_weight = 1.0;
  bool consider_prior = true;
  bool magic_clip = true;         // consider_magic_clip
  bool endpoints = false;         // consider_endpoints
  bool multivariate = false;      // one joint mixture over all axes (Falkner et al. 2018)
  bool constant_liar = true;      // running trials count, as the worst (Optuna's constant_liar)
};

// A trial as the sampler sees it, and what it proposes (strategy/strategy.h).
using difflab::Observation;
using difflab::Proposal;

// Optuna's ranking of a trial (_get_observation_pairs), compared lexicographically, smaller is
// better: a complete trial (-inf, ±value), a pruned one (-step, ±value) (a later rung ranks
// better), pruned before any value (1, 0), running (+inf, +inf). ± makes maximisation a
// minimisation; a NaN value ranks as +inf.
struct Rank {
  double first = 0.0, second = 0.0;
};
Rank rank_of(const Observation& observation, bool maximize);

// γ(n) = min(⌈0.1 n⌉, 25): how many of the n ranked trials form l(x) (Optuna's default_gamma).
int64_t below_count(int64_t n);
// Optuna's default_weights: n ones below 25; above, a linear ramp from 1/n up to 1 for the older
// n - 25 observations, then 25 ones.
std::vector<double> ramp_weights(int64_t n);

// The n_below best ranks (ties: the earlier trial) and the others, each in trial order.
struct Split {
  std::vector<size_t> below, above;
};
Split split(const std::vector<Rank>& ranks, int64_t n_below);

// The standard normal's log CDF and the log of its mass on [a, b], accurate in both tails
// (Optuna's _truncnorm._log_ndtr_single and _log_gauss_mass), and the quantile function of the
// normal truncated to [a, b] (its ppf, by bisection, as Optuna's).
double log_ndtr(double a);
double log_gauss_mass(double a, double b);
double truncated_normal_quantile(double q, double a, double b);

// The Parzen estimator of a set of observations: a mixture with one component per observation
// (and the prior's): truncated normals on the numeric axes (in log space for log_uniform), a
// discretised one on int_uniform, smoothed one-hot weights on choices.
class ParzenEstimator {
 public:
  // observations[axis][i]: the i-th observation's value on each axis.
  ParzenEstimator(const std::vector<std::vector<double>>& observations, const std::vector<Axis>& space,
                  const Settings& settings);

  // `size` draws, samples[axis][j], in the axes' own terms (int_uniform rounded, choice an index).
  std::vector<std::vector<double>> sample(std::mt19937_64& random, int64_t size) const;
  // log of the mixture's density (mass, on int_uniform and choice axes) at each sample.
  std::vector<double> log_pdf(const std::vector<std::vector<double>>& samples) const;

  // What the mixture is made of, for tests and for the proposals table.
  struct Component {
    double low = 0.0, high = 0.0, step = 0.0;  // in the estimator's space (log for log_uniform); step 0: continuous
    std::vector<double> mus, sigmas;           // numeric axes
    std::vector<std::vector<double>> choice_weights;  // choice axes: per component, per choice
  };
  const std::vector<double>& weights() const { return weights_; }
  const std::vector<Component>& axes() const { return axes_; }

 private:
  std::vector<Axis> space_;
  std::vector<double> weights_;
  std::vector<Component> axes_;
};

// Optuna's TPESampler: sample_relative over all axes (multivariate) or sample_independent axis by
// axis, from `history` (the trials in the order they were proposed) and a generator seeded with
// `seed`: `candidates` draws from l, the one with the largest log l - log g wins.
Proposal propose(const std::vector<Axis>& space, const std::vector<Observation>& history, const Settings& settings,
                 bool maximize, uint64_t seed);

// The index of the candidate with the largest log l - log g (the first on ties; a NaN wins, as
// numpy's argmax), Optuna's TPESampler._compare.
size_t best_candidate(const std::vector<double>& log_l, const std::vector<double>& log_g);

using difflab::unit_draw;  // strategy/strategy.h

}  // namespace difflab::tpe
