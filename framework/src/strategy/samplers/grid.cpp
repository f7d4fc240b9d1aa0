// sampler = "grid" (method = "grid", the default): every combination of the axes' alternatives,
// in order (axes as the table lists them), without the excluded ones.
#include "strategy/strategy.h"

namespace difflab {
namespace {

class GridSampler final : public TrialSampler {
 public:
  std::optional<std::vector<Assignments>> points(const SweepSpace& space, const std::string&) const override {
    std::vector<Assignments> points = {{}};
    for (const auto& axis : space.axes) {
      std::vector<Assignments> next;
      for (const auto& point : points)
        for (const auto& alternative : axis) {
          Assignments extended = point;
          extended.insert(extended.end(), alternative.begin(), alternative.end());
          next.push_back(extended);
        }
      points = std::move(next);
    }
    std::vector<Assignments> kept;
    for (auto& point : points)
      if (!space.is_excluded(point)) kept.push_back(std::move(point));
    return kept;
  }
};

}  // namespace

const SamplerKind& grid_sampler() {
  static const SamplerKind kind{"grid", {}, /*draws=*/false, /*proposes=*/false, /*method=*/true,
                                [](const StrategySettings&) -> std::unique_ptr<TrialSampler> {
                                  return std::make_unique<GridSampler>();
                                }};
  return kind;
}

}  // namespace difflab
