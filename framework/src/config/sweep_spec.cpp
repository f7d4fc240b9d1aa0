// [sweep], the specification: the sampler and the pruner by name (strategy/registry.cpp) with the
// keys each declares, grid axes, linked axes, distributions, seeds and exclusions; the sampler's
// points (assignments) a sweep runs. Resolving each point into an experiment is experiment.cpp's
// business.
#include "config/sweep_spec.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <set>
#include <sstream>

#include "difflab/error.h"
#include "strategy/strategy.h"

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

// [sweep], parsed: the chosen sampler and pruner with their settings, the space, the seeds.
struct SweepSpec {
  const SamplerKind* sampler = nullptr;
  const PrunerKind* pruner = nullptr;  // none: no pruning
  std::string method = "grid";         // what the file named: its method, else its sampler (sweeps.method)
  SweepSpace space;
  Axis seeds;
  StrategySettings sampler_settings, pruner_settings;
  std::optional<std::string> metric;
  std::optional<bool> maximize;
  std::map<std::string, ErrorContext> where;  // sweep.method, .sampler, .pruner, .metric, .direction
};

// The keys of [sweep] itself; every other undotted key is a strategy's (strategy/registry.cpp).
const std::set<std::string> kSweepKeys = {"method", "sampler", "pruner", "trials",  "seed",     "seeds",
                                          "exclude", "linked", "metric", "direction"};

// One strategy key's value from the file, checked against its declaration.
double strategy_value(const StrategyKey& key, const toml::node& node, const ErrorContext& where) {
  if (key.type == StrategyKey::Type::boolean) {
    if (!node.is_boolean()) throw ConfigError("expected true or false", where);
    return *node.value<bool>() ? 1.0 : 0.0;
  }
  if (key.type == StrategyKey::Type::number) {
    const auto value = node.value<double>();
    if (!node.is_number() || !value || !std::isfinite(*value) || *value < key.least)
      throw ConfigError(fmt::format("expected a number of at least {}", key.least), where);
    return *value;
  }
  const auto value = node.value<int64_t>();
  if (!node.is_integer() || !value || static_cast<double>(*value) < key.least)
    throw ConfigError(key.least == 0.0   ? std::string("expected a non-negative integer")
                      : key.least == 1.0 ? std::string("expected a positive integer")
                                         : fmt::format("expected an integer of at least {}", key.least),
                      where);
  return static_cast<double>(*value);
}

const StrategyKey* declared(const std::vector<StrategyKey>& keys, const std::string& name) {
  for (const StrategyKey& key : keys)
    if (key.name == name) return &key;
  return nullptr;
}

SweepSpec parse_sweep_table(const toml::table& sweep, const std::string& source) {
  auto context = [&](const toml::node& node, const std::string& key) {
    return ErrorContext::at(source, node.source().begin.line, node.source().begin.column, "sweep." + key);
  };
  SweepSpec spec;
  // `method` names both halves (asha: random trials, the asha rule); `sampler` and `pruner` one each.
  std::vector<std::string> methods, sampler_list, pruner_list;
  for (const SamplerKind* kind : samplers()) {
    sampler_list.push_back(kind->name);
    if (kind->method) methods.push_back(kind->name);
  }
  for (const PrunerKind* kind : pruners()) {
    if (kind->method) methods.push_back(kind->name);
    if (!kind->synchronous) pruner_list.push_back(kind->name);
  }
  pruner_list.push_back("none");
  spec.sampler = find_sampler("grid");
  if (const toml::node* method = sweep.get("method")) {
    const std::string name = method->value_or(std::string());
    if (std::find(methods.begin(), methods.end(), name) == methods.end())
      throw ConfigError("method must be " + name_list(methods), context(*method, "method"));
    spec.method = name;
    spec.where["sweep.method"] = context(*method, "method");
    if (const SamplerKind* sampler = find_sampler(name)) spec.sampler = sampler;
    else spec.sampler = find_sampler("random"), spec.pruner = find_pruner(name);
  }
  if (const toml::node* sampler = sweep.get("sampler")) {
    const std::string name = sampler->value_or(std::string());
    if (find_sampler(name) == nullptr)
      throw ConfigError("sampler must be " + name_list(sampler_list), context(*sampler, "sampler"));
    if (sweep.get("method") != nullptr)
      throw ConfigError("method and sampler: one or the other (method = \"asha\" is sampler = \"random\" with "
                        "pruner = \"asha\")",
                        context(*sampler, "sampler"));
    spec.method = name;
    spec.sampler = find_sampler(name);
    spec.where["sweep.sampler"] = context(*sampler, "sampler");
  }
  if (const toml::node* pruner = sweep.get("pruner")) {
    const std::string name = pruner->value_or(std::string());
    if (std::find(pruner_list.begin(), pruner_list.end(), name) == pruner_list.end())
      throw ConfigError("pruner must be " + name_list(pruner_list), context(*pruner, "pruner"));
    if (spec.pruner != nullptr)
      throw ConfigError("pruner is for a sampler (or method = \"grid\" or \"random\"); method = \"" + spec.method +
                            "\" prunes by its own rule",
                        context(*pruner, "pruner"));
    spec.pruner = find_pruner(name);  // "none": nullptr
    spec.where["sweep.pruner"] = context(*pruner, "pruner");
  }
  spec.sampler_settings = StrategySettings(spec.sampler->keys, source);
  if (spec.pruner != nullptr) spec.pruner_settings = StrategySettings(spec.pruner->keys, source);
  const std::string sampler_named = std::string(sweep.get("sampler") ? "sampler" : "method") + " = \"" + spec.method + "\"";
  const bool draws = spec.sampler->draws;
  std::vector<std::string> drawing;
  for (const SamplerKind* kind : samplers())
    if (kind->draws) drawing.push_back(kind->name);
  for (const auto& [key, node] : sweep) {
    const std::string name(key.str());
    if (name == "method" || name == "sampler" || name == "pruner") continue;
    if (name == "metric" || name == "direction") {
      // What a pruner decides on and a model-based sampler learns from.
      if (spec.pruner == nullptr && !spec.sampler->proposes)
        throw ConfigError(name + " is not a key of a sweep without a pruner", context(node, name));
      const auto text = node.value<std::string>();
      if (!text || text->empty()) throw ConfigError("expected a string", context(node, name));
      if (name == "metric") spec.metric = *text;
      else if (*text == "minimize" || *text == "maximize") spec.maximize = *text == "maximize";
      else throw ConfigError("direction must be \"minimize\" or \"maximize\"", context(node, name));
      spec.where["sweep." + name] = context(node, name);
      continue;
    }
    if (!kSweepKeys.count(name) && name.find('.') == std::string::npos) {
      // A strategy's key: the sampler's or the pruner's, else an error that says whose it is.
      if (const StrategyKey* own = declared(spec.sampler->keys, name)) {
        spec.sampler_settings.set(name, strategy_value(*own, node, context(node, name)), context(node, name));
        continue;
      }
      if (const StrategyKey* own = spec.pruner != nullptr ? declared(spec.pruner->keys, name) : nullptr) {
        spec.pruner_settings.set(name, strategy_value(*own, node, context(node, name)), context(node, name));
        continue;
      }
      std::vector<std::string> whose;
      for (const SamplerKind* kind : samplers())
        if (declared(kind->keys, name)) whose.push_back("sampler = \"" + kind->name + "\"");
      for (const PrunerKind* kind : pruners())
        if (declared(kind->keys, name)) whose.push_back((kind->synchronous ? "method = \"" : "pruner = \"") + kind->name + "\"");
      if (!whose.empty()) {
        const std::string these =
            sweep.get("pruner") == nullptr && spec.pruner != nullptr ? "method = \"" + spec.method + "\""
            : sampler_named + (spec.pruner != nullptr ? " with pruner = \"" + spec.pruner->name + "\"" : " without a pruner");
        std::string owners;
        for (size_t i = 0; i < whose.size(); ++i) owners += (i == 0 ? "" : i + 1 == whose.size() ? " or " : ", ") + whose[i];
        throw ConfigError(fmt::format("{} is a key of {}, not of {}", name, owners, these), context(node, name));
      }
      std::set<std::string> every(kSweepKeys.begin(), kSweepKeys.end());
      for (const SamplerKind* kind : samplers())
        for (const StrategyKey& k : kind->keys) every.insert(k.name);
      for (const PrunerKind* kind : pruners())
        for (const StrategyKey& k : kind->keys) every.insert(k.name);
      throw ConfigError("unknown sweep key \"" + name + "\"",
                        ErrorContext::at(source, key.source().begin.line, 0, "sweep." + name,
                                         fmt::format("sweep keys: {}, or a dotted parameter such as "
                                                     "\"loss.plugin\" = [\"mae\", \"mse\"]",
                                                     fmt::join(every, ", "))));
    }
    if (name == "trials" || name == "seed") {
      const auto value = node.value<int64_t>();
      if (!draws)
        throw ConfigError(fmt::format("{} is for sampler = {} (and the methods that prune)", name, name_list(drawing)),
                          context(node, name));
      if (!value || *value < (name == "trials" ? 1 : 0))
        throw ConfigError(name == "trials" ? "expected a positive integer" : "expected a non-negative integer",
                          context(node, name));
      if (name == "trials") spec.space.trials = *value;
      else spec.space.seed = static_cast<uint64_t>(*value);
    } else if (name == "seeds") {
      const toml::array* array = node.as_array();
      if (array == nullptr || array->empty() || !array->is_homogeneous(toml::node_type::integer))
        throw ConfigError("expected a non-empty array of integers", context(node, name));
      for (const auto& seed : *array) spec.seeds.push_back({"experiment.seed=" + value_text(seed)});
    } else if (name == "exclude") {
      const toml::array* array = node.as_array();
      if (array == nullptr) throw ConfigError("expected an array of tables", context(node, name));
      for (const auto& entry : *array) spec.space.excluded.push_back(inline_assignments(entry, "sweep.exclude", source));
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
        spec.space.axes.push_back(axis);
      }
    } else if (const toml::table* table = node.as_table()) {
      // { uniform = [low, high] } and friends (a drawing sampler only); { choice = [...] } = a plain array.
      if (table->size() != 1)
        throw ConfigError("expected one distribution: { choice | uniform | log_uniform | int_uniform = [...] }",
                          context(node, name));
      const std::string kind(table->begin()->first.str());
      const toml::array* values = table->begin()->second.as_array();
      if (kind != "choice" && kind != "uniform" && kind != "log_uniform" && kind != "int_uniform")
        throw ConfigError("unknown distribution \"" + kind + "\"",
                          ErrorContext::at(source, node.source().begin.line, node.source().begin.column,
                                           "sweep." + name, "distributions: choice, uniform, log_uniform, int_uniform"));
      if (!draws)
        throw ConfigError("a distribution needs sampler = " + name_list(drawing) + " (or method = \"random\")",
                          context(node, name));
      if (values == nullptr || values->empty())
        throw ConfigError("expected " + kind + " = [...] with values", context(node, name));
      if (kind == "choice") {
        Axis axis;
        for (const auto& value : *values) axis.push_back({name + "=" + value_text(value)});
        spec.space.axes.push_back(axis);
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
      spec.space.distributions.push_back({name, kind, *low, *high});
    } else {
      const toml::array* array = node.as_array();
      if (array == nullptr || array->empty())
        throw ConfigError("expected a non-empty array of values to sweep", context(node, name));
      Axis axis;
      for (const auto& value : *array) axis.push_back({name + "=" + value_text(value)});
      spec.space.axes.push_back(axis);
    }
  }
  if (draws && spec.space.trials == 0)
    throw ConfigError(sampler_named + " needs trials = N", ErrorContext::for_key(source, "sweep.trials"));
  return spec;
}

}  // namespace

// [sweep] -> its points, in order (seeds innermost), without the excluded ones.
std::vector<Assignments> expand_sweep(const toml::table& sweep, const std::string& source) {
  const SweepSpec spec = parse_sweep_table(sweep, source);
  const std::optional<std::vector<Assignments>> points =
      spec.sampler->make(spec.sampler_settings)->points(spec.space, source);
  if (!points)
    throw ConfigError("sampler = \"" + spec.sampler->name + "\" proposes its trials as they run; they are not listed",
                      ErrorContext::for_key(source, "sweep.sampler"));
  if (spec.seeds.empty()) return *points;
  std::vector<Assignments> seeded;
  for (const auto& point : *points)
    for (const auto& seed : spec.seeds) {
      Assignments extended = point;
      extended.insert(extended.end(), seed.begin(), seed.end());
      if (!spec.space.is_excluded(extended)) seeded.push_back(extended);
    }
  return seeded;
}

std::optional<SearchSpace> search_space(const toml::table& sweep, const std::string& source) {
  const SweepSpec spec = parse_sweep_table(sweep, source);
  if (!spec.sampler->proposes) return std::nullopt;
  const std::string named = "sampler = \"" + spec.sampler->name + "\"";
  if (!spec.seeds.empty())
    throw ConfigError("seeds with " + named + ": a proposal is one run (set experiment.seed, or sweep seeds with "
                      "sampler = \"random\")",
                      ErrorContext::for_key(source, "sweep.seeds"));
  SearchSpace space;
  space.trials = spec.space.trials;
  space.seed = spec.space.seed;
  space.sampler_name = spec.sampler->name;
  space.sampler = spec.sampler->make(spec.sampler_settings);
  space.settings = spec.sampler_settings;
  space.excluded = spec.space.excluded;
  for (const Axis& axis : spec.space.axes) {
    SearchSpace::Dimension dimension;
    dimension.key = axis.front().front().substr(0, axis.front().front().find('='));
    dimension.kind = "choice";
    dimension.alternatives = axis;
    space.dimensions.push_back(std::move(dimension));
  }
  for (const Distribution& distribution : spec.space.distributions)
    space.dimensions.push_back({distribution.key, distribution.kind, distribution.low, distribution.high, {}});
  if (space.dimensions.empty())
    throw ConfigError(named + " has nothing to search: give an axis or a distribution",
                      ErrorContext::for_key(source, "sweep"));
  space.metric = spec.metric.value_or("val_kid");
  space.maximize = spec.maximize.value_or(false);
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

std::optional<AdaptiveSweep> adaptive_sweep(const toml::table& sweep, const std::string& source) {
  SweepSpec spec = parse_sweep_table(sweep, source);
  if (spec.pruner == nullptr) return std::nullopt;
  AdaptiveSweep adaptive = make_adaptive(*spec.pruner, std::move(spec.pruner_settings),
                                         spec.metric.value_or("val_kid"), spec.maximize.value_or(false));
  adaptive.where = spec.where;
  for (const char* key : {"metric", "pruner", "method"})
    if (!adaptive.where.count(std::string("sweep.") + key))
      adaptive.where[std::string("sweep.") + key] = ErrorContext::for_key(source, std::string("sweep.") + key);
  return adaptive;
}

AdaptiveSweep make_adaptive(const PrunerKind& kind, StrategySettings settings, std::string metric, bool maximize) {
  AdaptiveSweep adaptive;
  adaptive.name = kind.name;
  adaptive.synchronous = kind.synchronous;
  adaptive.pruner = kind.make(settings);
  adaptive.settings = std::move(settings);
  adaptive.metric = std::move(metric);
  adaptive.maximize = maximize;
  return adaptive;
}

}  // namespace difflab
