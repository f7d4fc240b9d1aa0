#include "difflab/experiment.h"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <cmath>
#include <map>
#include <random>
#include <sstream>
#include <toml++/toml.h>

#include "difflab/cache.h"
#include "difflab/error.h"
#include "difflab/registry.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

constexpr const char* kOverrideSource = "--set";

struct SectionDefault {
  const char* name;
  bool has_plugin;
  Family family;
  const char* default_plugin;
};

const std::vector<SectionDefault>& section_defaults() {
  static const std::vector<SectionDefault> sections = {
      {"experiment", false, Family::dataset, ""},
      {"data", true, Family::dataset, "fashion_mnist"},
      {"network", true, Family::network, "residual_unet"},
      {"schedule", true, Family::schedule, "cosine"},
      {"loss", true, Family::loss, "mae"},
      {"sampler", true, Family::sampler, "ddim"},
      {"features", true, Family::features, "pixels"},
      {"training", false, Family::dataset, ""},
      {"evaluation", false, Family::dataset, ""},
  };
  return sections;
}

const SectionDefault& section_default(const std::string& name) {
  for (const auto& section : section_defaults())
    if (name == section.name) return section;
  throw std::logic_error("difflab: unknown section " + name);
}

// Where a key came from, for error messages: the file's line and column, or the --set option.
struct Locator {
  std::string source;
  std::map<std::string, std::string> overridden;  // dotted key -> where it was set ("--set", ...)

  ErrorContext at(const std::string& dotted_key, const toml::source_region& region) const {
    if (auto it = overridden.find(dotted_key); it != overridden.end()) return {it->second, 0, 0, dotted_key, ""};
    return {source, static_cast<int64_t>(region.begin.line),
            static_cast<int64_t>(region.begin.column), dotted_key, ""};
  }
};

const char* toml_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    default: return "date/time";
  }
}

template <class T, class Convert>
std::optional<std::vector<T>> convert_array(const toml::node& node, Convert convert_one) {
  const toml::array* array = node.as_array();
  if (array == nullptr) return std::nullopt;
  std::vector<T> values;
  for (const auto& element : *array) {
    std::optional<T> value = convert_one(element);
    if (!value) return std::nullopt;
    values.push_back(*value);
  }
  return values;
}

std::optional<int64_t> to_integer(const toml::node& node) { return node.value_exact<int64_t>(); }
std::optional<double> to_real(const toml::node& node) {
  if (node.is_integer()) return static_cast<double>(*node.value_exact<int64_t>());
  return node.value_exact<double>();
}
std::optional<std::string> to_string_value(const toml::node& node) {
  return node.value_exact<std::string>();
}

std::optional<ParamValue> convert(const toml::node& node, ParamType type) {
  switch (type) {
    case ParamType::boolean:
      if (auto v = node.value_exact<bool>()) return ParamValue(*v);
      return std::nullopt;
    case ParamType::integer:
      if (auto v = to_integer(node)) return ParamValue(*v);
      return std::nullopt;
    case ParamType::real:
      if (auto v = to_real(node)) return ParamValue(*v);
      return std::nullopt;
    case ParamType::string:
      if (auto v = to_string_value(node)) return ParamValue(*v);
      return std::nullopt;
    case ParamType::integer_list:
      if (auto v = convert_array<int64_t>(node, to_integer)) return ParamValue(*v);
      return std::nullopt;
    case ParamType::real_list:
      if (auto v = convert_array<double>(node, to_real)) return ParamValue(*v);
      return std::nullopt;
    case ParamType::string_list:
      if (auto v = convert_array<std::string>(node, to_string_value)) return ParamValue(*v);
      return std::nullopt;
  }
  return std::nullopt;
}

ParamSchema make_schema(std::initializer_list<ParamSpec> specs) { return ParamSchema(specs); }

std::vector<std::string> schema_names(const ParamSchema& schema, bool with_plugin) {
  std::vector<std::string> names;
  if (with_plugin) names.push_back("plugin");
  for (const auto& spec : schema) names.push_back(spec.name);
  return names;
}

void apply_override(toml::table& root, const std::string& text, Locator& locator,
                    const std::string& source = kOverrideSource) {
  size_t equals = text.find('=');
  size_t dot = text.find('.');
  if (equals == std::string::npos || dot == std::string::npos || dot > equals || dot == 0 ||
      dot + 1 == equals)
    throw ConfigError("expected section.key=value, got \"" + text + "\"",
                      {kOverrideSource, 0, 0, "", "e.g. --set training.epochs=2"});
  std::string section = text.substr(0, dot);
  std::string key = text.substr(dot + 1, equals - dot - 1);
  std::string value_text = text.substr(equals + 1);

  toml::table* table = root[section].as_table();
  if (table == nullptr) {
    root.insert_or_assign(section, toml::table{});
    table = root[section].as_table();
  }
  // A value in TOML syntax (2, 0.5, true, [32, 64], "mae"); a bare word is a string.
  toml::table parsed;
  try {
    parsed = toml::parse("value = " + value_text);
  } catch (const toml::parse_error&) {
    parsed.insert_or_assign("value", value_text);
  }
  const toml::node& value = *parsed.get("value");

  // Another plugin takes its own parameters: the file's keys of this section that belong to the
  // old plugin are dropped (framework keys and other --set keys stay).
  const toml::node* old_plugin = table->get("plugin");
  if (key == "plugin" && (old_plugin == nullptr ||
                          old_plugin->value<std::string>() != value.value<std::string>())) {
    std::vector<std::string> dropped;
    const bool known_section =
        std::find(section_names().begin(), section_names().end(), section) != section_names().end();
    for (const auto& [name, node] : *table) {
      const std::string existing(name.str());
      bool framework_key = false;
      if (known_section)
        for (const auto& spec : framework_schema(section)) framework_key |= spec.name == existing;
      if (!framework_key && !locator.overridden.count(section + "." + existing)) dropped.push_back(existing);
    }
    for (const auto& name : dropped) table->erase(name);
  }
  table->insert_or_assign(key, value);
  locator.overridden[section + "." + key] = source;
}

Params resolve_section(const toml::table* table, const std::string& section,
                       const std::string& plugin, const ParamSchema& schema,
                       const Locator& locator) {
  Params params;
  if (table != nullptr) {
    for (const auto& [key, node] : *table) {
      const std::string name(key.str());
      const std::string dotted = section + "." + name;
      if (name == "plugin") continue;
      ErrorContext context = locator.at(dotted, key.source());
      auto spec = std::find_if(schema.begin(), schema.end(),
                               [&](const ParamSpec& s) { return s.name == name; });
      if (spec == schema.end()) {
        std::vector<std::string> names = schema_names(schema, !plugin.empty());
        std::string nearest = nearest_name(name, names);
        context.hint = nearest.empty() ? "" : "did you mean \"" + nearest + "\"? ";
        context.hint += fmt::format("valid keys of [{}]{}: {}", section,
                                    plugin.empty() ? "" : " with plugin \"" + plugin + "\"",
                                    fmt::join(names, ", "));
        throw ConfigError("unknown key \"" + name + "\"", context);
      }
      std::optional<ParamValue> value = convert(node, spec->type);
      if (!value)
        throw ConfigError(fmt::format("wrong type: expected {}, got {}", to_string(spec->type),
                                      toml_type_name(node)),
                          context);
      std::string problem = spec->check(*value);
      if (!problem.empty()) throw ConfigError(problem, context);
      params.set(name, *value);
    }
  }
  Params ordered;  // schema order, defaults filled in
  for (const auto& spec : schema)
    ordered.set(spec.name, params.has(spec.name) ? params.get(spec.name) : spec.default_value);
  return ordered;
}

// The value's location, or the section's when the key is absent (defaulted).
ErrorContext locate(const toml::table* table, const std::string& section, const std::string& key,
                    const Locator& locator) {
  const std::string dotted = section + "." + key;
  if (table != nullptr) {
    if (const toml::node* node = table->get(key)) return locator.at(dotted, node->source());
    return locator.at(dotted, table->source());
  }
  return {locator.source, 0, 0, dotted, ""};
}

Experiment resolve(toml::table& root, Locator& locator, const fs::path& base_dir,
                   PluginRegistry& registry) {
  for (const auto& [key, node] : root) {
    const std::string name(key.str());
    std::vector<std::string> names = section_names();
    ErrorContext context = locator.at(name, key.source());
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      std::string nearest = nearest_name(name, names);
      context.hint = (nearest.empty() ? "" : "did you mean [" + nearest + "]? ") +
                     fmt::format("valid sections: {}", fmt::join(names, ", "));
      throw ConfigError("unknown section [" + name + "]", context);
    }
    if (!node.is_table())
      throw ConfigError(fmt::format("expected a table [{}], got {}", name, toml_type_name(node)),
                        context);
  }

  Experiment experiment;
  for (const auto& name : section_names()) {
    const SectionDefault& defaults = section_default(name);
    const toml::table* table = root[name].as_table();
    Section section{name, "", {}};
    ParamSchema schema = framework_schema(name);
    const PluginInfo* info = nullptr;
    if (defaults.has_plugin) {
      section.plugin = defaults.default_plugin;
      if (table != nullptr) {
        if (const toml::node* node = table->get("plugin")) {
          auto plugin = node->value_exact<std::string>();
          if (!plugin)
            throw ConfigError(fmt::format("wrong type: expected string, got {}",
                                          toml_type_name(*node)),
                              locate(table, name, "plugin", locator));
          section.plugin = *plugin;
        }
      }
      info = &registry.get(defaults.family, section.plugin, locate(table, name, "plugin", locator));
      schema.insert(schema.end(), info->schema.begin(), info->schema.end());
    }
    section.params = resolve_section(table, name, section.plugin, schema, locator);
    if (info != nullptr && info->validate != nullptr) {
      ParamIssue issue = info->validate(section.params);
      if (!issue.key.empty()) throw ConfigError(issue.message, locate(table, name, issue.key, locator));
    }
    experiment.sections.push_back(std::move(section));

    if (name == "experiment") {
      // Plugin folders listed by the experiment, relative to the experiment file.
      for (const auto& dir : experiment.sections.back().params.strings("plugin_paths")) {
        fs::path path = fs::path(dir).is_absolute() ? fs::path(dir) : base_dir / dir;
        if (!fs::is_directory(path))
          throw ConfigError("plugin folder " + path.string() + " does not exist",
                            locate(table, name, "plugin_paths", locator));
        registry.add_search_dir(path);
      }
    }
  }
  return experiment;
}

Experiment parse_root(toml::table root, const std::string& source, const fs::path& base_dir,
                      const std::vector<std::string>& overrides, PluginRegistry& registry,
                      const std::vector<std::string>& point = {}) {
  Locator locator{source, {}};
  for (const auto& text : point) apply_override(root, text, locator, source + " [sweep]");
  for (const auto& text : overrides) apply_override(root, text, locator);
  Experiment experiment = resolve(root, locator, base_dir, registry);
  experiment.file = source;
  return experiment;
}

// One sweep axis: its alternatives, each a list of "section.key=value" assignments.
using Assignments = std::vector<std::string>;
using Axis = std::vector<Assignments>;

std::string value_text(const toml::node& node) {
  std::ostringstream text;
  node.visit([&](const auto& value) { text << value; });
  return text.str();
}

// {"loss.plugin" = "mse", ...} -> assignments; every key must be dotted.
Assignments inline_assignments(const toml::node& node, const std::string& where, const std::string& source) {
  const toml::table* table = node.as_table();
  if (table == nullptr)
    throw ConfigError("expected a table of dotted keys, e.g. { \"loss.plugin\" = \"mse\" }",
                      {source, static_cast<int64_t>(node.source().begin.line),
                       static_cast<int64_t>(node.source().begin.column), where, ""});
  Assignments assignments;
  for (const auto& [key, value] : *table) {
    const std::string name(key.str());
    if (name.find('.') == std::string::npos)
      throw ConfigError("expected a dotted key such as \"loss.plugin\", got \"" + name + "\"",
                        {source, static_cast<int64_t>(key.source().begin.line), 0, where, ""});
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
  std::string method = "grid";
  int64_t trials = 0;
  uint64_t draw_seed = 0;
  std::vector<Axis> axes;
  std::vector<Distribution> distributions;
  Axis seeds;
  std::vector<Assignments> excluded;
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

SweepSpec parse_sweep_table(const toml::table& sweep, const std::string& source) {
  auto context = [&](const toml::node& node, const std::string& key) {
    return ErrorContext{source, static_cast<int64_t>(node.source().begin.line),
                        static_cast<int64_t>(node.source().begin.column), "sweep." + key, ""};
  };
  SweepSpec spec;
  if (const toml::node* method = sweep.get("method")) {
    const auto name = method->value<std::string>();
    if (name != std::string("grid") && name != std::string("random"))
      throw ConfigError("method must be \"grid\" or \"random\"", context(*method, "method"));
    spec.method = *name;
  }
  const bool random = spec.method == "random";
  for (const auto& [key, node] : sweep) {
    const std::string name(key.str());
    if (name == "method") continue;
    if (name == "trials" || name == "seed") {
      const auto value = node.value<int64_t>();
      if (!random)
        throw ConfigError(name + " is for method = \"random\"", context(node, name));
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
                        {source, static_cast<int64_t>(key.source().begin.line), 0, "sweep." + name,
                         "sweep keys: method, trials, seed, seeds, exclude, linked, or a dotted "
                         "parameter such as \"loss.plugin\" = [\"mae\", \"mse\"]"});
    } else if (const toml::table* table = node.as_table()) {
      // { uniform = [low, high] } and friends (random only); { choice = [...] } = a plain array.
      if (table->size() != 1)
        throw ConfigError("expected one distribution: { choice | uniform | log_uniform | int_uniform = [...] }",
                          context(node, name));
      const std::string kind(table->begin()->first.str());
      const toml::array* values = table->begin()->second.as_array();
      if (kind != "choice" && kind != "uniform" && kind != "log_uniform" && kind != "int_uniform")
        throw ConfigError("unknown distribution \"" + kind + "\"",
                          {source, static_cast<int64_t>(node.source().begin.line),
                           static_cast<int64_t>(node.source().begin.column), "sweep." + name,
                           "distributions: choice, uniform, log_uniform, int_uniform"});
      if (!random)
        throw ConfigError("a distribution needs method = \"random\"", context(node, name));
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
    throw ConfigError("method = \"random\" needs trials = N", {source, 0, 0, "sweep.trials", ""});
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
                      {source, 0, 0, "sweep.trials", "the space is smaller than trials: lower trials or widen it"});
  return points;
}

// [sweep] -> its points, in order (seeds innermost), without the excluded ones.
std::vector<Assignments> expand_sweep(const toml::table& sweep, const std::string& source) {
  const SweepSpec spec = parse_sweep_table(sweep, source);
  std::vector<Assignments> points;
  if (spec.method == "random") {
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

std::vector<SweepRun> expand_root(toml::table root, const std::string& source, const fs::path& base_dir,
                                  const std::vector<std::string>& overrides, PluginRegistry& registry) {
  const toml::node* sweep_node = root.get("sweep");
  if (sweep_node == nullptr) return {{parse_root(std::move(root), source, base_dir, overrides, registry), "", ""}};
  if (!sweep_node->is_table())
    throw ConfigError("expected a table [sweep]", {source, static_cast<int64_t>(sweep_node->source().begin.line), 0, "sweep", ""});
  const std::vector<Assignments> points = expand_sweep(*sweep_node->as_table(), source);
  root.erase("sweep");
  if (points.empty()) throw ConfigError("the sweep excludes every point", {source, 0, 0, "sweep.exclude", ""});

  // Every point is validated before anything runs, and every invalid one is reported.
  std::vector<SweepRun> runs;
  std::vector<std::string> problems;
  for (const auto& point : points) {
    std::string description, variant;
    for (const auto& assignment : point) {
      description += (description.empty() ? "" : ", ") + assignment;
      if (assignment.rfind("experiment.seed=", 0) != 0) variant += (variant.empty() ? "" : ", ") + assignment;
    }
    try {
      runs.push_back({parse_root(root, source, base_dir, overrides, registry, point), description, variant});
    } catch (const Error& error) {
      problems.push_back(fmt::format("point {} ({}): {}", runs.size() + problems.size() + 1, description, error.what()));
    }
  }
  if (!problems.empty())
    throw ConfigError(fmt::format("{} of {} sweep points are invalid:\n  {}", problems.size(), points.size(),
                                  fmt::join(problems, "\n  ")),
                      {source, 0, 0, "sweep", ""});
  return runs;
}

ErrorContext parse_error_context(const toml::parse_error& error, const std::string& source) {
  return {source, static_cast<int64_t>(error.source().begin.line),
          static_cast<int64_t>(error.source().begin.column), "", ""};
}

}  // namespace

const std::vector<std::string>& section_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> result;
    for (const auto& section : section_defaults()) result.emplace_back(section.name);
    return result;
  }();
  return names;
}

bool section_has_plugin(const std::string& section, Family* family) {
  const SectionDefault& defaults = section_default(section);
  if (family != nullptr) *family = defaults.family;
  return defaults.has_plugin;
}

const ParamSchema& framework_schema(const std::string& section) {
  static const std::map<std::string, ParamSchema> schemas = {
      {"experiment",
       make_schema({
           ParamSpec::string("name", "experiment", "name of the experiment, recorded on each run"),
           ParamSpec::string("database", "results/difflab.sqlite",
                             "SQLite results database (relative to the working directory)")
               .is_path(),
           ParamSpec::string("output_dir", "runs",
                             "folder for sample grids and checkpoints (one sub-folder per run)")
               .is_path(),
           ParamSpec::integer("seed", 42, "seed of every random generator").at_least(0),
           ParamSpec::string("device", "auto", "where to train; auto = cuda when available")
               .one_of({"auto", "cpu", "cuda"}),
           ParamSpec::string("precision", "fp32", "bf16 = bfloat16 autocast (AMX on recent CPUs)")
               .one_of({"fp32", "bf16"}),
           ParamSpec::boolean("channels_last", false, "NHWC memory format for conv speed"),
           ParamSpec::integer("threads", 0, "CPU threads; 0 = all cores").at_least(0),
           ParamSpec::strings("plugin_paths", {},
                              "extra plugin folders (relative to the experiment file)"),
       })},
      {"data", make_schema({ParamSpec::integer("image_size", 64,
                                               "side of the square images the network sees")
                                .at_least(4)
                                .at_most(4096)})},
      {"network", make_schema({ParamSpec::string("prediction", "noise",
                                                  "what the network outputs: noise (the seed's), image or "
                                                  "velocity v = s·ε − n·x₀")
                                    .one_of({"noise", "image", "velocity"})})},
      {"schedule", {}},
      {"loss", make_schema({
                   ParamSpec::string("target", "noise",
                                     "what the training loss compares: noise (the seed's), image or velocity")
                       .one_of({"noise", "image", "velocity"}),
                   ParamSpec::string("weighting", "none", "per-sample loss weights: none or min_snr (Hang et al. 2023)")
                       .one_of({"none", "min_snr"}),
                   ParamSpec::real("min_snr_gamma", 5.0, "γ of min-SNR-γ weighting").greater_than(0),
               })},
      {"sampler", {}},
      {"features", {}},
      {"training",
       make_schema({
           ParamSpec::integer("epochs", 1, "passes over the training set").at_least(1),
           ParamSpec::integer("batch_size", 64, "images per training step").at_least(1),
           ParamSpec::integer("steps_per_epoch", 0,
                              "cap on steps per epoch; 0 = the whole training set")
               .at_least(0),
           ParamSpec::real("learning_rate", 1e-3, "AdamW learning rate").greater_than(0),
           ParamSpec::real("weight_decay", 1e-4, "AdamW decoupled weight decay").at_least(0),
           ParamSpec::real("ema", 0.999, "decay of the exponential moving average of weights")
               .at_least(0)
               .less_than(1),
           ParamSpec::boolean("ema_warmup", true,
                              "decay = min(ema, (1+step)/(10+step)); needed for short runs"),
       })},
      {"evaluation",
       make_schema({
           ParamSpec::integer("kid_diffusion_steps", 5, "sampling steps for KID").at_least(1),
           ParamSpec::integer("plot_diffusion_steps", 20, "sampling steps for the image grid")
               .at_least(1),
           ParamSpec::integer("grid_rows", 3, "rows of the per-epoch image grid").at_least(1),
           ParamSpec::integer("grid_cols", 6, "columns of the per-epoch image grid").at_least(1),
           ParamSpec::integer("grid_scale", 2, "pixel upscaling of the grid PNG").at_least(1).at_most(16),
           ParamSpec::integer("validation_batches", 8,
                              "validation batches for val losses each epoch; 0 = all")
               .at_least(0),
           ParamSpec::string("kid_protocol", "per_batch",
                             "per_batch = the seed's (each validation batch against a generated "
                             "batch), subsets = clean-fid's, none = no KID")
               .one_of({"per_batch", "subsets", "none"}),
           ParamSpec::integer("kid_batches", 8,
                              "validation batches (and as many generated) for KID; 0 = all")
               .at_least(0),
           ParamSpec::integer("kid_every", 1, "compute KID every N epochs (and after the last)")
               .at_least(1),
           ParamSpec::integer("kid_subsets", 100, "subsets protocol: number of random subsets")
               .at_least(1),
           ParamSpec::integer("kid_subset_size", 1000,
                              "subsets protocol: rows per subset (capped at the sample count)")
               .at_least(2),
       })},
  };
  return schemas.at(section);
}

const Section& Experiment::section(const std::string& name) const {
  for (const auto& section : sections)
    if (section.name == name) return section;
  throw std::logic_error("difflab: experiment has no section " + name);
}

Section& Experiment::section(const std::string& name) {
  return const_cast<Section&>(static_cast<const Experiment&>(*this).section(name));
}

std::string Experiment::to_toml() const {
  std::string text;
  for (const auto& section : sections) {
    text += (text.empty() ? "[" : "\n[") + section.name + "]\n";
    if (!section.plugin.empty()) text += "plugin = " + format_value(section.plugin) + "\n";
    for (const auto& [key, value] : section.params.items())
      text += key + " = " + format_value(value) + "\n";
  }
  return text;
}

std::vector<std::pair<std::string, ParamValue>> Experiment::leaves() const {
  std::vector<std::pair<std::string, ParamValue>> result;
  for (const auto& section : sections) {
    if (!section.plugin.empty()) result.emplace_back(section.name + ".plugin", section.plugin);
    for (const auto& [key, value] : section.params.items())
      result.emplace_back(section.name + "." + key, value);
  }
  return result;
}

std::string Experiment::config_hash() const {
  return fmt::format("{:016x}", fnv1a(to_toml()));
}

std::string Experiment::variant_hash() const {
  Experiment unseeded = *this;
  unseeded.section("experiment").params.set("seed", int64_t{-1});  // no real seed is -1
  return unseeded.config_hash();
}

std::string Experiment::training_hash() const {
  Experiment training = *this;
  training.sections.erase(std::remove_if(training.sections.begin(), training.sections.end(),
                                         [](const Section& section) {
                                           return section.name == "sampler" || section.name == "evaluation";
                                         }),
                          training.sections.end());
  return training.config_hash();
}

BuildContext Experiment::build_context(int64_t image_channels) const {
  return {section("data").params.integer("image_size"), image_channels};
}

namespace {

toml::table read_file(const fs::path& file) {
  if (!fs::is_regular_file(file))
    throw ConfigError("experiment file not found", {file.string(), 0, 0, "", ""});
  try {
    return toml::parse_file(file.string());
  } catch (const toml::parse_error& error) {
    throw ConfigError("TOML syntax error: " + std::string(error.description()),
                      parse_error_context(error, file.string()));
  }
}

toml::table parse_text(const std::string& toml_text, const std::string& source_name) {
  try {
    return toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& error) {
    throw ConfigError("TOML syntax error: " + std::string(error.description()),
                      parse_error_context(error, source_name));
  }
}

Experiment single(std::vector<SweepRun> runs, const std::string& source) {
  if (runs.size() != 1)
    throw ConfigError(fmt::format("this is a sweep of {} runs; this command takes one experiment", runs.size()),
                      {source, 0, 0, "sweep", "pick one point with --set, or use difflab run / check"});
  return std::move(runs.front().experiment);
}

}  // namespace

std::vector<SweepRun> load_sweep(const fs::path& file, const std::vector<std::string>& overrides,
                                 PluginRegistry& registry) {
  return expand_root(read_file(file), file.string(), file.parent_path(), overrides, registry);
}

std::vector<SweepRun> parse_sweep(const std::string& toml_text, const std::string& source_name,
                                  const std::vector<std::string>& overrides, PluginRegistry& registry) {
  return expand_root(parse_text(toml_text, source_name), source_name, fs::current_path(), overrides, registry);
}

Experiment load_experiment(const fs::path& file, const std::vector<std::string>& overrides,
                           PluginRegistry& registry) {
  return single(load_sweep(file, overrides, registry), file.string());
}

Experiment parse_experiment(const std::string& toml_text, const std::string& source_name,
                            const std::vector<std::string>& overrides, PluginRegistry& registry) {
  return single(parse_sweep(toml_text, source_name, overrides, registry), source_name);
}

}  // namespace difflab
