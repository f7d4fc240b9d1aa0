// pruner = "asha" (method = "asha": with the random sampler): asynchronous successive halving
// (Li et al. 2020, Algorithm 2). Each trial, at each rung r·η^k below R, goes on when its value
// is at least the ⌊n/η⌋-th best of the n the rung holds so far (strategy/pruning.h).
#include "strategy/pruning.h"

namespace difflab {

const PrunerKind& asha_pruner() {
  static const PrunerKind kind{"asha", rung_keys(), /*method=*/true, /*synchronous=*/false,
                               [](const StrategySettings& settings) -> std::unique_ptr<Pruner> {
                                 return std::make_unique<RungPruner>(settings);
                               }};
  return kind;
}

}  // namespace difflab
