// sampler = "random" (method = "random", and the trials of method = "asha", "hyperband",
// "successive_halving"): `trials` distinct draws, one alternative per axis and one value per
// distribution, seeded by sweep.seed; a draw that is excluded or repeats an earlier one is drawn
// again.
#include <cmath>
#include <algorithm>
#include <fmt/format.h>

#include "strategy/strategy.h"

namespace difflab {
namespace {

std::string draw(const Distribution& distribution, std::mt19937_64& generator) {
  const double u = unit_draw(generator);
  if (distribution.kind == "uniform")
    return float_text(distribution.low + u * (distribution.high - distribution.low));
  if (distribution.kind == "log_uniform")  // uniform in log space
    return float_text(std::exp(std::log(distribution.low) +
                               u * (std::log(distribution.high) - std::log(distribution.low))));
  const auto low = static_cast<int64_t>(distribution.low), high = static_cast<int64_t>(distribution.high);
  return std::to_string(std::min(high, low + static_cast<int64_t>(u * static_cast<double>(high - low + 1))));
}

class RandomSampler final : public TrialSampler {
 public:
  std::optional<std::vector<Assignments>> points(const SweepSpace& space, const std::string& source) const override {
    std::mt19937_64 generator(space.seed);
    std::vector<Assignments> points;
    const int64_t attempts = 1000 * space.trials;
    for (int64_t attempt = 0; attempt < attempts && static_cast<int64_t>(points.size()) < space.trials; ++attempt) {
      Assignments point;
      for (const auto& axis : space.axes) {
        const auto& alternative =
            axis[std::min(axis.size() - 1, static_cast<size_t>(unit_draw(generator) * static_cast<double>(axis.size())))];
        point.insert(point.end(), alternative.begin(), alternative.end());
      }
      for (const auto& distribution : space.distributions)
        point.push_back(distribution.key + "=" + draw(distribution, generator));
      if (!space.is_excluded(point) && std::find(points.begin(), points.end(), point) == points.end())
        points.push_back(point);
    }
    if (static_cast<int64_t>(points.size()) < space.trials)
      throw ConfigError(fmt::format("only {} distinct trials could be drawn, {} asked for", points.size(), space.trials),
                        ErrorContext::for_key(source, "sweep.trials",
                                              "the space is smaller than trials: lower trials or widen it"));
    return points;
  }
};

}  // namespace

const SamplerKind& random_sampler() {
  static const SamplerKind kind{"random", {}, /*draws=*/true, /*proposes=*/false, /*method=*/true,
                                [](const StrategySettings&) -> std::unique_ptr<TrialSampler> {
                                  return std::make_unique<RandomSampler>();
                                }};
  return kind;
}

}  // namespace difflab
