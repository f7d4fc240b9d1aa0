// pruner = "hyperband" (method = "hyperband": with the random sampler): ASHA in B brackets (Li et
// al. 2018, "Hyperband"), trial i in bracket i mod B, bracket s with its rungs at r·η^(s+k); a
// trial is compared with its own bracket's. B: `brackets`, or ⌊log_η(R/r)⌋ + 1.
#include "strategy/pruning.h"

namespace difflab {
namespace {

class HyperbandPruner final : public RungPruner {
 public:
  explicit HyperbandPruner(const StrategySettings& settings)
      : RungPruner(settings), brackets_(settings.integer("brackets")) {}
  int64_t brackets(int64_t max_epochs) const override {
    return brackets_ > 0 ? brackets_ : hyperband_brackets(min_epochs(), reduction_factor(), max_epochs);
  }

 protected:
  int64_t early_stopping_rate(int64_t bracket) const override { return bracket; }

 private:
  int64_t brackets_ = 0;
};

}  // namespace

const PrunerKind& hyperband_pruner() {
  static const PrunerKind kind{
      "hyperband",
      [] {
        std::vector<StrategyKey> keys = rung_keys();
        keys.push_back({"brackets", StrategyKey::Type::integer, 1, 0, "B; unset: ⌊log_η(R/r)⌋ + 1"});
        return keys;
      }(),
      /*method=*/true, /*synchronous=*/false,
      [](const StrategySettings& settings) -> std::unique_ptr<Pruner> {
        return std::make_unique<HyperbandPruner>(settings);
      }};
  return kind;
}

}  // namespace difflab
