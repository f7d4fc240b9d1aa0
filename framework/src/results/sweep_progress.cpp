// Each sweep's trials and best-so-far from the database alone (progress.h).
#include "results/sweep_progress.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <toml++/toml.h>

namespace difflab {
namespace {

// The sampler a [sweep] table chose: `sampler`, else what `method` draws (asha, hyperband and
// successive halving draw at random).
std::string sampler_of(const toml::table& settings, const std::string& method) {
  if (auto sampler = settings["sampler"].value<std::string>()) return *sampler;
  if (method == "grid" || method == "random" || method == "tpe") return method;
  if (method == "asha" || method == "hyperband" || method == "successive_halving") return "random";
  return method;
}

}  // namespace

std::vector<SweepProgress> sweep_progress(const ResultsStore& store) {
  std::map<std::string, SweepProgress> by_sweep;
  for (const RunRecord& run : store.runs()) {
    const std::optional<SweepTrialRecord> record = store.sweep_trial(run.id);
    if (!record) continue;
    SweepProgress& sweep = by_sweep[record->sweep];
    if (sweep.sweep.empty()) {
      toml::table settings;
      try {
        settings = toml::parse(record->settings);
      } catch (const toml::parse_error&) {
        // a sweep recorded without readable settings: its method alone says what it was
      }
      sweep.sweep = record->sweep;
      sweep.name = record->name;
      sweep.trials = record->trials;
      sweep.sampler = sampler_of(settings, record->method);
      sweep.pruner = record->rule.empty() ? settings["pruner"].value_or(std::string()) : record->rule;
      if (sweep.pruner == "none") sweep.pruner.clear();
      sweep.metric = !record->rule.empty() ? record->metric : settings["metric"].value_or(std::string("val_kid"));
      sweep.maximize = !record->rule.empty() ? record->maximize
                                             : settings["direction"].value_or(std::string("minimize")) == "maximize";
    }
    TrialOutcome outcome;
    outcome.trial = record->trial;
    outcome.run_id = run.id;
    outcome.status = run.status;
    outcome.value = std::nan("");
    for (const MetricRecord& metric : store.metrics(run.id))
      if (metric.key == sweep.metric && metric.epoch >= outcome.epoch) outcome.epoch = metric.epoch, outcome.value = metric.value;
    // The trial's newest run stands (a trial run again after a failure).
    auto same = std::find_if(sweep.outcomes.begin(), sweep.outcomes.end(),
                             [&](const TrialOutcome& o) { return o.trial == outcome.trial; });
    if (same == sweep.outcomes.end()) sweep.outcomes.push_back(outcome);
    else if (same->run_id < outcome.run_id) *same = outcome;
  }
  std::vector<SweepProgress> sweeps;
  for (auto& [hash, sweep] : by_sweep) {
    if (sweep.sampler != "tpe" && sweep.sampler != "random" && sweep.sampler != "grid") continue;
    std::sort(sweep.outcomes.begin(), sweep.outcomes.end(),
              [](const TrialOutcome& a, const TrialOutcome& b) { return a.trial < b.trial; });
    const int64_t last = sweep.outcomes.empty() ? 0 : sweep.outcomes.back().trial + 1;
    sweep.best_so_far.assign(static_cast<size_t>(std::max(sweep.trials, last)), std::nan(""));
    double best = std::nan("");
    size_t next = 0;
    for (size_t k = 0; k < sweep.best_so_far.size(); ++k) {
      for (; next < sweep.outcomes.size() && sweep.outcomes[next].trial <= static_cast<int64_t>(k); ++next) {
        const TrialOutcome& o = sweep.outcomes[next];
        if (o.status != RunStatus::finished || std::isnan(o.value)) continue;
        if (std::isnan(best) || (sweep.maximize ? o.value > best : o.value < best)) best = o.value;
      }
      sweep.best_so_far[k] = best;
    }
    sweeps.push_back(std::move(sweep));
  }
  return sweeps;
}

std::vector<ProgressStats> progress_by_label(const std::vector<SweepProgress>& sweeps) {
  std::map<std::string, std::vector<const SweepProgress*>> groups;
  for (const auto& sweep : sweeps) groups[sweep.label()].push_back(&sweep);
  std::vector<ProgressStats> all;
  for (const auto& [label, members] : groups) {
    ProgressStats stats;
    stats.label = label;
    stats.sweeps = static_cast<int64_t>(members.size());
    size_t length = 0;
    for (const SweepProgress* sweep : members) length = std::max(length, sweep->best_so_far.size());
    for (size_t k = 0; k < length; ++k) {
      std::vector<double> values;
      for (const SweepProgress* sweep : members)
        if (k < sweep->best_so_far.size() && !std::isnan(sweep->best_so_far[k])) values.push_back(sweep->best_so_far[k]);
      double mean = std::nan(""), deviation = std::nan("");
      if (!values.empty()) {
        mean = 0.0;
        for (double v : values) mean += v;
        mean /= static_cast<double>(values.size());
        if (values.size() > 1) {
          double sum = 0.0;
          for (double v : values) sum += (v - mean) * (v - mean);
          deviation = std::sqrt(sum / static_cast<double>(values.size() - 1));
        }
      }
      stats.mean.push_back(mean);
      stats.std.push_back(deviation);
    }
    all.push_back(std::move(stats));
  }
  return all;
}

}  // namespace difflab
