// [sweep] tables, expanded: every point of a sweep as the "section.key=value" assignments that
// make it (the file's values come first, the point's after, --set last; experiment.cpp).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <toml++/toml.h>
#include <vector>

#include "difflab/error.h"

namespace difflab {

// One point of a sweep, or one alternative of an axis: "section.key=value" assignments with TOML
// values.
using Assignments = std::vector<std::string>;

// [sweep] (method = "grid": dotted keys with arrays of values, `seeds`, [sweep.linked] axes whose
// keys vary together, `exclude` partial assignments; method = "random": `trials` draws from
// choice, uniform, log_uniform and int_uniform axes with `seed`) -> its points in order, seeds
// innermost, without the excluded ones. Throws a config Error naming `source`, the line and the key.
std::vector<Assignments> expand_sweep(const toml::table& sweep, const std::string& source);

// A model-based sweep ([sweep] sampler = "tpe"): not expanded into points but proposed trial by
// trial (sweep/search.h). Its dimensions: each choice axis (a plain array, { choice = [...] }, or
// a [sweep.linked] axis, whose alternatives are several assignments) and each distribution.
struct SearchSpace {
  struct Dimension {
    std::string key;   // the dotted key (a linked axis: its first)
    std::string kind;  // uniform | log_uniform | int_uniform | choice
    double low = 0.0, high = 0.0;
    std::vector<Assignments> alternatives;  // choice: what each alternative assigns
  };
  std::vector<Dimension> dimensions;
  int64_t trials = 0;
  uint64_t seed = 0;  // sweep.seed: each trial's proposal draws from (seed, trial)
  int64_t random_trials = 10, candidates = 24;
  bool multivariate = false, constant_liar = true;
  std::string metric = "val_kid";  // what the sampler learns from: sweep.metric, sweep.direction
  bool maximize = false;
  std::vector<Assignments> excluded;
};
// The space of a [sweep] table with sampler = "tpe", or nullopt for any other. Config Errors name
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

// An adaptive sweep's settings: method = "asha" | "hyperband" | "successive_halving" (trials
// drawn as method = "random" draws them), or pruner = "median" on a grid or random sweep. Every
// key's place in the file is kept for the checks that need the experiment (adaptive_checks()).
struct AdaptiveSweep {
  enum class Method { asha, hyperband, successive_halving, median };
  Method method = Method::asha;
  std::string metric = "val_kid";  // any metric a run records per epoch
  bool maximize = false;           // direction = "maximize"
  int64_t min_epochs = 1;          // r: the first rung
  int64_t reduction_factor = 3;    // η
  int64_t brackets = 0;            // hyperband; 0 = ⌊log_η(R/r)⌋ + 1
  int64_t startup_trials = 5;      // median: finished trials before it prunes
  int64_t warmup_epochs = 0;       // median: epochs before it prunes
  std::map<std::string, ErrorContext> where;  // "sweep.min_epochs" -> its place
};
const char* to_string(AdaptiveSweep::Method method);

// The adaptive settings of a [sweep] table, or nullopt for a grid or random sweep without a
// pruner. Config Errors name the file, the line and the key.
std::optional<AdaptiveSweep> adaptive_sweep(const toml::table& sweep, const std::string& source);

}  // namespace difflab
