// An experiment file, parsed, validated against the framework's and the plugins' schemas, with
// defaults filled in and --set overrides applied. Nothing runs until this has succeeded.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/settings.h"
#include "difflab/component.h"
#include "config/sweep_spec.h"
#include "difflab/params.h"

namespace difflab {

class PluginRegistry;

struct Section {
  std::string name;    // "experiment", "data", "network", ...
  std::string plugin;  // the component's plugin; empty for framework-only sections
  Params params;       // every key of the schema, in schema order, defaults filled in
};

class Experiment {
 public:
  std::filesystem::path file;     // where it was read from ("<text>" for tests)
  std::vector<Section> sections;  // always every section, in canonical order

  const Section& section(const std::string& name) const;
  Section& section(const std::string& name);

  // The resolved experiment as TOML, keys in canonical order (stored in the database).
  std::string to_toml() const;
  // One (dotted key, TOML value text) pair per leaf, e.g. ("schedule.plugin", "\"cosine\"").
  std::vector<std::pair<std::string, ParamValue>> leaves() const;
  // Stable hash of to_toml(), 16 hex digits: a run's identity.
  std::string config_hash() const;
  // The same with [experiment] seed left out: runs that differ only in their seed share it (the
  // ablation view's groups).
  std::string variant_hash() const;
  // The hash of what decides the trained network: the sections that section_defines_training()
  // (not [sampler], [features] or [evaluation]).
  // Runs that share it share one training (see ResultsStore::trained_network).
  std::string training_hash() const;

  BuildContext build_context(int64_t image_channels) const;
  // The framework's keys, typed (read from `sections` on each call: read it once per run).
  Settings settings() const;
};

// The section names in canonical order, and which of them name a plugin family.
const std::vector<std::string>& section_names();
bool section_has_plugin(const std::string& section, Family* family = nullptr);
// Whether a section decides the trained network (see training_hash()).
bool section_defines_training(const std::string& section);

// One run of a sweep: its experiment and the point's assignments ("loss.plugin=\"mse\", ...";
// empty for a file without [sweep]).
// A model-based sweep (sampler = "tpe"): its space, and how a proposed point becomes a trial's
// experiment (the file's values, the point's, then --set; validated like any point). The function
// refers to the PluginRegistry the sweep was loaded with, which must outlive it.
struct SearchSweep {
  SearchSpace space;
  std::function<Experiment(const Assignments& point)> experiment;
};

struct SweepRun {
  Experiment experiment;
  std::string point;
  std::string variant;  // the point without its experiment.seed assignment
  // An adaptive sweep's settings (the same for every trial), and this trial's index in it.
  std::shared_ptr<const AdaptiveSweep> adaptive = nullptr;
  int64_t trial = 0;
  // The file's [sweep] table as TOML and its method (grid, random, asha, ...); empty without one.
  std::shared_ptr<const std::string> sweep_settings = nullptr;
  std::string sweep_method{};
  // A model-based sweep, loaded as this one run: the first point of its space (every dimension's
  // first alternative or low bound), for the checks before it runs; sweep/search.h proposes the
  // trials. Null for any other sweep.
  std::shared_ptr<const SearchSweep> search = nullptr;
  // Its experiment's results database (experiment.database).
  std::string database() const { return experiment.settings().experiment.database; }
};

// Loads `file`; a [sweep] table (method = "grid": dotted keys with arrays of values, `seeds`,
// [sweep.linked] axes of inline tables whose keys vary together, `exclude` partial assignments)
// expands into one experiment per point: the file's values, then the point's, then `overrides`.
// Every point is validated first; all invalid points are reported in one config Error.
std::vector<SweepRun> load_sweep(const std::filesystem::path& file,
                                 const std::vector<std::string>& overrides, PluginRegistry& registry);
// The same from TOML text; relative paths are relative to `base_dir` (default: the working folder).
std::vector<SweepRun> parse_sweep(const std::string& toml_text, const std::string& source_name,
                                  const std::vector<std::string>& overrides, PluginRegistry& registry,
                                  const std::filesystem::path& base_dir = {});

// Loads `file` (which must not sweep), applies `overrides` ("section.key=value", TOML value
// syntax; bare words are strings), validates everything, fills defaults. Throws a config Error
// (exit code 2) naming the file, line, column and key on any problem. Plugin folders listed in [experiment] plugin_paths
// are added to `registry` before plugins are looked up.
Experiment load_experiment(const std::filesystem::path& file,
                           const std::vector<std::string>& overrides, PluginRegistry& registry);
// The same from TOML text (source_name is used in messages); relative plugin_paths are relative
// to `base_dir` (default: the working directory), as they are to the file's folder in a file.
Experiment parse_experiment(const std::string& toml_text, const std::string& source_name,
                            const std::vector<std::string>& overrides, PluginRegistry& registry,
                            const std::filesystem::path& base_dir = {});

}  // namespace difflab
