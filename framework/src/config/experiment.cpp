#include "config/experiment.h"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <cmath>
#include <map>
#include <set>
#include <random>
#include <sstream>
#include <tuple>
#include <toml++/toml.h>

#include "config/settings.h"
#include "config/sweep_spec.h"
#include "difflab/cache.h"
#include "difflab/error.h"
#include "plugin_host/registry.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

constexpr const char* kOverrideSource = "--set";

struct SectionDefault {
  const char* name;
  bool has_plugin;
  Family family;
  const char* default_plugin;
  // Whether the section decides the trained network. Runs that differ only in sections that do
  // not (sampling, evaluation, the KID feature extractor) share one training (training_hash).
  bool defines_training;
};

const std::vector<SectionDefault>& section_defaults() {
  static const std::vector<SectionDefault> sections = {
      // name          plugin  family             default plugin   defines the trained network
      {"experiment",   false,  Family::dataset,   "",              true},
      {"data",         true,   Family::dataset,   "fashion_mnist", true},
      {"network",      true,   Family::network,   "residual_unet", true},
      {"schedule",     true,   Family::schedule,  "cosine",        true},
      {"loss",         true,   Family::loss,      "mae",           true},
      {"sampler",      true,   Family::sampler,   "ddim",          false},
      {"features",     true,   Family::features,  "pixels",        false},
      {"training",     false,  Family::dataset,   "",              true},
      {"evaluation",   false,  Family::dataset,   "",              false},
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
    if (auto it = overridden.find(dotted_key); it != overridden.end()) return ErrorContext::for_key(it->second, dotted_key);
    return ErrorContext::at(source, region.begin.line, region.begin.column, dotted_key);
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
                      ErrorContext::in_file(kOverrideSource, "e.g. --set training.epochs=2"));
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

bool is_framework_key(const std::string& section, const std::string& key) {
  for (const auto& spec : framework_schema(section))
    if (spec.name == key) return true;
  return false;
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
      // A plugin's file path is relative to the working directory, like database and output_dir,
      // and stored absolute: the resolved experiment (in checkpoints, in the database) then
      // means the same file from any folder (difflab sample --checkpoint elsewhere).
      if (spec->path && !plugin.empty() && !is_framework_key(section, name)) {
        const std::string& path = std::get<std::string>(*value);
        if (!path.empty() && fs::path(path).is_relative()) value = fs::absolute(path).lexically_normal().string();
      }
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
  return ErrorContext::for_key(locator.source, dotted);
}

// What the [evaluation] keys need of each other: best_by among the metrics computed, and the
// k-NN metrics' k below the number of samples they compare (kid_batches x batch_size of each).
void check_evaluation(const Experiment& experiment, toml::table& root, Locator& locator) {
  const Settings settings = experiment.settings();
  const EvaluationSettings& evaluation = settings.evaluation;
  const toml::table* table = root["evaluation"].as_table();
  const std::string best = evaluation.best_by.substr(4);  // val_<name>
  if (!evaluation.has_metric(best))
    throw ConfigError(fmt::format("best_by = \"{}\" is not computed: evaluation.metrics is [{}]", evaluation.best_by,
                                  fmt::join(evaluation.metrics, ", ")),
                      locate(table, "evaluation", "best_by", locator));
  const int64_t samples = evaluation.kid_batches * settings.training.batch_size;  // 0: all, known with the data
  for (const auto& [key, k, metrics] :
       {std::make_tuple("pr_k", evaluation.pr_k, std::vector<std::string>{"precision", "recall"}),
        std::make_tuple("dc_k", evaluation.dc_k, std::vector<std::string>{"density", "coverage"})}) {
    const bool used = std::any_of(metrics.begin(), metrics.end(), [&](const std::string& m) { return evaluation.has_metric(m); });
    if (used && samples > 0 && k >= samples)
      throw ConfigError(fmt::format("{} = {} needs more samples than that: the metrics compare kid_batches x "
                                    "batch_size = {} real and {} generated images",
                                    key, k, samples, samples),
                        locate(table, "evaluation", key, locator));
  }
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
  check_evaluation(experiment, root, locator);
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

// What an adaptive sweep needs of its trials, checked before anything runs: one maximum of
// epochs R (training.epochs, not swept), min_epochs at most R, and a metric every run records at
// every epoch where a decision is taken.
void check_adaptive(const AdaptiveSweep& adaptive, const std::vector<SweepRun>& runs) {
  const std::string file = runs.front().experiment.file.string();
  const Settings first = runs.front().experiment.settings();
  const int64_t epochs = first.training.epochs;
  for (const auto& run : runs)
    if (run.experiment.settings().training.epochs != epochs)
      throw ConfigError("the trials of an adaptive sweep share training.epochs (the most a trial trains); it is "
                        "not a key to sweep",
                        ErrorContext::for_key(file, "training.epochs", "sweep other keys"));
  if (adaptive.pruner) adaptive.pruner->check(epochs);
  std::set<std::string> recorded = {"loss",    "n_loss",     "i_loss",     "v_loss",
                                    "val_loss", "val_n_loss", "val_i_loss", "val_v_loss",
                                    "train_images_per_second", "epoch_seconds"};
  for (const auto& [name, higher_is_better] : sample_metrics()) recorded.insert("val_" + name);
  if (!recorded.count(adaptive.metric))
    throw ConfigError(fmt::format("metric \"{}\" is never recorded; a run records {} every epoch", adaptive.metric,
                                  fmt::join(recorded, ", ")),
                      adaptive.where.at("sweep.metric"));
  const auto sample = std::find_if(sample_metrics().begin(), sample_metrics().end(),
                                   [&](const auto& m) { return "val_" + m.first == adaptive.metric; });
  if (sample == sample_metrics().end()) return;
  // A sample metric has one direction: lower KID and FID, higher precision, recall, density and
  // coverage are better; a sweep that optimised the other way would select the worst trials.
  if (adaptive.maximize != sample->second)
    throw ConfigError(fmt::format("metric \"{}\" is {}d: set direction = \"{}\"", adaptive.metric,
                                  sample->second ? "maximize" : "minimize", sample->second ? "maximize" : "minimize"),
                      adaptive.where.count("sweep.direction") ? adaptive.where.at("sweep.direction")
                                                              : adaptive.where.at("sweep.metric"));
  if (first.evaluation.kid_protocol == KidProtocol::none)
    throw ConfigError(adaptive.metric == "val_kid"
                          ? std::string("metric \"val_kid\" needs KID: evaluation.kid_protocol is \"none\"")
                          : fmt::format("metric \"{}\" needs generated samples: evaluation.kid_protocol is \"none\", "
                                        "which turns every sample metric off", adaptive.metric),
                      adaptive.where.at("sweep.metric"));
  if (!first.evaluation.has_metric(sample->first))
    throw ConfigError(fmt::format("metric \"{}\" is not computed: evaluation.metrics is [{}]", adaptive.metric,
                                  fmt::join(first.evaluation.metrics, ", ")),
                      adaptive.where.at("sweep.metric"));
  // Every rung epoch of every bracket must have the sample metrics (kid_every divides it, or it is
  // the last).
  if (!adaptive.pruner) return;
  const int64_t every = first.evaluation.kid_every;
  for (int64_t bracket = 0; bracket < adaptive.pruner->brackets(epochs); ++bracket)
    for (int64_t epoch : adaptive.pruner->rungs(bracket, epochs))
      if (epoch % every != 0)
        throw ConfigError(fmt::format("metric \"{}\" is not recorded at rung epoch {}: evaluation.kid_every = {} "
                                      "skips it",
                                      adaptive.metric, epoch, every),
                          ErrorContext::for_key(file, "evaluation.kid_every",
                                                "use a kid_every that divides every rung epoch (sweep.min_epochs × "
                                                "reduction_factor^k), or another sweep.metric"));
}

// A model-based sweep (sampler = "tpe") as one SweepRun holding its space. Its points are
// proposed as it runs; here every alternative of every choice and both bounds of every
// distribution are validated (each with the other dimensions at their first value), so that a bad
// value fails before anything runs, as every point of a grid does.
std::vector<SweepRun> search_root(toml::table root, SearchSpace space, const std::string& source,
                                  const fs::path& base_dir, const std::vector<std::string>& overrides,
                                  PluginRegistry& registry) {
  const toml::table& sweep = *root.get("sweep")->as_table();
  std::optional<AdaptiveSweep> adaptive = adaptive_sweep(sweep, source);
  const toml::node* metric_node = sweep.get("metric");
  const ErrorContext metric_place =
      metric_node != nullptr
          ? ErrorContext::at(source, metric_node->source().begin.line, metric_node->source().begin.column, "sweep.metric")
          : ErrorContext::for_key(source, "sweep.metric");
  std::ostringstream sweep_text;
  sweep_text << sweep;
  const auto settings = std::make_shared<const std::string>(sweep_text.str());
  root.erase("sweep");
  auto search = std::make_shared<SearchSweep>();
  search->experiment = [root, source, base_dir, overrides, &registry](const Assignments& point) {
    return parse_root(root, source, base_dir, overrides, registry, point);
  };
  std::vector<double> first;
  for (const auto& dimension : space.dimensions) first.push_back(dimension.kind == "choice" ? 0.0 : dimension.low);
  std::vector<std::string> problems;
  std::optional<Experiment> base;
  std::vector<std::pair<std::string, int64_t>> variant_epochs;  // (dimension, its trial's training.epochs)
  for (size_t d = 0; d <= space.dimensions.size(); ++d) {
    std::vector<std::vector<double>> variants;
    if (d == space.dimensions.size()) variants.push_back(first);
    else if (space.dimensions[d].kind == "choice")
      for (size_t k = 1; k < space.dimensions[d].alternatives.size(); ++k) variants.push_back(first), variants.back()[d] = double(k);
    else variants.push_back(first), variants.back()[d] = space.dimensions[d].high;
    for (const auto& values : variants) {
      const SearchPoint point = search_point(space, values);
      try {
        Experiment experiment = search->experiment(point.assignments);
        if (d < space.dimensions.size()) variant_epochs.emplace_back(space.dimensions[d].key, experiment.settings().training.epochs);
        if (d == space.dimensions.size()) base = std::move(experiment);
      } catch (const Error& error) {
        problems.push_back(fmt::format("{}: {}", fmt::join(point.assignments, ", "), error.what()));
      }
    }
  }
  if (!problems.empty())
    throw ConfigError(fmt::format("{} values of the search space are invalid:\n  {}", problems.size(),
                                  fmt::join(problems, "\n  ")),
                      ErrorContext::for_key(source, "sweep"));
  // A pruner's rungs are epochs of one training length: no dimension may change it (the check on
  // the first point alone cannot see it).
  if (adaptive)
    for (const auto& [key, epochs] : variant_epochs)
      if (epochs != base->settings().training.epochs)
        throw ConfigError(fmt::format("the trials of an adaptive sweep share training.epochs (the most a trial trains); "
                                      "the dimension {} changes it ({} and {})",
                                      key, base->settings().training.epochs, epochs),
                          ErrorContext::for_key(source, "sweep." + key, "sweep other keys"));
  search->space = std::move(space);
  SweepRun run{std::move(*base),
               fmt::format("sampler = \"{}\", {} trials", search->space.sampler_name, search->space.trials), ""};
  run.sweep_settings = settings;
  run.sweep_method = search->space.sampler_name;
  run.search = std::move(search);
  std::vector<SweepRun> runs = {std::move(run)};
  if (adaptive) {
    check_adaptive(*adaptive, runs);
    runs.front().adaptive = std::make_shared<const AdaptiveSweep>(std::move(*adaptive));
  } else {
    // What TPE learns from must be recorded every epoch, as a pruner's metric must.
    AdaptiveSweep learned;  // no pruner: no rungs to check
    learned.metric = runs.front().search->space.metric;
    learned.maximize = runs.front().search->space.maximize;
    learned.where["sweep.metric"] = metric_place;
    check_adaptive(learned, runs);
  }
  return runs;
}

std::vector<SweepRun> expand_root(toml::table root, const std::string& source, const fs::path& base_dir,
                                  const std::vector<std::string>& overrides, PluginRegistry& registry) {
  const toml::node* sweep_node = root.get("sweep");
  if (sweep_node == nullptr) return {{parse_root(std::move(root), source, base_dir, overrides, registry), "", ""}};
  if (!sweep_node->is_table())
    throw ConfigError("expected a table [sweep]", ErrorContext::at(source, sweep_node->source().begin.line, 0, "sweep"));
  if (std::optional<SearchSpace> space = search_space(*sweep_node->as_table(), source))
    return search_root(std::move(root), std::move(*space), source, base_dir, overrides, registry);
  const std::vector<Assignments> points = expand_sweep(*sweep_node->as_table(), source);
  std::optional<AdaptiveSweep> adaptive = adaptive_sweep(*sweep_node->as_table(), source);
  std::ostringstream sweep_text;
  sweep_text << *sweep_node->as_table();
  const auto sweep_settings = std::make_shared<const std::string>(sweep_text.str());
  const toml::table& sweep_table = *sweep_node->as_table();
  const std::string sweep_method = sweep_table["method"].value_or(sweep_table["sampler"].value_or(std::string("grid")));
  root.erase("sweep");
  if (points.empty()) throw ConfigError("the sweep excludes every point", ErrorContext::for_key(source, "sweep.exclude"));

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
                      ErrorContext::for_key(source, "sweep"));
  for (size_t i = 0; i < runs.size(); ++i) {
    runs[i].sweep_settings = sweep_settings;
    runs[i].sweep_method = sweep_method;
    runs[i].trial = static_cast<int64_t>(i);
  }
  if (adaptive) {
    check_adaptive(*adaptive, runs);
    const auto shared = std::make_shared<const AdaptiveSweep>(std::move(*adaptive));
    for (size_t i = 0; i < runs.size(); ++i) runs[i].adaptive = shared, runs[i].trial = static_cast<int64_t>(i);
  }
  return runs;
}

ErrorContext parse_error_context(const toml::parse_error& error, const std::string& source) {
  return ErrorContext::at(source, error.source().begin.line, error.source().begin.column);
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

bool section_defines_training(const std::string& section) { return section_default(section).defines_training; }

Settings Experiment::settings() const {
  return read_settings([this](const std::string& name) -> const Params& { return section(name).params; });
}

bool section_has_plugin(const std::string& section, Family* family) {
  const SectionDefault& defaults = section_default(section);
  if (family != nullptr) *family = defaults.family;
  return defaults.has_plugin;
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

// Keys that change what is recorded, not what is trained or evaluated: left out of every hash,
// so that setting them never makes a configuration another one.
const std::set<std::string>& keys_outside_identity() {
  static const std::set<std::string> keys = {"training.log_every_steps"};
  return keys;
}

// Keys added after runs were recorded, left out of the hash at their default, so that every
// configuration recorded before them keeps its hash (a run finished then is still finished).
const std::map<std::string, ParamValue>& keys_added_later() {
  static const std::map<std::string, ParamValue> keys = {
      {"evaluation.metrics", std::vector<std::string>{"kid"}},
      {"evaluation.best_by", std::string("val_kid")},
      {"evaluation.pr_k", int64_t{3}},
      {"evaluation.dc_k", int64_t{5}},
  };
  return keys;
}

std::string Experiment::config_hash() const {
  std::string text;
  for (const auto& section : sections) {
    text += (text.empty() ? "[" : "\n[") + section.name + "]\n";
    if (!section.plugin.empty()) text += "plugin = " + format_value(section.plugin) + "\n";
    for (const auto& [key, value] : section.params.items()) {
      const std::string dotted = section.name + "." + key;
      if (keys_outside_identity().count(dotted)) continue;
      if (const auto added = keys_added_later().find(dotted); added != keys_added_later().end() && added->second == value)
        continue;
      text += key + " = " + format_value(value) + "\n";
    }
  }
  return fmt::format("{:016x}", fnv1a(text));
}

std::string Experiment::variant_hash() const {
  Experiment unseeded = *this;
  unseeded.section("experiment").params.set("seed", int64_t{-1});  // no real seed is -1
  return unseeded.config_hash();
}

std::string Experiment::training_hash() const {
  Experiment training = *this;
  training.sections.erase(std::remove_if(training.sections.begin(), training.sections.end(),
                                         [](const Section& section) { return !section_defines_training(section.name); }),
                          training.sections.end());
  return training.config_hash();
}

BuildContext Experiment::build_context(int64_t image_channels) const {
  return {section("data").params.integer("image_size"), image_channels};
}

namespace {

toml::table read_file(const fs::path& file) {
  if (!fs::is_regular_file(file))
    throw ConfigError("experiment file not found", ErrorContext::in_file(file.string()));
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
                      ErrorContext::for_key(source, "sweep", "pick one point with --set, or use difflab run / check"));
  return std::move(runs.front().experiment);
}

}  // namespace

std::vector<SweepRun> load_sweep(const fs::path& file, const std::vector<std::string>& overrides,
                                 PluginRegistry& registry) {
  return expand_root(read_file(file), file.string(), file.parent_path(), overrides, registry);
}

std::vector<SweepRun> parse_sweep(const std::string& toml_text, const std::string& source_name,
                                  const std::vector<std::string>& overrides, PluginRegistry& registry,
                                  const fs::path& base_dir) {
  return expand_root(parse_text(toml_text, source_name), source_name, base_dir.empty() ? fs::current_path() : base_dir,
                     overrides, registry);
}

Experiment load_experiment(const fs::path& file, const std::vector<std::string>& overrides,
                           PluginRegistry& registry) {
  return single(load_sweep(file, overrides, registry), file.string());
}

Experiment parse_experiment(const std::string& toml_text, const std::string& source_name,
                            const std::vector<std::string>& overrides, PluginRegistry& registry,
                            const fs::path& base_dir) {
  if (base_dir.empty()) return single(parse_sweep(toml_text, source_name, overrides, registry), source_name);
  return single(expand_root(parse_text(toml_text, source_name), source_name, base_dir, overrides, registry),
                source_name);
}

}  // namespace difflab
