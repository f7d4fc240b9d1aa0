// [sweep] tables, expanded: every point of a sweep as the "section.key=value" assignments that
// make it (the file's values come first, the point's after, --set last; experiment.cpp).
#pragma once

#include <string>
#include <toml++/toml.h>
#include <vector>

namespace difflab {

// One point of a sweep, or one alternative of an axis: "section.key=value" assignments with TOML
// values.
using Assignments = std::vector<std::string>;

// [sweep] (method = "grid": dotted keys with arrays of values, `seeds`, [sweep.linked] axes whose
// keys vary together, `exclude` partial assignments; method = "random": `trials` draws from
// choice, uniform, log_uniform and int_uniform axes with `seed`) -> its points in order, seeds
// innermost, without the excluded ones. Throws a config Error naming `source`, the line and the key.
std::vector<Assignments> expand_sweep(const toml::table& sweep, const std::string& source);

}  // namespace difflab
