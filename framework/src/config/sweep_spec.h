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
