// The sweep's seam (strategy/strategy.h): every sampler and pruner is one file registered by name
// in one table, any sampler goes with any pruner, every key a strategy declares is parsed and
// checked from its declaration alone, and a cluster sweep's manifest carries any pruner's keys.
// Each test runs over the registry, so that a strategy added to it is tested without a line here.
#include <filesystem>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <set>
#include <toml++/toml.h>

#include "config/sweep_spec.h"
#include "strategy/pruning.h"
#include "strategy/strategy.h"
#include "sweep/sweep_folder.h"
#include "test_support.h"

namespace difflab {
namespace {
namespace fs = std::filesystem;

// A [sweep] table over one learning-rate axis: an array for a sampler that lists a grid, a
// log-uniform distribution with trials for one that draws.
std::string sweep_text(const SamplerKind& sampler, const std::string& pruner, const std::string& extra = "") {
  std::string text = fmt::format("sampler = \"{}\"\n", sampler.name);
  if (!pruner.empty()) text += fmt::format("pruner = \"{}\"\n", pruner);
  text += sampler.draws ? "trials = 4\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }\n"
                        : "\"training.learning_rate\" = [1e-3, 1e-2, 1e-1]\n";
  return text + extra;
}

toml::table parse(const std::string& text) { return toml::parse(text, std::string_view("sweep.toml")); }

TEST(Strategies, EachIsOneFileRegisteredByNameInTheOneTable) {
  const fs::path root = fs::path(DIFFLAB_TEST_SOURCE_DIR) / "framework" / "src" / "strategy";
  const auto stems = [&](const char* folder) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(root / folder))
      if (entry.path().extension() == ".cpp") names.insert(entry.path().stem().string());
    return names;
  };
  std::set<std::string> samplers_registered, pruners_registered;
  for (const SamplerKind* kind : samplers()) {
    EXPECT_TRUE(samplers_registered.insert(kind->name).second) << "sampler \"" << kind->name << "\" registered twice";
    EXPECT_EQ(find_sampler(kind->name), kind);
    ASSERT_NE(kind->make, nullptr) << kind->name;
  }
  for (const PrunerKind* kind : pruners()) {
    EXPECT_TRUE(pruners_registered.insert(kind->name).second) << "pruner \"" << kind->name << "\" registered twice";
    EXPECT_EQ(find_pruner(kind->name), kind);
    ASSERT_NE(kind->make, nullptr) << kind->name;
  }
  // strategy/samplers/<name>.cpp and strategy/pruners/<name>.cpp: the files are the table.
  EXPECT_EQ(stems("samplers"), samplers_registered);
  EXPECT_EQ(stems("pruners"), pruners_registered);
  EXPECT_EQ(find_sampler("bayes"), nullptr);
  EXPECT_EQ(find_pruner("none"), nullptr);  // "none" is no pruner, not one called none
  std::printf("%zu samplers, %zu pruners registered\n", samplers_registered.size(), pruners_registered.size());
}

TEST(Strategies, AnySamplerGoesWithAnyPrunerAndEachKeyHasItsDefault) {
  int64_t pairs = 0;
  for (const SamplerKind* sampler : samplers())
    for (const PrunerKind* pruner : pruners()) {
      if (pruner->synchronous) continue;  // a method's schedule, not a `pruner =` value
      SCOPED_TRACE(sampler->name + " + " + pruner->name);
      const toml::table table = parse(sweep_text(*sampler, pruner->name, "metric = \"val_n_loss\"\n"));
      const std::optional<AdaptiveSweep> adaptive = adaptive_sweep(table, "sweep.toml");
      ASSERT_TRUE(adaptive);
      EXPECT_EQ(adaptive->name, pruner->name);
      EXPECT_EQ(adaptive->metric, "val_n_loss");
      ASSERT_TRUE(adaptive->pruner);
      for (const StrategyKey& key : pruner->keys) {
        EXPECT_EQ(adaptive->settings.number(key.name), key.fallback) << key.name;
        EXPECT_EQ(adaptive->settings.where(key.name).key, "sweep." + key.name);
      }
      // The sampler's half: proposed one by one, or listed.
      const std::optional<SearchSpace> space = search_space(table, "sweep.toml");
      EXPECT_EQ(space.has_value(), sampler->proposes);
      if (space) {
        EXPECT_EQ(space->sampler_name, sampler->name);
        EXPECT_EQ(space->trials, 4);
      } else {
        EXPECT_EQ(expand_sweep(table, "sweep.toml").size(), sampler->draws ? 4u : 3u);
      }
      ++pairs;
    }
  // method = "<pruner>" is the random sampler with that pruner.
  for (const PrunerKind* pruner : pruners()) {
    if (!pruner->method) continue;
    const toml::table table =
        parse(fmt::format("method = \"{}\"\ntrials = 3\n\"training.learning_rate\" = [1e-3, 1e-2, 1e-1, 1.0]\n",
                          pruner->name));
    const std::optional<AdaptiveSweep> adaptive = adaptive_sweep(table, "sweep.toml");
    ASSERT_TRUE(adaptive) << pruner->name;
    EXPECT_EQ(adaptive->synchronous, pruner->synchronous);
    EXPECT_EQ(expand_sweep(table, "sweep.toml").size(), 3u) << pruner->name;
  }
  EXPECT_GE(pairs, 9);
}

// The config error a [sweep] text gets (every key is checked when the table is parsed), or none.
std::optional<Error> error_of(const std::string& text) {
  try {
    (void)adaptive_sweep(parse(text), "sweep.toml");
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::config) throw;
    return error;
  }
  return std::nullopt;
}

// The line `key = ...` is on in `text` (1-based).
int64_t line_of(const std::string& text, const std::string& key) {
  int64_t line = 1;
  for (size_t at = 0; at < text.size() && text.compare(at, key.size() + 3, key + " = ") != 0; ++at)
    line += text[at] == '\n';
  return line;
}

TEST(Strategies, EveryDeclaredKeyIsParsedAndCheckedFromItsDeclaration) {
  struct Owner {
    const SamplerKind* sampler;  // the sampler that takes the key, or the one a pruner's key goes with
    std::string pruner;          // empty: a sampler's key
    std::vector<StrategyKey> keys;
  };
  std::vector<Owner> owners;
  for (const SamplerKind* kind : samplers()) owners.push_back({kind, "", kind->keys});
  for (const PrunerKind* kind : pruners())
    if (!kind->synchronous) owners.push_back({find_sampler("random"), kind->name, kind->keys});
  int64_t checked = 0;
  for (const Owner& owner : owners)
    for (const StrategyKey& key : owner.keys) {
      const std::string who = owner.pruner.empty() ? "sampler " + owner.sampler->name : "pruner " + owner.pruner;
      SCOPED_TRACE(who + ": " + key.name);
      // A value other than the default is read as given.
      const bool boolean = key.type == StrategyKey::Type::boolean;
      const bool integral = key.type == StrategyKey::Type::integer;
      const double value = boolean ? 1.0 - key.fallback : std::max(key.least, key.fallback) + (integral ? 1.0 : 0.5);
      const std::string given = boolean    ? (value != 0.0 ? "true" : "false")
                                : integral ? fmt::format("{}", static_cast<int64_t>(value))
                                           : fmt::format("{}", value);
      const std::string text = sweep_text(*owner.sampler, owner.pruner, key.name + " = " + given + "\n");
      ASSERT_FALSE(error_of(text)) << error_of(text)->what();
      const toml::table table = parse(text);
      if (owner.pruner.empty()) {
        const std::optional<SearchSpace> space = search_space(table, "sweep.toml");
        ASSERT_TRUE(space) << "a sampler with keys proposes";
        EXPECT_EQ(space->settings.number(key.name), value);
        EXPECT_EQ(space->settings.where(key.name).line, line_of(text, key.name));
      } else {
        const std::optional<AdaptiveSweep> adaptive = adaptive_sweep(table, "sweep.toml");
        ASSERT_TRUE(adaptive);
        EXPECT_EQ(adaptive->settings.number(key.name), value);
        EXPECT_EQ(adaptive->settings.where(key.name).line, line_of(text, key.name));
      }
      // A value of the wrong kind, or below the least: the file, the line and the key.
      // (a boolean given 1; an integer key given one less than its least, or 2.5; a number a string)
      const std::string bad_value = boolean    ? "1"
                                    : integral ? (key.least > 0.0 ? fmt::format("{}", static_cast<int64_t>(key.least) - 1) : "2.5")
                                               : "\"high\"";
      const std::string bad = sweep_text(*owner.sampler, owner.pruner, key.name + " = " + bad_value + "\n");
      const std::optional<Error> refused = error_of(bad);
      ASSERT_TRUE(refused) << bad;
      EXPECT_EQ(refused->context().file, "sweep.toml");
      EXPECT_EQ(refused->context().key, "sweep." + key.name);
      EXPECT_EQ(refused->context().line, line_of(bad, key.name));
      EXPECT_NE(std::string(refused->what()).find(boolean ? "true or false" : integral ? "integer" : "number"),
                std::string::npos)
          << refused->what();
      // The key where neither the sampler nor the pruner takes it: named, with whose key it is.
      const std::string stray = sweep_text(*find_sampler("grid"), "", key.name + " = " + given + "\n");
      const std::optional<Error> foreign = error_of(stray);
      ASSERT_TRUE(foreign) << stray;
      EXPECT_EQ(foreign->context().key, "sweep." + key.name);
      EXPECT_NE(std::string(foreign->what()).find(key.name + " is a key of"), std::string::npos) << foreign->what();
      EXPECT_NE(std::string(foreign->what()).find("\"" + (owner.pruner.empty() ? owner.sampler->name : owner.pruner) + "\""),
                std::string::npos)
          << foreign->what();
      ++checked;
    }
  EXPECT_GE(checked, 8);  // tpe's four, asha's two, hyperband's three, median's two, less repeats
  std::printf("%lld strategy keys checked\n", static_cast<long long>(checked));
}

TEST(Strategies, HyperbandsRungsAndBracketsAreTheFormulas) {
  const toml::table table = parse("method = \"hyperband\"\ntrials = 3\nmin_epochs = 1\nreduction_factor = 3\n"
                                  "\"training.learning_rate\" = [1e-3, 1e-2, 1e-1]\n");
  const std::optional<AdaptiveSweep> adaptive = adaptive_sweep(table, "sweep.toml");
  ASSERT_TRUE(adaptive);
  // R = 27: ⌊log_3(27)⌋ + 1 = 4 brackets; bracket s's rungs are 3^(s+k) below R.
  EXPECT_EQ(adaptive->pruner->brackets(27), hyperband_brackets(1, 3, 27));
  EXPECT_EQ(adaptive->pruner->brackets(27), 4);
  EXPECT_EQ(adaptive->pruner->rungs(0, 27), (std::vector<int64_t>{1, 3, 9}));
  EXPECT_EQ(adaptive->pruner->rungs(1, 27), (std::vector<int64_t>{3, 9}));
  EXPECT_EQ(adaptive->pruner->rung_at(1, 9, 27), std::optional<int64_t>(1));
  EXPECT_EQ(adaptive->pruner->rung_at(1, 1, 27), std::nullopt);
  // The median rule: every epoch its own decision point, numbered by the epoch.
  const std::optional<AdaptiveSweep> median =
      adaptive_sweep(parse("pruner = \"median\"\n\"training.learning_rate\" = [1e-3, 1e-2]\n"), "sweep.toml");
  ASSERT_TRUE(median);
  EXPECT_TRUE(median->pruner->rungs(0, 27).empty());
  EXPECT_EQ(median->pruner->rung_at(0, 7, 27), std::optional<int64_t>(7));
  EXPECT_FALSE(median->pruner->replays());
  EXPECT_TRUE(adaptive->pruner->replays());
}

TEST(Strategies, AClusterManifestCarriesEveryPrunersKeys) {
  for (const PrunerKind* kind : pruners()) {
    SCOPED_TRACE(kind->name);
    test::TempDir dir;
    StrategySettings settings(kind->keys, "sweep.toml");
    for (const StrategyKey& key : kind->keys)  // values other than the defaults
      settings.set(key.name, key.type == StrategyKey::Type::boolean ? 1.0 - key.fallback : std::max(key.least, key.fallback) + 2.0,
                   ErrorContext::for_key("sweep.toml", "sweep." + key.name));
    Manifest manifest;
    manifest.path = manifest_path(dir.path() / "sweep");
    manifest.sweep_hash = "0123456789abcdef";
    manifest.name = "strategies";
    manifest.experiment_file = "sweep.toml";
    manifest.base_dir = dir.path().string();
    manifest.database = (dir.path() / "results.sqlite").string();
    manifest.adaptive = make_adaptive(*kind, settings, "val_n_loss", true);
    freeze_manifest(manifest);
    const Manifest read = read_manifest(dir.path() / "sweep");
    ASSERT_TRUE(read.adaptive);
    EXPECT_EQ(read.adaptive->name, kind->name);
    EXPECT_EQ(read.adaptive->synchronous, kind->synchronous);
    EXPECT_EQ(read.adaptive->metric, "val_n_loss");
    EXPECT_TRUE(read.adaptive->maximize);
    for (const StrategyKey& key : kind->keys)
      EXPECT_EQ(read.adaptive->settings.number(key.name), settings.number(key.name)) << key.name;
    EXPECT_EQ(read.adaptive->pruner->brackets(27), manifest.adaptive->pruner->brackets(27));
  }
}

}  // namespace
}  // namespace difflab
