#include "strategy/pruning.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <numeric>

namespace difflab {
namespace {

// Whether a is at least as good as b.
bool at_least_as_good(double a, double b, Direction direction) {
  return direction == Direction::minimize ? a <= b : a >= b;
}

}  // namespace

std::vector<int64_t> rung_epochs(int64_t min_epochs, int64_t reduction_factor, int64_t max_epochs,
                                 int64_t early_stopping_rate) {
  std::vector<int64_t> rungs;
  int64_t epoch = min_epochs;
  for (int64_t s = 0; s < early_stopping_rate && epoch < max_epochs; ++s) epoch *= reduction_factor;
  for (; epoch < max_epochs; epoch *= reduction_factor) rungs.push_back(epoch);
  return rungs;
}

int64_t hyperband_brackets(int64_t min_epochs, int64_t reduction_factor, int64_t max_epochs) {
  int64_t brackets = 1;
  for (int64_t resource = min_epochs * reduction_factor; resource <= max_epochs; resource *= reduction_factor)
    ++brackets;
  return brackets;
}

int64_t hyperband_bracket(int64_t trial, int64_t brackets) { return trial % std::max<int64_t>(1, brackets); }

RungDecision asha_decision(double value, const std::vector<double>& peers, int64_t reduction_factor,
                           Direction direction) {
  std::vector<double> values = peers;
  values.push_back(value);
  RungDecision decision;
  decision.of = static_cast<int64_t>(values.size());
  // Best first; NaN last whatever the direction.
  std::sort(values.begin(), values.end(), [&](double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return !std::isnan(a) && std::isnan(b);
    return direction == Direction::minimize ? a < b : a > b;
  });
  const int64_t k = std::max<int64_t>(1, decision.of / reduction_factor);
  decision.cutoff = values[static_cast<size_t>(k - 1)];
  decision.rank = 1;
  for (double other : values)
    if (!std::isnan(other) && (std::isnan(value) || !at_least_as_good(value, other, direction))) ++decision.rank;
  decision.promote = !std::isnan(value) && !std::isnan(decision.cutoff) &&
                     at_least_as_good(value, decision.cutoff, direction);
  return decision;
}

std::vector<bool> halving_promotions(const std::vector<double>& values, int64_t reduction_factor,
                                     Direction direction) {
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const double x = values[a], y = values[b];
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return direction == Direction::minimize ? x < y : x > y;
  });
  const size_t keep = std::max<size_t>(1, values.size() / static_cast<size_t>(reduction_factor));
  std::vector<bool> promoted(values.size(), false);
  for (size_t i = 0; i < keep && i < order.size(); ++i) promoted[order[i]] = !std::isnan(values[order[i]]);
  return promoted;
}

std::optional<MedianDecision> median_decision(const std::vector<double>& own_values, int64_t epoch,
                                              const std::vector<double>& finished_at_epoch, int64_t finished_trials,
                                              int64_t startup_trials, int64_t warmup_epochs, Direction direction) {
  if (finished_trials == 0 || finished_trials < startup_trials || epoch < warmup_epochs || own_values.empty())
    return std::nullopt;
  MedianDecision decision;
  // The best of its own values so far, NaN ignored (np.nanmin / np.nanmax); all NaN: NaN.
  decision.best = std::nan("");
  for (double value : own_values)
    if (!std::isnan(value) && (std::isnan(decision.best) || !at_least_as_good(decision.best, value, direction)))
      decision.best = value;
  if (std::isnan(decision.best)) {
    decision.prune = true;
    decision.median = std::nan("");
    return decision;
  }
  std::vector<double> values;
  for (double value : finished_at_epoch)
    if (!std::isnan(value)) values.push_back(value);
  decision.of = static_cast<int64_t>(finished_at_epoch.size());
  if (finished_at_epoch.empty()) return std::nullopt;  // fewer than n_min_trials = 1
  if (values.empty()) return std::nullopt;             // np.nanpercentile of all NaN: NaN, no decision
  // numpy's linear interpolation at the 50th percentile (the same for either direction).
  std::sort(values.begin(), values.end());
  const double position = 0.5 * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(values.size() - 1, below + 1);
  decision.median = values[below] + (values[above] - values[below]) * (position - static_cast<double>(below));
  decision.prune = direction == Direction::minimize ? decision.best > decision.median : decision.best < decision.median;
  return decision;
}

std::vector<StrategyKey> rung_keys() {
  return {{"min_epochs", StrategyKey::Type::integer, 1, 1, "r: the first rung's epoch"},
          {"reduction_factor", StrategyKey::Type::integer, 2, 3, "η: a rung keeps 1/η of its trials"}};
}

RungPruner::RungPruner(const StrategySettings& settings)
    : min_epochs_(settings.integer("min_epochs")),
      reduction_factor_(settings.integer("reduction_factor")),
      min_epochs_where_(settings.where("min_epochs")) {}

std::vector<int64_t> RungPruner::rungs(int64_t bracket, int64_t max_epochs) const {
  return rung_epochs(min_epochs_, reduction_factor_, max_epochs, early_stopping_rate(bracket));
}

std::optional<PrunerVerdict> RungPruner::decide(const PrunerView& view, Direction direction) const {
  PrunerVerdict verdict;
  std::vector<double> values;
  for (const PrunerPeer& peer : view.peers)
    if (peer.value) values.push_back(*peer.value), verdict.compared.push_back(peer.attempt);
  const RungDecision decision = asha_decision(view.value, values, reduction_factor_, direction);
  verdict.prune = !decision.promote;
  verdict.value = view.value;
  verdict.cutoff = decision.cutoff;
  verdict.rank = decision.rank;
  verdict.of = decision.of;
  return verdict;
}

void RungPruner::check(int64_t max_epochs) const {
  if (min_epochs_ > max_epochs)
    throw ConfigError(fmt::format("sweep.min_epochs = {} is more than training.epochs = {}: no trial reaches the first "
                                  "rung",
                                  min_epochs_, max_epochs),
                      min_epochs_where_);
}

}  // namespace difflab
