// The sweep's seam: two kinds of strategy. A *sampler* chooses the trials (grid and random list
// them all when the file loads; a model-based one, tpe, proposes each from the trials recorded so
// far); a *pruner* decides, at a rung, whether a trial goes on, from what the rung holds.
//
// Each strategy is one file, strategy/samplers/<name>.cpp or strategy/pruners/<name>.cpp, that
// declares its keys and implements its rule; strategy/registry.cpp lists them by name, in one
// table. The config layer parses [sweep] against the keys the chosen strategies declare; the
// sweep layer runs them and records what they did. Adding a strategy is its file and its line in
// the table: nothing else (docs/sweeps.md, "Writing a sampler or a pruner").
//
// Everything here is pure: a function of the values given, so that the database's rows replay.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "difflab/error.h"

namespace difflab {

// One point of a sweep, or one alternative of an axis: "section.key=value" assignments with TOML
// values.
using Assignments = std::vector<std::string>;

// ---- settings ------------------------------------------------------------------------------

// A key a strategy takes in [sweep], with its type, its least value and its default.
struct StrategyKey {
  enum class Type { integer, boolean, number };
  std::string name;
  Type type = Type::integer;
  double least = 0.0;      // integer, number: the smallest value allowed
  double fallback = 0.0;   // the default (a boolean's: 0 or 1)
  std::string help;        // what it means
};

// The values of a strategy's keys: the file's, or their defaults; each with its place.
class StrategySettings {
 public:
  struct Value {
    StrategyKey::Type type = StrategyKey::Type::integer;
    double number = 0.0;  // an integer's exactly (|n| < 2^53), a boolean's 0 or 1
    bool given = false;   // in the file (or the manifest); otherwise the default
    ErrorContext where;
  };
  // Every declared key at its default, placed at "sweep.<key>" of `source`.
  StrategySettings(const std::vector<StrategyKey>& keys, const std::string& source);
  StrategySettings() = default;

  // A declared key's value (the type is the declaration's).
  void set(const std::string& key, double number, ErrorContext where);
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  double number(const std::string& key) const;
  int64_t integer(const std::string& key) const { return static_cast<int64_t>(number(key)); }
  bool boolean(const std::string& key) const { return number(key) != 0.0; }
  const ErrorContext& where(const std::string& key) const;
  const std::map<std::string, Value>& values() const { return values_; }

 private:
  std::map<std::string, Value> values_;
};

// A uniform double in [0, 1) from 53 random bits: the same draws on every platform and library.
double unit_draw(std::mt19937_64& generator);
// A drawn float as TOML text with 6 significant digits (readable in run lists; always a float).
std::string float_text(double value);

// ---- samplers --------------------------------------------------------------------------------

// A distribution over one key's values.
struct Distribution {
  std::string key;
  std::string kind;  // uniform | log_uniform | int_uniform
  double low = 0.0, high = 0.0;
};

// [sweep]'s space as a sampler that lists its points sees it: discrete axes (each alternative a
// list of assignments), distributions, `trials` and `seed`, the excluded partial assignments.
struct SweepSpace {
  std::vector<std::vector<Assignments>> axes;
  std::vector<Distribution> distributions;
  int64_t trials = 0;
  uint64_t seed = 0;
  std::vector<Assignments> excluded;
  bool is_excluded(const Assignments& point) const;
};

// One dimension of a model-based sampler's space: each choice axis (its alternatives, several
// assignments for a linked axis) and each distribution.
struct SearchDimension {
  std::string key;   // the dotted key (a linked axis: its first)
  std::string kind;  // uniform | log_uniform | int_uniform | choice
  double low = 0.0, high = 0.0;
  std::vector<Assignments> alternatives;  // choice: what each alternative assigns
};

// A trial as a model-based sampler sees it.
struct Observation {
  enum class State { complete, pruned, running };
  State state = State::complete;
  std::vector<double> values;  // one per dimension (choice: the index); NaN: the trial lacks it
  int64_t step = 0;            // pruned: the last epoch with a metric value (0: none)
  double value = std::numeric_limits<double>::quiet_NaN();  // complete: the final value; pruned: at `step`
};

// A proposal: the next trial's values, how it was made, and from what.
struct Proposal {
  std::vector<double> values;  // one per dimension, in its own terms (choice: the index)
  bool random = false;         // drawn from the space, not from a model (too few trials to learn from)
  double score = std::numeric_limits<double>::quiet_NaN();  // the acquisition of the chosen candidate
  std::vector<size_t> below, above;  // the observations the model split (indices into the history)
};

class TrialSampler {
 public:
  virtual ~TrialSampler() = default;
  // Every point, in order, for a sampler that lists them when the file loads (grid, random);
  // nullopt for one that proposes each trial from the results so far. A config Error names
  // `source` and the key.
  virtual std::optional<std::vector<Assignments>> points(const SweepSpace& space, const std::string& source) const = 0;
  // The next trial's values from `history` (the trials in the order they were proposed), drawn
  // with a generator seeded by `seed`: a pure function of its arguments.
  virtual Proposal propose(const std::vector<SearchDimension>& space, const std::vector<Observation>& history,
                           bool maximize, uint64_t seed) const;
  // How many trials it draws at random before it learns (for its progress lines); 0: none.
  virtual int64_t random_trials() const { return 0; }
};

struct SamplerKind {
  std::string name;
  std::vector<StrategyKey> keys;
  bool draws = false;     // takes distributions, `trials` and `seed` (random and model-based samplers)
  bool proposes = false;  // model-based: proposes trial by trial (points() is nullopt)
  bool method = false;    // also a `method = "<name>"` value (the older spelling)
  std::unique_ptr<TrialSampler> (*make)(const StrategySettings& settings) = nullptr;
};

// ---- pruners ---------------------------------------------------------------------------------

enum class Direction { minimize, maximize };

// What a trial at a rung is compared with: its own value and history, and each peer's latest run.
struct PrunerPeer {
  std::string attempt;
  bool finished = false;
  std::optional<double> value;  // none: it has not recorded the epoch
};
struct PrunerView {
  int64_t epoch = 0;
  double value = 0.0;           // the trial's value at the epoch
  std::vector<double> history;  // its values at every epoch up to this one
  std::vector<PrunerPeer> peers;
};
// A decision: the row the decisions table records.
struct PrunerVerdict {
  bool prune = false;
  double value = 0.0, cutoff = 0.0;
  int64_t rank = 0, of = 0;
  std::vector<std::string> compared;  // the attempts whose values it was compared with
};

class Pruner {
 public:
  virtual ~Pruner() = default;
  // How many brackets the trials are dealt into (trial i's: i mod B); a trial's peers are its
  // bracket's. R = training.epochs.
  virtual int64_t brackets(int64_t /*max_epochs*/) const { return 1; }
  // The epochs at which a trial of `bracket` is decided, in order (rung k: the k-th); empty for
  // a rule that may decide at any epoch.
  virtual std::vector<int64_t> rungs(int64_t bracket, int64_t max_epochs) const = 0;
  // The rung a trial of `bracket` is decided at at `epoch`, or nullopt: none there. By default
  // the epoch's place among rungs().
  virtual std::optional<int64_t> rung_at(int64_t bracket, int64_t epoch, int64_t max_epochs) const;
  // The decision at a rung, or nullopt where the rule takes none (too few trials yet).
  virtual std::optional<PrunerVerdict> decide(const PrunerView& view, Direction direction) const = 0;
  // Whether a recorded decision replays from its value and its compared peers' values alone
  // (`difflab sweep replay`), with every peer counted as finished.
  virtual bool replays() const { return false; }
  // What the rule needs of the experiment, checked before anything runs (a config Error naming
  // the key).
  virtual void check(int64_t /*max_epochs*/) const {}
};

struct PrunerKind {
  std::string name;
  std::vector<StrategyKey> keys;
  bool method = false;       // also a `method = "<name>"` value, with the random sampler
  bool synchronous = false;  // a schedule the sweep's coordinator decides rung by rung (only a method)
  std::unique_ptr<Pruner> (*make)(const StrategySettings& settings) = nullptr;
};

// ---- the registry (strategy/registry.cpp) ------------------------------------------------------

const std::vector<const SamplerKind*>& samplers();
const std::vector<const PrunerKind*>& pruners();
const SamplerKind* find_sampler(const std::string& name);  // nullptr: none by that name
const PrunerKind* find_pruner(const std::string& name);
// "a", "b" or "c", for the errors that list the names.
std::string name_list(const std::vector<std::string>& names);

}  // namespace difflab
