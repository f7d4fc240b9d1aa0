// method = "successive_halving" (with the random sampler): the synchronous schedule. Every trial
// still in the running pauses at rung k; once all have reached it the sweep's coordinator
// (sweep/halving.h) keeps the best max(1, ⌊n/η⌋) at once (halving_promotions), so a rung is
// decided the same way every time. Not a `pruner =` value: a sampler's trials arrive one by one.
#include "strategy/pruning.h"

namespace difflab {

const PrunerKind& successive_halving_pruner() {
  static const PrunerKind kind{"successive_halving", rung_keys(), /*method=*/true, /*synchronous=*/true,
                               [](const StrategySettings& settings) -> std::unique_ptr<Pruner> {
                                 return std::make_unique<RungPruner>(settings);
                               }};
  return kind;
}

}  // namespace difflab
