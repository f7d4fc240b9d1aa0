// The seam's shared pieces: a strategy's settings, the space's exclusions, the draws.
#include "strategy/strategy.h"

#include <algorithm>
#include <fmt/format.h>

namespace difflab {

StrategySettings::StrategySettings(const std::vector<StrategyKey>& keys, const std::string& source) {
  for (const StrategyKey& key : keys)
    values_[key.name] = Value{key.type, key.fallback, false, ErrorContext::for_key(source, "sweep." + key.name)};
}

void StrategySettings::set(const std::string& key, double number, ErrorContext where) {
  const auto found = values_.find(key);
  if (found == values_.end())
    throw Error(ErrorKind::runtime, "a strategy set the key \"" + key + "\", which it does not declare");
  found->second.number = number;
  found->second.given = true;
  found->second.where = std::move(where);
}

double StrategySettings::number(const std::string& key) const {
  const auto found = values_.find(key);
  if (found == values_.end())  // a strategy asked for a key it did not declare: a bug, not bad input
    throw Error(ErrorKind::runtime, "a strategy read the key \"" + key + "\", which it does not declare");
  return found->second.number;
}

const ErrorContext& StrategySettings::where(const std::string& key) const {
  const auto found = values_.find(key);
  if (found == values_.end())
    throw Error(ErrorKind::runtime, "a strategy placed the key \"" + key + "\", which it does not declare");
  return found->second.where;
}

bool SweepSpace::is_excluded(const Assignments& point) const {
  return std::any_of(excluded.begin(), excluded.end(), [&](const Assignments& rule) {
    return std::all_of(rule.begin(), rule.end(), [&](const std::string& assignment) {
      return std::find(point.begin(), point.end(), assignment) != point.end();
    });
  });
}

Proposal TrialSampler::propose(const std::vector<SearchDimension>&, const std::vector<Observation>&, bool,
                          uint64_t) const {
  throw Error(ErrorKind::runtime, "this sampler lists its points; it proposes none");
}

std::optional<int64_t> Pruner::rung_at(int64_t bracket, int64_t epoch, int64_t max_epochs) const {
  const std::vector<int64_t> epochs = rungs(bracket, max_epochs);
  const auto at = std::find(epochs.begin(), epochs.end(), epoch);
  if (at == epochs.end()) return std::nullopt;
  return at - epochs.begin();
}

double unit_draw(std::mt19937_64& generator) { return static_cast<double>(generator() >> 11) * 0x1.0p-53; }

std::string float_text(double value) {
  std::string text = fmt::format("{:.6g}", value);
  if (text.find_first_of(".einf") == std::string::npos) text += ".0";
  return text;
}

}  // namespace difflab
