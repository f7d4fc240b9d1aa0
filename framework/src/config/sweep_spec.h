// [sweep] tables, expanded: every point of a sweep as the "section.key=value" assignments that
// make it (the file's values come first, the point's after, --set last; experiment.cpp).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <toml++/toml.h>
#include <vector>

#include "difflab/error.h"
#include "strategy/strategy.h"

namespace difflab {

// [sweep] (sampler = "grid": dotted keys with arrays of values, `seeds`, [sweep.linked] axes whose
// keys vary together, `exclude` partial assignments; sampler = "random": `trials` draws from
// choice, uniform, log_uniform and int_uniform axes with `seed`) -> its points in order, seeds
// innermost, without the excluded ones: the sampler's points (strategy/samplers/). Every key is
// checked against the keys [sweep] and its sampler and pruner take. Throws a config Error naming
// `source`, the line and the key.
std::vector<Assignments> expand_sweep(const toml::table& sweep, const std::string& source);

// A model-based sweep (a sampler that proposes, such as sampler = "tpe"): not expanded into
// points but proposed trial by trial (sweep/search.h). Its dimensions: each choice axis (a plain
// array, { choice = [...] }, or a [sweep.linked] axis, whose alternatives are several
// assignments) and each distribution.
struct SearchSpace {
  using Dimension = SearchDimension;
  std::vector<Dimension> dimensions;
  int64_t trials = 0;
  uint64_t seed = 0;  // sweep.seed: each trial's proposal draws from (seed, trial)
  std::string sampler_name;
  std::shared_ptr<const TrialSampler> sampler;  // made from its keys (strategy/samplers/)
  StrategySettings settings;                    // its keys' values
  std::string metric = "val_kid";  // what the sampler learns from: sweep.metric, sweep.direction
  bool maximize = false;
  std::vector<Assignments> excluded;
};
// The space of a [sweep] table whose sampler proposes, or nullopt for any other. Config Errors name
// the file, the line and the key.
std::optional<SearchSpace> search_space(const toml::table& sweep, const std::string& source);

// A proposal's values (one per dimension: a choice's index, a number) as the run's assignments,
// the numbers as the run records them (6 significant digits; integers exact) and those values back.
struct SearchPoint {
  Assignments assignments;
  std::vector<double> values;
  bool excluded = false;  // matches one of sweep.exclude's partial assignments
};
SearchPoint search_point(const SearchSpace& space, const std::vector<double>& values);

// An adaptive sweep's settings: a pruner (pruner = "asha" | "hyperband" | "median" with any
// sampler, or method = "asha" | "hyperband" | "successive_halving" with random trials), its keys,
// and the metric it decides on. Every key's place in the file is kept for the checks that need
// the experiment (config/experiment.cpp: check_adaptive).
struct AdaptiveSweep {
  std::string name;          // the pruner's, as registered (strategy/registry.cpp)
  bool synchronous = false;  // successive_halving: the coordinator decides whole rungs
  std::shared_ptr<const Pruner> pruner;
  StrategySettings settings;       // its keys' values
  std::string metric = "val_kid";  // any metric a run records per epoch
  bool maximize = false;           // direction = "maximize"
  std::map<std::string, ErrorContext> where;  // "sweep.metric" -> its place
};

// The adaptive settings of a [sweep] table, or nullopt for a sweep without a pruner. Config
// Errors name the file, the line and the key.
std::optional<AdaptiveSweep> adaptive_sweep(const toml::table& sweep, const std::string& source);
// An adaptive sweep from its pruner and settings (a manifest's, a database's).
AdaptiveSweep make_adaptive(const PrunerKind& kind, StrategySettings settings, std::string metric, bool maximize);

}  // namespace difflab
