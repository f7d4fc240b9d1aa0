// The one table of strategies: each sampler and pruner by name. A new one is its file under
// strategy/samplers/ or strategy/pruners/ (picked up by the build) and its line here.
#include <fmt/format.h>

#include "strategy/strategy.h"

namespace difflab {

// Each defined in its own file.
const SamplerKind& grid_sampler();
const SamplerKind& random_sampler();
const SamplerKind& tpe_sampler();
const PrunerKind& asha_pruner();
const PrunerKind& hyperband_pruner();
const PrunerKind& median_pruner();
const PrunerKind& successive_halving_pruner();

const std::vector<const SamplerKind*>& samplers() {
  static const std::vector<const SamplerKind*> table = {&grid_sampler(), &random_sampler(), &tpe_sampler()};
  return table;
}

const std::vector<const PrunerKind*>& pruners() {
  static const std::vector<const PrunerKind*> table = {&asha_pruner(), &hyperband_pruner(), &median_pruner(),
                                                       &successive_halving_pruner()};
  return table;
}

const SamplerKind* find_sampler(const std::string& name) {
  for (const SamplerKind* kind : samplers())
    if (kind->name == name) return kind;
  return nullptr;
}

const PrunerKind* find_pruner(const std::string& name) {
  for (const PrunerKind* kind : pruners())
    if (kind->name == name) return kind;
  return nullptr;
}

std::string name_list(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i)
    text += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + ("\"" + names[i] + "\"");
  return text;
}

}  // namespace difflab
