// [sweep], the specification: grid axes, linked axes, random distributions, seeds and exclusions,
// expanded into the list of points (assignments) a sweep runs. Resolving each point into an
// experiment is experiment.cpp's business.
#include "config/sweep_spec.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <random>
#include <set>
#include <sstream>

#include "difflab/error.h"

namespace difflab {
namespace {

using Axis = std::vector<Assignments>;  // one axis: its alternatives

std::string value_text(const toml::node& node) {
  // A float as the shortest text that reads back as the same double (0.99, not 0.98999999999999999),
  // still a TOML float.
  if (const auto* number = node.as_floating_point()) {
    std::string text = fmt::format("{}", number->get());
    if (text.find_first_of(".eEin") == std::string::npos) text += ".0";
    return text;
  }
  std::ostringstream text;
  node.visit([&](const auto& value) { text << value; });
  return text.str();
}

// {"loss.plugin" = "mse", ...} -> assignments; every key must be dotted.
Assignments inline_assignments(const toml::node& node, const std::string& where, const std::string& source) {
  const toml::table* table = node.as_table();
  if (table == nullptr)
    throw ConfigError("expected a table of dotted keys, e.g. { \"loss.plugin\" = \"mse\" }",
                      ErrorContext::at(source, node.source().begin.line, node.source().begin.column, where));
  Assignments assignments;
  for (const auto& [key, value] : *table) {
    const std::string name(key.str());
    if (name.find('.') == std::string::npos)
      throw ConfigError("expected a dotted key such as \"loss.plugin\", got \"" + name + "\"",
                        ErrorContext::at(source, key.source().begin.line, 0, where));
    assignments.push_back(name + "=" + value_text(value));
  }
  return assignments;
}

// A random axis: a distribution over one key's values (method = "random").
struct Distribution {
  std::string key;
  std::string kind;  // uniform | log_uniform | int_uniform
  double low = 0.0, high = 0.0;
};

// [sweep], parsed: discrete axes (each alternative a list of assignments), distributions, seeds,
// excluded partial assignments.
struct SweepSpec {
  std::string method = "grid";  // how its trials are chosen: grid, random (and the adaptive methods), tpe
  int64_t trials = 0;
  uint64_t draw_seed = 0;
  std::vector<Axis> axes;
  std::vector<Distribution> distributions;
  Axis seeds;
  std::vector<Assignments> excluded;
  // sampler = "tpe" (sweep/samplers/tpe.h's Settings; Optuna's defaults)
  int64_t random_trials = 10, candidates = 24;
  bool multivariate = false, constant_liar = true;
};

// A uniform double in [0, 1) from 53 random bits: the same draws on every platform and library.
double unit_draw(std::mt19937_64& generator) {
  return static_cast<double>(generator() >> 11) * 0x1.0p-53;
}

// A drawn float as TOML text with 6 significant digits (readable in run lists; always a float).
std::string float_text(double value) {
  std::string text = fmt::format("{:.6g}", value);
  if (text.find_first_of(".einf") == std::string::npos) text += ".0";
  return text;
}

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

constexpr const char* kMethods[] = {"grid", "random", "asha", "hyperband", "successive_halving"};
constexpr const char* kSamplers[] = {"grid", "random", "tpe"};
const std::set<std::string> kAdaptiveKeys = {"metric",  "direction",      "min_epochs",     "reduction_factor",
                                             "brackets", "pruner",        "startup_trials", "warmup_epochs"};
const std::set<std::string> kTpeKeys = {"random_trials", "candidates", "multivariate", "constant_liar"};

SweepSpec parse_sweep_table(const toml::table& sweep, const std::string& source) {
  auto context = [&](const toml::node& node, const std::string& key) {
    return ErrorContext::at(source, node.source().begin.line, node.source().begin.column, "sweep." + key);
  };
  SweepSpec spec;
  if (const toml::node* method = sweep.get("method")) {
    const auto name = method->value<std::string>();
    if (!name || std::find(std::begin(kMethods), std::end(kMethods), *name) == std::end(kMethods))
      throw ConfigError("method must be \"grid\", \"random\", \"asha\", \"hyperband\" or \"successive_halving\"",
                        context(*method, "method"));
    spec.method = *name;
  }
  if (const toml::node* sampler = sweep.get("sampler")) {
    const auto name = sampler->value<std::string>();
    if (!name || std::find(std::begin(kSamplers), std::end(kSamplers), *name) == std::end(kSamplers))
      throw ConfigError("sampler must be \"grid\", \"random\" or \"tpe\"", context(*sampler, "sampler"));
    if (sweep.get("method") != nullptr)
      throw ConfigError("method and sampler: one or the other (method = \"asha\" is sampler = \"random\" with "
                        "pruner = \"asha\")",
                        context(*sampler, "sampler"));
    spec.method = *name;
  }
  // The adaptive methods and TPE draw their trials as random does (TPE its first ones).
  const bool random = spec.method != "grid";
  for (const auto& [key, node] : sweep) {
    const std::string name(key.str());
    if (name == "method" || name == "sampler" || kAdaptiveKeys.count(name)) continue;  // adaptive_sweep() reads these
    if (kTpeKeys.count(name)) {
      if (spec.method != "tpe")
        throw ConfigError(name + " is a key of sampler = \"tpe\", not of " +
                              (sweep.get("sampler") ? "sampler" : "method") + " = \"" + spec.method + "\"",
                          context(node, name));
      if (name == "multivariate" || name == "constant_liar") {
        const auto value = node.value<bool>();
        if (!value || !node.is_boolean()) throw ConfigError("expected true or false", context(node, name));
        (name == "multivariate" ? spec.multivariate : spec.constant_liar) = *value;
      } else {
        const auto value = node.value<int64_t>();
        if (!value || !node.is_integer() || *value < (name == "candidates" ? 1 : 0))
          throw ConfigError(name == "candidates" ? "expected a positive integer" : "expected a non-negative integer",
                            context(node, name));
        (name == "candidates" ? spec.candidates : spec.random_trials) = *value;
      }
      continue;
    }
    if (name == "trials" || name == "seed") {
      const auto value = node.value<int64_t>();
      if (!random)
        throw ConfigError(name + " is for method = \"random\", the adaptive methods and sampler = \"tpe\"", context(node, name));
      if (!value || *value < (name == "trials" ? 1 : 0))
        throw ConfigError(name == "trials" ? "expected a positive integer" : "expected a non-negative integer",
                          context(node, name));
      if (name == "trials") spec.trials = *value;
      else spec.draw_seed = static_cast<uint64_t>(*value);
    } else if (name == "seeds") {
      const toml::array* array = node.as_array();
      if (array == nullptr || array->empty() || !array->is_homogeneous(toml::node_type::integer))
        throw ConfigError("expected a non-empty array of integers", context(node, name));
      for (const auto& seed : *array) spec.seeds.push_back({"experiment.seed=" + value_text(seed)});
    } else if (name == "exclude") {
      const toml::array* array = node.as_array();
      if (array == nullptr) throw ConfigError("expected an array of tables", context(node, name));
      for (const auto& entry : *array) spec.excluded.push_back(inline_assignments(entry, "sweep.exclude", source));
    } else if (name == "linked") {
      // [sweep.linked] axis = [{ "sampler.plugin" = "ddim", "sampler.eta" = 0.5 }, ...]
      const toml::table* linked = node.as_table();
      if (linked == nullptr) throw ConfigError("expected a table of axes", context(node, name));
      for (const auto& [axis_name, alternatives] : *linked) {
        const toml::array* array = alternatives.as_array();
        if (array == nullptr || array->empty())
          throw ConfigError("expected a non-empty array of tables", context(alternatives, "linked." + std::string(axis_name.str())));
        Axis axis;
        for (const auto& entry : *array)
          axis.push_back(inline_assignments(entry, "sweep.linked." + std::string(axis_name.str()), source));
        spec.axes.push_back(axis);
      }
    } else if (name.find('.') == std::string::npos) {
      throw ConfigError("unknown sweep key \"" + name + "\"",
                        ErrorContext::at(source, key.source().begin.line, 0, "sweep." + name,
                                         "sweep keys: method, sampler, trials, seed, seeds, exclude, linked, metric, "
                                         "direction, min_epochs, reduction_factor, brackets, pruner, "
                                         "startup_trials, warmup_epochs, random_trials, candidates, multivariate, "
                                         "constant_liar, or a dotted "
                                         "parameter such as \"loss.plugin\" = [\"mae\", \"mse\"]"));
    } else if (const toml::table* table = node.as_table()) {
      // { uniform = [low, high] } and friends (random only); { choice = [...] } = a plain array.
      if (table->size() != 1)
        throw ConfigError("expected one distribution: { choice | uniform | log_uniform | int_uniform = [...] }",
                          context(node, name));
      const std::string kind(table->begin()->first.str());
      const toml::array* values = table->begin()->second.as_array();
      if (kind != "choice" && kind != "uniform" && kind != "log_uniform" && kind != "int_uniform")
        throw ConfigError("unknown distribution \"" + kind + "\"",
                          ErrorContext::at(source, node.source().begin.line, node.source().begin.column,
                                           "sweep." + name, "distributions: choice, uniform, log_uniform, int_uniform"));
      if (!random)
        throw ConfigError("a distribution needs method = \"random\" or sampler = \"random\" | \"tpe\"", context(node, name));
      if (values == nullptr || values->empty())
        throw ConfigError("expected " + kind + " = [...] with values", context(node, name));
      if (kind == "choice") {
        Axis axis;
        for (const auto& value : *values) axis.push_back({name + "=" + value_text(value)});
        spec.axes.push_back(axis);
        continue;
      }
      const bool integral = kind == "int_uniform";
      const auto low = values->size() == 2 ? values->get(0)->value<double>() : std::nullopt;
      const auto high = values->size() == 2 ? values->get(1)->value<double>() : std::nullopt;
      const bool typed = values->size() == 2 && (!integral || values->is_homogeneous(toml::node_type::integer));
      if (!typed || !low || !high || !(*low <= *high) || (kind == "log_uniform" && *low <= 0))
        throw ConfigError(fmt::format("expected {} = [low, high] with {}low <= high{}", kind,
                                      integral ? "integers, " : "",
                                      kind == "log_uniform" ? " and low > 0" : ""),
                          context(node, name));
      spec.distributions.push_back({name, kind, *low, *high});
    } else {
      const toml::array* array = node.as_array();
      if (array == nullptr || array->empty())
        throw ConfigError("expected a non-empty array of values to sweep", context(node, name));
      Axis axis;
      for (const auto& value : *array) axis.push_back({name + "=" + value_text(value)});
      spec.axes.push_back(axis);
    }
  }
  if (random && spec.trials == 0)
    throw ConfigError((sweep.get("sampler") ? "sampler" : "method") + std::string(" = \"") + spec.method +
                          "\" needs trials = N",
                      ErrorContext::for_key(source, "sweep.trials"));
  return spec;
}

bool is_excluded(const SweepSpec& spec, const Assignments& point) {
  for (const auto& rule : spec.excluded)
    if (std::all_of(rule.begin(), rule.end(), [&](const std::string& assignment) {
          return std::find(point.begin(), point.end(), assignment) != point.end();
        }))
      return true;
  return false;
}

// Every combination of the axes' alternatives, in order (axes as the table lists them).
std::vector<Assignments> grid_points(const SweepSpec& spec) {
  std::vector<Assignments> points = {{}};
  for (const auto& axis : spec.axes) {
    std::vector<Assignments> next;
    for (const auto& point : points)
      for (const auto& alternative : axis) {
        Assignments extended = point;
        extended.insert(extended.end(), alternative.begin(), alternative.end());
        next.push_back(extended);
      }
    points = std::move(next);
  }
  return points;
}

// `trials` distinct draws (one alternative per axis, one value per distribution), seeded by
// sweep.seed; a draw that is excluded or repeats an earlier one is drawn again.
std::vector<Assignments> random_points(const SweepSpec& spec, const std::string& source) {
  std::mt19937_64 generator(spec.draw_seed);
  std::vector<Assignments> points;
  const int64_t attempts = 1000 * spec.trials;
  for (int64_t attempt = 0; attempt < attempts && static_cast<int64_t>(points.size()) < spec.trials; ++attempt) {
    Assignments point;
    for (const auto& axis : spec.axes) {
      const auto& alternative = axis[std::min(axis.size() - 1, static_cast<size_t>(unit_draw(generator) * axis.size()))];
      point.insert(point.end(), alternative.begin(), alternative.end());
    }
    for (const auto& distribution : spec.distributions)
      point.push_back(distribution.key + "=" + draw(distribution, generator));
    if (!is_excluded(spec, point) && std::find(points.begin(), points.end(), point) == points.end())
      points.push_back(point);
  }
  if (static_cast<int64_t>(points.size()) < spec.trials)
    throw ConfigError(fmt::format("only {} distinct trials could be drawn, {} asked for", points.size(), spec.trials),
                      ErrorContext::for_key(source, "sweep.trials", "the space is smaller than trials: lower trials or widen it"));
  return points;
}

}  // namespace

// [sweep] -> its points, in order (seeds innermost), without the excluded ones.
std::vector<Assignments> expand_sweep(const toml::table& sweep, const std::string& source) {
  const SweepSpec spec = parse_sweep_table(sweep, source);
  std::vector<Assignments> points;
  if (spec.method != "grid") {
    points = random_points(spec, source);
  } else {
    points = grid_points(spec);
    points.erase(std::remove_if(points.begin(), points.end(),
                                [&](const Assignments& point) { return is_excluded(spec, point); }),
                 points.end());
  }
  if (spec.seeds.empty()) return points;
  std::vector<Assignments> seeded;
  for (const auto& point : points)
    for (const auto& seed : spec.seeds) {
      Assignments extended = point;
      extended.insert(extended.end(), seed.begin(), seed.end());
      if (!is_excluded(spec, extended)) seeded.push_back(extended);
    }
  return seeded;
}

std::optional<SearchSpace> search_space(const toml::table& sweep, const std::string& source) {
  const SweepSpec spec = parse_sweep_table(sweep, source);
  if (spec.method != "tpe") return std::nullopt;
  if (!spec.seeds.empty())
    throw ConfigError("seeds with sampler = \"tpe\": a proposal is one run (set experiment.seed, or sweep seeds with "
                      "sampler = \"random\")",
                      ErrorContext::for_key(source, "sweep.seeds"));
  SearchSpace space;
  space.trials = spec.trials;
  space.seed = spec.draw_seed;
  space.random_trials = spec.random_trials;
  space.candidates = spec.candidates;
  space.multivariate = spec.multivariate;
  space.constant_liar = spec.constant_liar;
  space.excluded = spec.excluded;
  for (const Axis& axis : spec.axes) {
    SearchSpace::Dimension dimension;
    dimension.key = axis.front().front().substr(0, axis.front().front().find('='));
    dimension.kind = "choice";
    dimension.alternatives = axis;
    space.dimensions.push_back(std::move(dimension));
  }
  for (const Distribution& distribution : spec.distributions)
    space.dimensions.push_back({distribution.key, distribution.kind, distribution.low, distribution.high, {}});
  if (space.dimensions.empty())
    throw ConfigError("sampler = \"tpe\" has nothing to search: give an axis or a distribution",
                      ErrorContext::for_key(source, "sweep"));
  if (const toml::node* metric = sweep.get("metric")) space.metric = metric->value_or(std::string("val_kid"));
  if (const toml::node* direction = sweep.get("direction")) {
    const auto text = direction->value<std::string>();
    if (!text || (*text != "minimize" && *text != "maximize"))
      throw ConfigError("direction must be \"minimize\" or \"maximize\"",
                        ErrorContext::at(source, direction->source().begin.line, direction->source().begin.column,
                                         "sweep.direction"));
    space.maximize = *text == "maximize";
  }
  return space;
}

SearchPoint search_point(const SearchSpace& space, const std::vector<double>& values) {
  SearchPoint point;
  for (size_t d = 0; d < space.dimensions.size(); ++d) {
    const SearchSpace::Dimension& dimension = space.dimensions[d];
    if (dimension.kind == "choice") {
      const size_t index = std::min(dimension.alternatives.size() - 1, static_cast<size_t>(std::max(0.0, values[d])));
      point.assignments.insert(point.assignments.end(), dimension.alternatives[index].begin(),
                               dimension.alternatives[index].end());
      point.values.push_back(static_cast<double>(index));
    } else if (dimension.kind == "int_uniform") {
      const auto value = static_cast<int64_t>(std::llround(values[d]));
      point.assignments.push_back(dimension.key + "=" + std::to_string(value));
      point.values.push_back(static_cast<double>(value));
    } else {
      // The value as the run records it (6 significant digits), kept within the bounds.
      const std::string text = float_text(std::clamp(values[d], dimension.low, dimension.high));
      point.assignments.push_back(dimension.key + "=" + text);
      point.values.push_back(std::clamp(std::stod(text), dimension.low, dimension.high));
    }
  }
  point.excluded = std::any_of(space.excluded.begin(), space.excluded.end(), [&](const Assignments& rule) {
    return std::all_of(rule.begin(), rule.end(), [&](const std::string& assignment) {
      return std::find(point.assignments.begin(), point.assignments.end(), assignment) != point.assignments.end();
    });
  });
  return point;
}

const char* to_string(AdaptiveSweep::Method method) {
  switch (method) {
    case AdaptiveSweep::Method::asha: return "asha";
    case AdaptiveSweep::Method::hyperband: return "hyperband";
    case AdaptiveSweep::Method::successive_halving: return "successive_halving";
    case AdaptiveSweep::Method::median: return "median";
  }
  return "?";
}

std::optional<AdaptiveSweep> adaptive_sweep(const toml::table& sweep, const std::string& source) {
  auto place = [&](const toml::node& node, const std::string& key) {
    return ErrorContext::at(source, node.source().begin.line, node.source().begin.column, "sweep." + key);
  };
  // `method` names both halves (asha: random trials, the asha rule); `sampler` and `pruner` one each.
  const std::string sampler = sweep["sampler"].value_or(std::string());
  const std::string method = sweep["method"].value_or(sampler.empty() ? std::string("grid") : sampler);
  const toml::node* pruner = sweep.get("pruner");
  const std::string pruner_name = pruner != nullptr ? pruner->value_or(std::string()) : std::string();
  AdaptiveSweep adaptive;
  if (method == "asha") adaptive.method = AdaptiveSweep::Method::asha;
  else if (method == "hyperband") adaptive.method = AdaptiveSweep::Method::hyperband;
  else if (method == "successive_halving") adaptive.method = AdaptiveSweep::Method::successive_halving;
  else if (pruner_name == "asha") adaptive.method = AdaptiveSweep::Method::asha;
  else if (pruner_name == "hyperband") adaptive.method = AdaptiveSweep::Method::hyperband;
  else adaptive.method = AdaptiveSweep::Method::median;
  const bool is_adaptive = method != "grid" && method != "random" && method != "tpe";
  if (pruner != nullptr) {
    if (pruner_name != "asha" && pruner_name != "hyperband" && pruner_name != "median" && pruner_name != "none")
      throw ConfigError("pruner must be \"asha\", \"hyperband\", \"median\" or \"none\"", place(*pruner, "pruner"));
    if (is_adaptive)
      throw ConfigError("pruner is for a sampler (or method = \"grid\" or \"random\"); method = \"" + method +
                            "\" prunes by its own rule",
                        place(*pruner, "pruner"));
  }
  const bool pruning = is_adaptive || (pruner != nullptr && pruner_name != "none");
  const bool searching = method == "tpe";
  if (pruner != nullptr) adaptive.where["sweep.pruner"] = place(*pruner, "pruner");
  if (const toml::node* node = sweep.get("method")) adaptive.where["sweep.method"] = place(*node, "method");
  // Which keys each method takes.
  const std::map<std::string, std::set<AdaptiveSweep::Method>> takes = {
      {"metric", {AdaptiveSweep::Method::asha, AdaptiveSweep::Method::hyperband, AdaptiveSweep::Method::successive_halving,
                  AdaptiveSweep::Method::median}},
      {"direction", {AdaptiveSweep::Method::asha, AdaptiveSweep::Method::hyperband,
                     AdaptiveSweep::Method::successive_halving, AdaptiveSweep::Method::median}},
      {"min_epochs", {AdaptiveSweep::Method::asha, AdaptiveSweep::Method::hyperband, AdaptiveSweep::Method::successive_halving}},
      {"reduction_factor", {AdaptiveSweep::Method::asha, AdaptiveSweep::Method::hyperband,
                            AdaptiveSweep::Method::successive_halving}},
      {"brackets", {AdaptiveSweep::Method::hyperband}},
      {"startup_trials", {AdaptiveSweep::Method::median}},
      {"warmup_epochs", {AdaptiveSweep::Method::median}},
  };
  for (const auto& [key, node] : sweep) {
    const std::string name(key.str());
    auto allowed = takes.find(name);
    if (allowed == takes.end()) continue;
    const bool searched = searching && (name == "metric" || name == "direction");  // what TPE learns from
    if ((!pruning && !searched) || (pruning && !allowed->second.count(adaptive.method)))
      throw ConfigError(fmt::format("{} is not a key of {}", name,
                                    pruning ? "this pruner" : "a sweep without a pruner"),
                        place(node, name));
    adaptive.where["sweep." + name] = place(node, name);
    if (name == "metric" || name == "direction") {
      const auto text = node.value<std::string>();
      if (!text || text->empty()) throw ConfigError("expected a string", place(node, name));
      if (name == "metric") adaptive.metric = *text;
      else if (*text == "minimize" || *text == "maximize") adaptive.maximize = *text == "maximize";
      else throw ConfigError("direction must be \"minimize\" or \"maximize\"", place(node, name));
      continue;
    }
    const auto value = node.value<int64_t>();
    const int64_t least = name == "reduction_factor" ? 2 : name == "startup_trials" || name == "warmup_epochs" ? 0 : 1;
    if (!value || *value < least)
      throw ConfigError(fmt::format("expected an integer of at least {}", least), place(node, name));
    if (name == "min_epochs") adaptive.min_epochs = *value;
    else if (name == "reduction_factor") adaptive.reduction_factor = *value;
    else if (name == "brackets") adaptive.brackets = *value;
    else if (name == "startup_trials") adaptive.startup_trials = *value;
    else adaptive.warmup_epochs = *value;
  }
  if (!pruning) return std::nullopt;
  for (const char* key : {"metric", "min_epochs", "reduction_factor", "pruner", "method"})
    if (!adaptive.where.count(std::string("sweep.") + key))
      adaptive.where[std::string("sweep.") + key] = ErrorContext::for_key(source, std::string("sweep.") + key);
  return adaptive;
}

}  // namespace difflab
