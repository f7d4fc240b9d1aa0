#include "report/html_report.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stb_image.h>  // Debian's libstb
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include "difflab/error.h"
#include "difflab/version.h"
#include "report/svg.h"
#include "results/results_report.h"
#include "results/results_store.h"
#include "results/sweep_progress.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

using svg::escape;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Everything the report shows of one run.
struct RunData {
  RunRecord record;
  std::vector<std::pair<std::string, std::string>> params;  // key, TOML text, in schema order
  std::map<std::string, std::string> param;
  std::map<std::string, std::map<int64_t, double>> metrics;  // key -> epoch -> value
  std::map<std::string, std::map<int64_t, double>> steps;    // key -> step -> value (training.log_every_steps)
  std::vector<std::pair<int64_t, KidRecord>> kid;
  std::vector<std::pair<int64_t, SampleMetricRecord>> samples;  // FID, precision, ... by epoch
  std::vector<ArtifactRecord> artifacts;
  double best_kid = kNaN;
  int64_t best_kid_epoch = 0;
  std::string group;        // "loss.plugin=mae, schedule.plugin=cosine"
  std::string group_values; // "mae, cosine": the group's name in charts, whose text names the keys
  double metric = kNaN;  // options.metric's value
};

std::optional<double> number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return value;
}

std::string unquoted(const std::string& toml) {
  if (toml.size() >= 2 && toml.front() == '"' && toml.back() == '"') return toml.substr(1, toml.size() - 2);
  return toml;
}

std::string format_number(double value) {
  if (!std::isfinite(value)) return std::isnan(value) ? "–" : (value > 0 ? "inf" : "-inf");
  return fmt::format("{:.4g}", value);
}

struct MeanStd {
  double mean = kNaN, std = kNaN;
  size_t count = 0;
};
MeanStd mean_std(const std::vector<double>& values) {
  MeanStd result;
  double sum = 0.0;
  for (double value : values)
    if (std::isfinite(value)) sum += value, ++result.count;
  if (result.count == 0) return result;
  result.mean = sum / static_cast<double>(result.count);
  if (result.count < 2) return result;
  double squares = 0.0;
  for (double value : values)
    if (std::isfinite(value)) squares += (value - result.mean) * (value - result.mean);
  result.std = std::sqrt(squares / static_cast<double>(result.count - 1));  // sample standard deviation
  return result;
}

// The runs of `table` (runs_table's rows for the report's --where), read in full.
std::vector<RunData> load_runs(ResultsStore& store, const Table& table) {
  std::set<int64_t> selected;
  const auto column = std::find(table.columns.begin(), table.columns.end(), "run_id");
  if (column != table.columns.end())
    for (const auto& row : table.rows)
      if (const auto& id = row[static_cast<size_t>(column - table.columns.begin())]) selected.insert(std::stoll(*id));
  std::vector<RunData> runs;
  for (const RunRecord& record : store.runs()) {
    if (!selected.count(record.id)) continue;
    RunData run;
    run.record = record;
    run.params = store.params(record.id);
    for (const auto& [key, value] : run.params) run.param[key] = value;
    for (const MetricRecord& metric : store.metrics(record.id)) run.metrics[metric.key][metric.epoch] = metric.value;
    for (const MetricRecord& metric : store.step_metrics(record.id)) run.steps[metric.key][metric.step] = metric.value;
    run.kid = store.kid(record.id);
    run.samples = store.sample_metrics(record.id);
    for (const auto& [epoch, kid] : run.kid)
      if (std::isfinite(kid.mean) && !(kid.mean >= run.best_kid)) run.best_kid = kid.mean, run.best_kid_epoch = epoch;
    run.artifacts = store.artifacts(record.id);
    runs.push_back(std::move(run));
  }
  return runs;
}

// The parameters whose values differ between the runs, in schema order.
std::vector<std::string> varying_keys(const std::vector<RunData>& runs) {
  std::vector<std::string> keys;
  if (runs.empty()) return keys;
  std::set<std::string> seen;
  for (const auto& run : runs)
    for (const auto& [key, value] : run.params) {
      if (seen.count(key)) continue;
      for (const auto& other : runs) {
        auto it = other.param.find(key);
        if (it == other.param.end() || it->second != value) {
          keys.push_back(key);
          seen.insert(key);
          break;
        }
      }
    }
  return keys;
}

std::string metric_value_label(const std::string& metric) { return metric == "best_kid" ? "best KID" : metric; }

double final_metric(const RunData& run, const std::string& key) {
  if (key == "best_kid") return run.best_kid;
  auto it = run.metrics.find(key);
  if (it == run.metrics.end() || it->second.empty()) return kNaN;
  return it->second.rbegin()->second;
}

// Report-wide state while the page is written.
struct Page {
  std::string html;
  ReportSummary summary;
  std::vector<std::pair<std::string, std::string>> sections;  // (id, name) for the navigation bar
  // Opens a section and lists it in the navigation bar.
  void section(const std::string& id, const std::string& heading, const std::string& name) {
    html += fmt::format("<section id=\"{}\"><h2>{}</h2>\n", id, escape(heading));
    sections.emplace_back(id, name);
  }
  void chart(const svg::Rendered& rendered) {
    html += "<figure class=\"chart-box\">" + rendered.markup + "</figure>\n";
    ++summary.charts;
    summary.series += rendered.series_drawn;
  }
};

std::string run_link(const RunData& run) { return fmt::format("<a href=\"#run-{0}\">run {0}</a>", run.record.id); }

// An adaptive sweep's epochs: how many its trials trained, of running every one to the end.
struct PruningSaving {
  int64_t trials = 0, pruned = 0, trained = 0, all = 0;
};
PruningSaving pruning_saving(const std::vector<RunData>& runs, const std::vector<DecisionRecord>& decisions) {
  PruningSaving saving;
  std::set<int64_t> decided;
  for (const auto& decision : decisions) decided.insert(decision.run_id);
  int64_t epochs = 0;  // R: the trials' training.epochs
  for (const auto& run : runs)
    if (auto it = run.param.find("training.epochs"); it != run.param.end() && decided.count(run.record.id))
      epochs = std::max<int64_t>(epochs, std::atoll(it->second.c_str()));
  for (const auto& run : runs) {
    if (!decided.count(run.record.id) && run.record.status != RunStatus::finished) continue;
    ++saving.trials;
    saving.pruned += run.record.status == RunStatus::pruned;
    int64_t last = 0;
    for (const auto& [key, values] : run.metrics)
      if (!values.empty()) last = std::max(last, values.rbegin()->first);
    saving.trained += last;
  }
  saving.all = saving.trials * epochs;
  return saving;
}

void overview(Page& page, const std::vector<RunData>& runs, const std::vector<std::string>& varying,
              const std::string& metric, ResultsStore& store) {
  page.section("overview", "Overview", "overview");
  std::map<RunStatus, int64_t> counts;
  std::set<std::string> names;
  for (const auto& run : runs) ++counts[run.record.status], names.insert(run.record.name);
  std::string status_text;
  for (const auto& [status, count] : counts)
    status_text += fmt::format("<span class=\"status {0}\">{1} {0}</span> ", to_string(status), count);
  page.html += fmt::format("<p>{} runs{} of {} in <code>{}</code>: {}</p>\n", runs.size(),
                           names.empty() ? "" : fmt::format(" ({})", escape(fmt::format("{}", fmt::join(names, ", ")))),
                           "difflab", escape(store.path().string()), runs.empty() ? "no runs" : status_text);
  if (!varying.empty()) {
    page.html += "<table class=\"params\"><thead><tr><th>swept parameter</th><th>values</th></tr></thead><tbody>\n";
    for (const auto& key : varying) {
      std::set<std::string> values;
      for (const auto& run : runs)
        if (auto it = run.param.find(key); it != run.param.end()) values.insert(it->second);
      page.html += fmt::format("<tr><td><code>{}</code></td><td>{}</td></tr>\n", escape(key),
                               escape(fmt::format("{}", fmt::join(values, ", "))));
    }
    page.html += "</tbody></table>\n";
  }
  if (!runs.empty()) {
    page.html += "<details><summary>Parameters every run shares</summary><table class=\"params\"><tbody>\n";
    for (const auto& [key, value] : runs.front().params)
      if (std::find(varying.begin(), varying.end(), key) == varying.end())
        page.html += fmt::format("<tr><td><code>{}</code><td>{}\n", escape(key), escape(value));
    page.html += "</tbody></table></details>\n";
  }
  const RunData* best = nullptr;
  for (const auto& run : runs)
    if (run.record.status == RunStatus::finished && std::isfinite(run.metric) && (!best || run.metric < best->metric)) best = &run;
  if (best)
    page.html += fmt::format("<p class=\"best\">Best by {}: {} — {} {}{}</p>\n", escape(metric_value_label(metric)),
                             run_link(*best), escape(metric_value_label(metric)), format_number(best->metric),
                             metric == "best_kid" ? fmt::format(" at epoch {}", best->best_kid_epoch) : "");
  std::string failures;
  for (const auto& run : runs)
    if (ended_in_error(run.record.status))
      failures += fmt::format("<li>{} ({}, {}): {}</li>\n", run_link(run), to_string(run.record.status), escape(run.group),
                              escape(run.record.error));
  if (!failures.empty()) page.html += "<h3>Failures</h3><ul class=\"failures\">\n" + failures + "</ul>\n";
  if (const std::vector<DecisionRecord> decisions = store.decisions(); !decisions.empty()) {
    const PruningSaving saving = pruning_saving(runs, decisions);
    page.html += fmt::format("<p class=\"pruning\">Pruning ({}) stopped {} of {} trials early: they trained {} of {} "
                             "epochs ({:.0f}%), {} fewer than running every trial to the end (<a href=\"#rungs\">rungs"
                             "</a>).</p>\n",
                             escape(decisions.front().method), saving.pruned, saving.trials, saving.trained, saving.all,
                             saving.all > 0 ? 100.0 * static_cast<double>(saving.trained) / static_cast<double>(saving.all)
                                            : 0.0,
                             saving.all - saving.trained);
  }
  page.html += "</section>\n";
}

void html_table(Page& page, const Table& table, const std::string& id) {
  page.html += fmt::format("<table class=\"sortable\" id=\"{}\"><thead><tr>", id);
  for (size_t c = 0; c < table.columns.size(); ++c)
    page.html += fmt::format("<th data-numeric=\"{}\">{}</th>", table.numeric[c] ? 1 : 0, escape(table.columns[c]));
  page.html += "</tr></thead><tbody>\n";
  for (const auto& row : table.rows) {
    page.html += "<tr>";
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string text = row[c] ? *row[c] : "";
      if (table.columns[c] == "run_id" && !text.empty())
        page.html += fmt::format("<td><a href=\"#run-{0}\">{0}</a></td>", escape(text));
      else
        page.html += fmt::format("<td{}>{}</td>", table.numeric[c] ? " class=\"num\"" : "", escape(text));
    }
    page.html += "</tr>\n";
  }
  page.html += "</tbody></table>\n";
}

void results_table(Page& page, ResultsStore& store, const ReportOptions& options, const std::vector<std::string>& group_by,
                   const Table& every_run) {
  page.section("table", "Results", "results");
  RunsQuery query;
  query.where = options.where;
  query.group_by = group_by;
  query.baseline = options.baseline_group;
  if (group_by.empty() && !options.baseline_group.empty())
    throw ConfigError("--baseline-group compares groups, and the runs have no parameter to group by",
                      ErrorContext::in_file("--baseline-group", "give --group-by"));
  if (!group_by.empty()) {
    const Table grouped = runs_table(store, query);
    page.html += fmt::format("<p>Finished runs grouped by <code>{}</code>: mean ± sample std over each group's runs "
                             "(the seeds), best (not last) KID. Click a column to sort.{}</p>\n",
                             escape(fmt::format("{}", fmt::join(group_by, ", "))),
                             options.baseline_group.empty()
                                 ? ""
                                 : " The \"vs baseline\" columns are each group's difference of means to the group "
                                   "<code>" + escape(options.baseline_group) + "</code> picks, its 95% bootstrap "
                                   "interval over seeds (paired by seed where both ran the same seeds) and Welch's "
                                   "p-value.");
    html_table(page, grouped, "grouped");
  }
  page.html += "<details" + std::string(group_by.empty() ? " open" : "") + "><summary>Every run</summary>\n";
  html_table(page, every_run, "runs");
  page.html += "</details></section>\n";
}

// Groups in order of first appearance: (group, its name in charts).
std::vector<std::pair<std::string, std::string>> group_names(const std::vector<RunData>& runs) {
  std::vector<std::pair<std::string, std::string>> names;
  for (const auto& run : runs)
    if (std::none_of(names.begin(), names.end(), [&](const auto& name) { return name.first == run.group; }))
      names.emplace_back(run.group, run.group_values);
  return names;
}

// At most this many groups' lines in a learning-curve chart: the best by the report's metric.
constexpr size_t kMaxCurveGroups = 24;

// One chart of a metric, one line per group: the mean over its runs with a band of ± one sample
// standard deviation where two or more have a value, against the epoch (RunData::metrics) or, with
// `by_step`, the step (RunData::steps). Nothing when no run has the metric.
void group_curve(Page& page, const std::vector<RunData>& runs,
                 const std::vector<std::pair<std::string, std::string>>& groups, const ReportOptions& options,
                 const std::string& key, const std::string& title, bool by_step) {
  auto values_of = [by_step](const RunData& run) -> const std::map<std::string, std::map<int64_t, double>>& {
    return by_step ? run.steps : run.metrics;
  };
  bool any = false;
  for (const auto& run : runs) any |= values_of(run).count(key) > 0;
  if (!any) return;
  svg::Chart chart;
  chart.id = (by_step ? "steps-" : "curve-") + key;
  chart.title = by_step ? title + " within epochs (" + key + ", the epoch's running mean)" : title + " (" + key + ")";
  chart.x_label = by_step ? "step" : "epoch";
  chart.integer_x = true;
  chart.y_label = key;
  chart.log_y = options.log_y;
  for (size_t g = 0; g < groups.size(); ++g) {
    std::map<int64_t, std::vector<double>> by_x;
    for (const auto& run : runs) {
      if (run.group != groups[g].first) continue;
      if (auto it = values_of(run).find(key); it != values_of(run).end())
        for (const auto& [x, value] : it->second) by_x[x].push_back(value);
    }
    if (by_x.empty()) continue;
    svg::Series series;
    series.name = groups[g].second;
    series.color = svg::palette(g);
    series.style = svg::Style::lines_and_points;
    bool band = false;
    for (const auto& [x, values] : by_x) {
      const MeanStd stats = mean_std(values);
      series.x.push_back(static_cast<double>(x));
      series.y.push_back(stats.count > 0 ? stats.mean : values.front());
      series.lo.push_back(stats.count > 1 ? stats.mean - stats.std : kNaN);
      series.hi.push_back(stats.count > 1 ? stats.mean + stats.std : kNaN);
      band |= stats.count > 1;
    }
    if (!band) series.lo.clear(), series.hi.clear();
    chart.series.push_back(std::move(series));
  }
  page.chart(svg::render(chart));
}

void learning_curves(Page& page, const std::vector<RunData>& runs, const ReportOptions& options) {
  static const std::vector<std::pair<std::string, std::string>> keys = {
      {"n_loss", "training noise loss"}, {"val_n_loss", "validation noise loss"}, {"i_loss", "training image loss"},
      {"val_i_loss", "validation image loss"}, {"val_kid", "KID"}, {"val_fid", "FID"},
      {"val_precision", "precision"}, {"val_recall", "recall"}, {"val_density", "density"},
      {"val_coverage", "coverage"}, {"loss", "training objective"}};
  auto groups = group_names(runs);
  if (groups.size() > kMaxCurveGroups) {
    std::map<std::string, std::vector<double>> metric;
    for (const auto& run : runs) metric[run.group].push_back(run.metric);
    auto score = [&](const std::string& group) {
      const MeanStd stats = mean_std(metric[group]);
      return stats.count > 0 ? stats.mean : std::numeric_limits<double>::infinity();
    };
    std::stable_sort(groups.begin(), groups.end(), [&](const auto& a, const auto& b) { return score(a.first) < score(b.first); });
    page.html += fmt::format("<p class=\"note\">The {} best of {} groups by {} are drawn; narrow the runs with --where "
                             "or group them more coarsely with --group-by for the others.</p>\n",
                             kMaxCurveGroups, groups.size(), escape(metric_value_label(options.metric)));
    groups.resize(kMaxCurveGroups);
  }
  // The training losses within epochs where they were recorded (training.log_every_steps): against
  // the step, so that a run of one epoch draws a curve, not a dot; then every metric per epoch.
  for (const auto& [key, title] : keys) group_curve(page, runs, groups, options, key, title, true);
  for (const auto& [key, title] : keys) group_curve(page, runs, groups, options, key, title, false);
}

// The rung view of an adaptive sweep: the decision metric against epochs for every trial, the
// pruned ones faded and ending at their rung, and each decision's cutoff marked at its rung.
void rung_view(Page& page, const std::vector<RunData>& runs, const std::vector<DecisionRecord>& decisions) {
  if (decisions.empty()) return;
  const std::string metric = decisions.front().metric;
  page.section("rungs", "Rungs: " + metric, "rungs");
  const PruningSaving saving = pruning_saving(runs, decisions);
  page.html += fmt::format(
      "<p>An adaptive sweep ({}): {} trials, {} pruned. They trained {} epochs of the {} that running every trial to "
      "the end takes: {:.0f}%. Each line is a trial's {}; a pruned trial is drawn faded and ends at the rung where it "
      "stopped; the black marks are the cutoffs its decisions compared with (the k-th best at the rung, or the "
      "median).</p>\n",
      escape(decisions.front().method), saving.trials, saving.pruned, saving.trained, saving.all,
      saving.all > 0 ? 100.0 * static_cast<double>(saving.trained) / static_cast<double>(saving.all) : 0.0,
      escape(metric));
  svg::Chart chart;
  chart.id = "rungs";
  chart.title = metric + " at every epoch, trial by trial";
  chart.x_label = "epoch";
  chart.integer_x = true;
  chart.y_label = metric;
  size_t kept = 0;
  for (const auto& run : runs) {
    auto it = run.metrics.find(metric);
    if (it == run.metrics.end()) continue;
    svg::Series series;
    const bool pruned = run.record.status == RunStatus::pruned;
    series.name = fmt::format("run {}{}", run.record.id, pruned ? " (pruned)" : "");
    series.color = pruned ? "#c9c9c9" : svg::palette(kept++);
    series.style = svg::Style::lines_and_points;
    for (const auto& [epoch, value] : it->second) {
      series.x.push_back(static_cast<double>(epoch));
      series.y.push_back(value);
    }
    chart.series.push_back(std::move(series));
  }
  std::map<int64_t, svg::Series> cutoffs;  // by rung
  for (const auto& decision : decisions) {
    svg::Series& series = cutoffs[decision.rung];
    series.name = fmt::format("cutoffs at rung {}", decision.rung);
    series.color = "#000000";
    series.style = svg::Style::points;
    series.x.push_back(static_cast<double>(decision.epoch));
    series.y.push_back(decision.cutoff);
  }
  for (auto& [rung, series] : cutoffs) chart.series.push_back(std::move(series));
  page.chart(svg::render(chart, 760, 380));
  page.html += "</section>\n";
}

// The search view: every sampled sweep's metric trial by trial, in the order the trials were
// proposed, with its best so far; pruned trials at the value of the rung they reached. Sweeps of
// several samplers (or several sweeps of one) on one chart, and their mean ± std by sampler.
void search_view(Page& page, const ResultsStore& store) {
  std::vector<SweepProgress> sweeps = sweep_progress(store);
  sweeps.erase(std::remove_if(sweeps.begin(), sweeps.end(),
                              [](const SweepProgress& s) { return s.outcomes.size() < 2 || s.sampler == "grid"; }),
               sweeps.end());
  // Shown for a model-based sweep, or several sampled ones to compare; one random sweep has its
  // trials in the rung view and the tables already.
  const bool model_based = std::any_of(sweeps.begin(), sweeps.end(), [](const SweepProgress& s) { return s.sampler == "tpe"; });
  if (sweeps.empty() || (!model_based && sweeps.size() < 2)) return;
  // One metric a chart: the first sweep's; sweeps that optimise another are named, not drawn.
  const std::string metric = sweeps.front().metric;
  std::vector<std::string> other;
  for (const auto& sweep : sweeps)
    if (sweep.metric != metric) other.push_back(sweep.sweep.substr(0, 8) + " (" + sweep.metric + ")");
  sweeps.erase(std::remove_if(sweeps.begin(), sweeps.end(), [&](const SweepProgress& s) { return s.metric != metric; }),
               sweeps.end());
  page.section("search", "Search: " + metric + " trial by trial", "search");
  page.html += fmt::format(
      "<p>{} sweep{} ({}). Each trial's {} in the order the trials were proposed (a model-based sampler) or drawn; the "
      "line is the best so far among the finished trials ({}); a pruned trial is a grey mark at its value at the "
      "rung it reached, which is not comparable with a finished one.{}</p>\n",
      sweeps.size(), sweeps.size() == 1 ? "" : "s", escape(sweeps.front().maximize ? "maximized" : "minimized"),
      escape(metric), sweeps.front().maximize ? "highest" : "lowest",
      other.empty() ? "" : " Not drawn here (another metric): " + escape(fmt::format("{}", fmt::join(other, ", "))) + ".");
  svg::Chart chart;
  chart.id = "search";
  chart.title = metric + " by trial, and the best so far";
  chart.x_label = "trial";
  chart.integer_x = true;
  chart.y_label = metric;
  for (size_t i = 0; i < sweeps.size(); ++i) {
    const SweepProgress& sweep = sweeps[i];
    const std::string name = sweep.label() + " " + sweep.sweep.substr(0, 8);
    svg::Series best{name + ": best so far", svg::palette(i), {}, {}, {}, {}, svg::Style::lines};
    for (size_t k = 0; k < sweep.best_so_far.size(); ++k) {
      best.x.push_back(static_cast<double>(k + 1));
      best.y.push_back(sweep.best_so_far[k]);
    }
    svg::Series finished{name + ": finished trials", svg::palette(i), {}, {}, {}, {}, svg::Style::points};
    svg::Series pruned{name + ": pruned, at its rung", "#b5b5b5", {}, {}, {}, {}, svg::Style::points};
    for (const TrialOutcome& outcome : sweep.outcomes) {
      svg::Series* into = outcome.status == RunStatus::finished ? &finished
                          : outcome.status == RunStatus::pruned ? &pruned
                                                                 : nullptr;
      if (into == nullptr) continue;
      into->x.push_back(static_cast<double>(outcome.trial + 1));
      into->y.push_back(outcome.value);
    }
    chart.series.push_back(std::move(best));
    chart.series.push_back(std::move(finished));
    if (!pruned.x.empty()) chart.series.push_back(std::move(pruned));
  }
  page.chart(svg::render(chart, 760, 380));
  const std::vector<ProgressStats> labels = progress_by_label(sweeps);
  const bool repeated = std::any_of(labels.begin(), labels.end(), [](const ProgressStats& l) { return l.sweeps > 1; });
  if (labels.size() > 1 || repeated) {
    svg::Chart compared;
    compared.id = "search-by-sampler";
    compared.title = "best " + metric + " so far by sampler: mean ± std over its sweeps";
    compared.x_label = "trials";
    compared.integer_x = true;
    compared.y_label = "best " + metric;
    std::string counts;
    for (size_t i = 0; i < labels.size(); ++i) {
      const ProgressStats& label = labels[i];
      svg::Series series{fmt::format("{} ({} sweep{})", label.label, label.sweeps, label.sweeps == 1 ? "" : "s"),
                         svg::palette(i), {}, {}, {}, {}, svg::Style::lines};
      for (size_t k = 0; k < label.mean.size(); ++k) {
        series.x.push_back(static_cast<double>(k + 1));
        series.y.push_back(label.mean[k]);
        if (label.sweeps < 2) continue;  // a band only over several sweeps
        const double deviation = std::isnan(label.std[k]) ? 0.0 : label.std[k];
        series.lo.push_back(label.mean[k] - deviation);
        series.hi.push_back(label.mean[k] + deviation);
      }
      compared.series.push_back(std::move(series));
      counts += fmt::format("{}{}: {} sweep{}", counts.empty() ? "" : "; ", label.label, label.sweeps,
                            label.sweeps == 1 ? "" : "s");
    }
    page.html += "<p>The same budget, sampler against sampler (" + escape(counts) +
                 "): the mean of the sweeps' best so far after each trial, the band ± one sample standard deviation "
                 "over the sweeps (seeds) where there are two or more.</p>\n";
    page.chart(svg::render(compared, 760, 380));
  }
  page.html += "</section>\n";
}

// A sample metric against network evaluations, by sampler: each finished run's last evaluation.
struct LastEvaluation {
  std::string sampler;
  int64_t nfe = 0;
  double value = kNaN;
};
void metric_against_nfe(Page& page, const std::vector<RunData>& runs, const std::string& id, const std::string& label,
                        const std::function<std::optional<LastEvaluation>(const RunData&)>& last, bool& section_open) {
  std::map<std::string, std::map<int64_t, std::vector<double>>> by_sampler;
  for (const auto& run : runs) {
    if (run.record.status != RunStatus::finished) continue;
    if (const auto evaluation = last(run); evaluation && evaluation->nfe > 0)
      by_sampler[evaluation->sampler][evaluation->nfe].push_back(evaluation->value);
  }
  std::set<int64_t> nfes;
  for (const auto& [sampler, points] : by_sampler)
    for (const auto& [nfe, values] : points) nfes.insert(nfe);
  if (nfes.size() < 2 && by_sampler.size() < 2) return;
  svg::Chart chart;
  chart.id = id;
  chart.title = label + " against network evaluations, by sampler (mean ± std over runs)";
  chart.x_label = "network evaluations per batch (NFE)";
  chart.y_label = label;
  chart.log_x = *nfes.rbegin() >= 10 * *nfes.begin();
  for (const auto& [sampler, points] : by_sampler) {
    svg::Series series;
    series.name = sampler;
    series.color = svg::palette(chart.series.size());
    series.style = svg::Style::lines_and_points;
    for (const auto& [nfe, values] : points) {
      const MeanStd stats = mean_std(values);
      series.x.push_back(static_cast<double>(nfe));
      series.y.push_back(stats.mean);
      series.lo.push_back(stats.count > 1 ? stats.mean - stats.std : kNaN);
      series.hi.push_back(stats.count > 1 ? stats.mean + stats.std : kNaN);
    }
    chart.series.push_back(std::move(series));
  }
  if (!section_open) page.section("samplers", "Sample metrics against network evaluations", "samplers");
  section_open = true;
  page.chart(svg::render(chart));
}

void kid_against_nfe(Page& page, const std::vector<RunData>& runs) {
  bool open = false;
  metric_against_nfe(page, runs, "kid-nfe", "KID", [](const RunData& run) -> std::optional<LastEvaluation> {
    if (run.kid.empty()) return std::nullopt;
    const KidRecord& last = run.kid.back().second;
    return LastEvaluation{last.sampler, last.nfe, last.mean};
  }, open);
  for (const auto& [name, title] : {std::pair<const char*, const char*>{"fid", "FID"}, {"precision", "precision"},
                                    {"recall", "recall"}, {"density", "density"}, {"coverage", "coverage"}})
    metric_against_nfe(page, runs, std::string(name) + "-nfe", title,
                       [name = std::string(name)](const RunData& run) -> std::optional<LastEvaluation> {
                         for (auto it = run.samples.rbegin(); it != run.samples.rend(); ++it)
                           if (it->second.metric == name) return LastEvaluation{it->second.sampler, it->second.nfe, it->second.value};
                         return std::nullopt;
                       }, open);
  if (open) page.html += "</section>\n";
}

// Precision against recall, a point a run (its last evaluation): "sharp but few modes" (high
// precision, low recall) against "diverse but blurry" (the reverse), which one distance hides.
void precision_recall(Page& page, const std::vector<RunData>& runs) {
  std::map<std::string, svg::Series> by_group;
  for (const auto& run : runs) {
    double precision = kNaN, recall = kNaN;
    for (const auto& [epoch, sample] : run.samples) {
      if (sample.metric == "precision") precision = sample.value;
      if (sample.metric == "recall") recall = sample.value;
    }
    if (std::isnan(precision) || std::isnan(recall)) continue;
    svg::Series& series = by_group[run.group_values];
    series.name = run.group_values;
    series.style = svg::Style::points;
    series.x.push_back(recall);
    series.y.push_back(precision);
  }
  if (by_group.empty()) return;
  svg::Chart chart;
  chart.id = "precision-recall";
  chart.title = "precision against recall, a point a run (its last evaluation)";
  chart.x_label = "recall (Kynkäänniemi et al. 2019)";
  chart.y_label = "precision";
  for (auto& [group, series] : by_group) {
    series.color = svg::palette(chart.series.size());
    chart.series.push_back(std::move(series));
  }
  page.section("precision-recall", "Precision and recall", "precision/recall");
  page.html += "<p>High precision with low recall: sharp samples of few modes; the reverse: diverse but off the data's "
               "manifold. One distance (KID, FID) cannot tell the two apart.</p>\n";
  page.chart(svg::render(chart));
  page.html += "</section>\n";
}

// A parameter's values as numbers, or as categories (indices into `categories`).
struct Coded {
  std::vector<double> values;
  std::vector<std::string> categories;
};
Coded code(const std::vector<const RunData*>& runs, const std::string& key) {
  Coded coded;
  bool numeric = true;
  for (const RunData* run : runs) {
    auto it = run->param.find(key);
    numeric &= it != run->param.end() && number(it->second).has_value();
  }
  std::set<std::string> distinct;
  for (const RunData* run : runs) {
    auto it = run->param.find(key);
    const std::string text = it == run->param.end() ? "" : it->second;
    if (numeric) coded.values.push_back(*number(text));
    else distinct.insert(unquoted(text));
  }
  if (numeric) return coded;
  coded.categories.assign(distinct.begin(), distinct.end());
  for (const RunData* run : runs) {
    auto it = run->param.find(key);
    const std::string text = unquoted(it == run->param.end() ? "" : it->second);
    coded.values.push_back(static_cast<double>(
        std::find(coded.categories.begin(), coded.categories.end(), text) - coded.categories.begin()));
  }
  return coded;
}

// The finished runs that have the report's metric.
std::vector<const RunData*> measured_runs(const std::vector<RunData>& runs) {
  std::vector<const RunData*> measured;
  for (const auto& run : runs)
    if (run.record.status == RunStatus::finished && std::isfinite(run.metric)) measured.push_back(&run);
  return measured;
}

void one_factor(Page& page, const std::vector<RunData>& runs, const std::vector<std::string>& axes,
                const std::string& metric) {
  const std::vector<const RunData*> subset = measured_runs(runs);
  if (subset.empty() || axes.empty()) return;
  page.section("effects", "One factor at a time: " + metric_value_label(metric), "effects");
  page.html += "<p>Each point is a run; the line joins the means over the runs at each value.</p>\n";
  for (const auto& key : axes) {
    const Coded coded = code(subset, key);
    std::set<double> distinct(coded.values.begin(), coded.values.end());
    if (distinct.size() < 2) continue;
    svg::Chart chart;
    chart.id = "effect-" + key;
    chart.title = metric_value_label(metric) + " against " + key;
    chart.x_label = key;
    chart.y_label = metric_value_label(metric);
    chart.x_categories = coded.categories;
    svg::Series points{"runs", svg::palette(0), {}, {}, {}, {}, svg::Style::points};
    std::map<double, std::vector<double>> by_value;
    for (size_t i = 0; i < subset.size(); ++i) {
      points.x.push_back(coded.values[i]);
      points.y.push_back(subset[i]->metric);
      by_value[coded.values[i]].push_back(subset[i]->metric);
    }
    svg::Series means{"mean", svg::palette(3), {}, {}, {}, {}, svg::Style::lines_and_points};
    for (const auto& [value, values] : by_value) {
      means.x.push_back(value);
      means.y.push_back(mean_std(values).mean);
    }
    chart.series = {points, means};
    page.chart(svg::render(chart));
  }
  page.html += "</section>\n";
}

void parallel_coordinates(Page& page, const std::vector<RunData>& runs, const std::vector<std::string>& axes,
                          const std::string& metric) {
  if (axes.size() < 2) return;
  const std::vector<const RunData*> subset = measured_runs(runs);
  if (subset.size() < 2) return;
  std::vector<svg::Dimension> dimensions;
  for (const auto& key : axes) {
    const Coded coded = code(subset, key);
    dimensions.push_back({key, coded.values, coded.categories});
  }
  std::vector<double> colors;
  std::vector<std::string> names;
  for (const RunData* run : subset) {
    colors.push_back(run->metric);
    names.push_back(fmt::format("run {}: {} {}", run->record.id, metric_value_label(metric), format_number(run->metric)));
  }
  dimensions.push_back({metric_value_label(metric), colors, {}});
  page.section("parallel", "Parallel coordinates", "parallel coordinates");
  page.html += "<p>One line per finished run, coloured by " +
               escape(metric_value_label(metric)) + " (dark: low, yellow: high).</p>\n";
  page.chart(svg::render_parallel("parallel", "swept parameters and " + metric_value_label(metric), dimensions, colors,
                                  names));
  page.html += "</section>\n";
}

std::string relative_link(const std::string& path, const fs::path& out) {
  std::error_code error;
  const fs::path base = fs::absolute(out).parent_path();
  const fs::path relative = fs::relative(fs::absolute(path), base, error);
  return error || relative.empty() ? path : relative.generic_string();
}

void sample_grids(Page& page, const std::vector<RunData>& runs, const ReportOptions& options) {
  std::vector<const RunData*> with_grids;
  for (const auto& run : runs)
    if (std::any_of(run.artifacts.begin(), run.artifacts.end(), [](const ArtifactRecord& a) { return a.kind == "sample_grid"; }))
      with_grids.push_back(&run);
  if (with_grids.empty()) return;
  std::stable_sort(with_grids.begin(), with_grids.end(), [](const RunData* a, const RunData* b) {
    const bool a_known = std::isfinite(a->metric), b_known = std::isfinite(b->metric);
    if (a_known != b_known) return a_known;
    return a_known && a->metric < b->metric;
  });
  page.section("grids", "Sample grids", "sample grids");
  page.html += "<p>The EMA network's samples from the same initial noise "
               "each epoch; move a slider to see a run's epochs (or open the report with <code>#epoch=N</code>); "
               "click a grid for its full size.</p>\n";
  const size_t shown = std::min(with_grids.size(), static_cast<size_t>(std::max<int64_t>(0, options.grid_runs)));
  if (shown < with_grids.size())
    page.html += fmt::format("<p class=\"note\">The grids of {} of {} runs, best first (--grid-runs; narrow the runs "
                             "with --where).</p>\n", shown, with_grids.size());
  page.html += "<div class=\"grid-row\">\n";
  for (size_t r = 0; r < shown; ++r) {
    const RunData& run = *with_grids[r];
    std::vector<const ArtifactRecord*> grids;
    for (const auto& artifact : run.artifacts)
      if (artifact.kind == "sample_grid") grids.push_back(&artifact);
    if (options.embed_images && static_cast<int64_t>(grids.size()) > options.grid_epochs && options.grid_epochs > 0) {
      std::vector<const ArtifactRecord*> picked;  // evenly spaced, the last one included
      const size_t count = static_cast<size_t>(options.grid_epochs);
      for (size_t k = 0; k < count; ++k) {
        const size_t index = (grids.size() - 1) * (k + 1) / count;
        if (picked.empty() || picked.back() != grids[index]) picked.push_back(grids[index]);
      }
      grids = picked;
    }
    std::string images, epochs;
    for (size_t g = 0; g < grids.size(); ++g) {
      std::string source;
      if (options.embed_images) {
        source = png_data_uri(grids[g]->path, options.thumbnail_width);
        if (source.empty()) {
          ++page.summary.missing_images;
          images += fmt::format("<span class=\"missing\" data-epoch=\"{}\"{}>epoch {}: {} is missing</span>",
                                grids[g]->epoch, g + 1 == grids.size() ? "" : " hidden", grids[g]->epoch,
                                escape(grids[g]->path));
          epochs += fmt::format("{}{}", g ? "," : "", grids[g]->epoch);
          continue;
        }
      } else {
        source = escape(relative_link(grids[g]->path, options.out));
      }
      ++page.summary.images;
      images += fmt::format("<img class=\"grid\" data-epoch=\"{}\" src=\"{}\" alt=\"run {} epoch {}\"{}>", grids[g]->epoch,
                            source, run.record.id, grids[g]->epoch, g + 1 == grids.size() ? "" : " hidden");
      epochs += fmt::format("{}{}", g ? "," : "", grids[g]->epoch);
    }
    page.html += fmt::format(
        "<figure class=\"grids\" data-run=\"{0}\">{1}<figcaption>{2} · {3} · <span class=\"epoch-label\">epoch {4}</span>"
        "<br><input type=\"range\" class=\"epoch-slider\" min=\"0\" max=\"{5}\" value=\"{5}\" data-epochs=\"{6}\" "
        "aria-label=\"epoch of run {0}\"></figcaption></figure>\n",
        run.record.id, images, run_link(run), escape(run.group), grids.back()->epoch, grids.size() - 1, epochs);
  }
  page.html += "</div></section>\n";
}

void run_sections(Page& page, const std::vector<RunData>& runs, const std::vector<std::string>& varying,
                  const RunData* baseline, const ReportOptions& options) {
  page.section("runs", "Runs", "runs");
  page.html += "<p>Each run's parameters that vary between the report's runs "
               "(the others, the same for every run, are listed once in the overview)";
  if (baseline)
    page.html += fmt::format("; those that differ from the baseline, {}, are highlighted (--baseline)", run_link(*baseline));
  page.html += ".</p>\n";
  for (const auto& run : runs) {
    page.html += fmt::format("<details class=\"run\" id=\"run-{}\"><summary>run {} · <span class=\"status {}\">{}</span> "
                             "· {}{}</summary>\n", run.record.id, run.record.id, to_string(run.record.status),
                             to_string(run.record.status), escape(run.group),
                             std::isfinite(run.best_kid) ? fmt::format(" · best KID {}", format_number(run.best_kid)) : "");
    if (!run.record.error.empty()) page.html += "<p class=\"error\">" + escape(run.record.error) + "</p>\n";
    page.html += fmt::format("<p>{} → {} on {}; config hash <code>{}</code>{}</p>\n", escape(run.record.started_at),
                             escape(run.record.finished_at), escape(run.record.host), escape(run.record.config_hash),
                             run.record.trained_by ? fmt::format("; evaluates the network trained by run {}",
                                                                 run.record.trained_by) : "");
    // Final metrics.
    if (!run.metrics.empty()) {
      page.html += "<table class=\"metrics\"><thead><tr><th>metric</th><th>last</th><th>epoch</th><th>min</th></tr>"
                   "</thead><tbody>";
      for (const auto& [key, values] : run.metrics) {
        double low = std::numeric_limits<double>::infinity();
        for (const auto& [epoch, value] : values) low = std::min(low, value);
        page.html += fmt::format("<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
                                 "<td class=\"num\">{}</td></tr>", escape(key), format_number(values.rbegin()->second),
                                 values.rbegin()->first, format_number(low));
      }
      page.html += "</tbody></table>\n";
    }
    page.html += "<table class=\"params\"><thead><tr><th>parameter</th><th>value</th><th>baseline</th></tr></thead><tbody>";
    for (const auto& [key, value] : run.params) {
      if (std::find(varying.begin(), varying.end(), key) == varying.end()) continue;
      std::string base;
      bool differs = false;
      if (baseline && baseline != &run) {
        auto it = baseline->param.find(key);
        base = it == baseline->param.end() ? "(none)" : it->second;
        differs = base != value;
      }
      page.html += fmt::format("<tr{}><td><code>{}</code></td><td>{}</td><td>{}</td></tr>", differs ? " class=\"diff\"" : "",
                               escape(key), escape(value), differs ? escape(base) : "");
    }
    page.html += "</tbody></table>\n";
    if (!run.artifacts.empty()) {
      // One line per kind: its newest file (and how many epochs have one).
      std::map<std::string, std::vector<const ArtifactRecord*>> by_kind;
      for (const auto& artifact : run.artifacts) by_kind[artifact.kind].push_back(&artifact);
      page.html += "<ul class=\"artifacts\">";
      for (const auto& [kind, list] : by_kind)
        page.html += fmt::format("<li>{}{}: <a href=\"{}\">{}</a> (epoch {})</li>", escape(kind),
                                 list.size() > 1 ? fmt::format(" ×{}", list.size()) : "",
                                 escape(relative_link(list.back()->path, options.out)), escape(list.back()->path),
                                 list.back()->epoch);
      page.html += "</ul>\n";
    }
    page.html += "</details>\n";
  }
  page.html += "</section>\n";
}

constexpr const char* kStyle = R"CSS(
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 2em 4em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
th { background: #f4f4f4; cursor: pointer; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.diff td { background: #fff3b0; }
.status.finished { color: #1a7f37; } .status.failed, .status.diverged { color: #c62828; } .status.running, .status.interrupted { color: #8a6d00; } .status.pruned { color: #666; }
.error { color: #c62828; white-space: pre-wrap; }
.chart-box { display: inline-block; margin: 0 1em 1em 0; }
svg.chart { background: #fff; font-size: 11px; }
svg.chart .title { font-size: 13px; font-weight: 600; }
svg.chart .grid { stroke: #eee; } svg.chart .frame { fill: none; stroke: #999; }
svg.chart .line { fill: none; stroke-width: 1.8; } svg.chart .band { opacity: .18; stroke: none; }
svg.chart .errorbar { stroke-width: 1.5; fill: none; } svg.chart .note { fill: #c62828; }
svg.chart .pc-axis { stroke: #555; } svg.chart .pc-line { fill: none; stroke-width: 1.5; opacity: .8; }
svg.chart .legend { cursor: pointer; } svg.chart .series.off, svg.chart .legend.off { opacity: .15; }
.grid-row { display: flex; flex-wrap: wrap; gap: 1em; }
figure.grids { margin: 0; } figure.grids img { max-width: 256px; image-rendering: pixelated; cursor: zoom-in; display: block; }
figure.grids img.zoomed { max-width: none; cursor: zoom-out; }
figure.grids [hidden] { display: none; }
.missing { color: #c62828; display: block; }
details.run { margin: .3em 0; } details.run > summary { cursor: pointer; }
.note { color: #8a6d00; }
@media print { details.run { display: none; } }
)CSS";

// Plain JavaScript, no library: sortable tables, series toggled from the legend, the epoch
// sliders (also set from the page's #epoch=N), grids zoomed on click.
constexpr const char* kScript = R"JS(
(function () {
  'use strict';
  function sortTable(table, column, numeric, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].textContent, y = b.cells[column].textContent;
      if (numeric) {
        var p = parseFloat(x), q = parseFloat(y);
        if (isNaN(p)) return 1; if (isNaN(q)) return -1;
        return descending ? q - p : p - q;
      }
      return descending ? y.localeCompare(x) : x.localeCompare(y);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, column) {
      th.addEventListener('click', function () {
        var descending = th.dataset.sorted === 'asc';
        table.querySelectorAll('th').forEach(function (other) { delete other.dataset.sorted; });
        th.dataset.sorted = descending ? 'desc' : 'asc';
        sortTable(table, column, th.dataset.numeric === '1', descending);
      });
    });
  });
  document.querySelectorAll('svg.chart').forEach(function (chart) {
    chart.querySelectorAll('g.legend').forEach(function (entry, index) {
      entry.addEventListener('click', function () {
        var series = chart.querySelectorAll('g.series')[index];
        if (series) series.classList.toggle('off');
        entry.classList.toggle('off');
      });
    });
  });
  function showEpoch(slider, index) {
    var figure = slider.closest('figure');
    var shown = figure.querySelectorAll('[data-epoch]');
    shown.forEach(function (item, i) { item.hidden = i !== index; });
    slider.value = index;
    figure.querySelector('.epoch-label').textContent = 'epoch ' + shown[index].dataset.epoch;
  }
  var sliders = document.querySelectorAll('input.epoch-slider');
  sliders.forEach(function (slider) {
    slider.addEventListener('input', function () { showEpoch(slider, Number(slider.value)); });
  });
  document.querySelectorAll('figure.grids img').forEach(function (img) {
    img.addEventListener('click', function () { img.classList.toggle('zoomed'); });
  });
  // #epoch=N: every slider at its epoch nearest N.
  var match = /epoch=(\d+)/.exec(location.hash);
  if (match) {
    var wanted = Number(match[1]);
    sliders.forEach(function (slider) {
      var epochs = slider.dataset.epochs.split(',').map(Number), best = 0;
      epochs.forEach(function (epoch, i) { if (Math.abs(epoch - wanted) < Math.abs(epochs[best] - wanted)) best = i; });
      showEpoch(slider, best);
    });
  }
  document.body.dataset.ready = 'true';
})();
)JS";

std::string base64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += alphabet[(n >> shift) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

}  // namespace

std::string png_data_uri(const fs::path& file, int64_t max_width) {
  int width = 0, height = 0, channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load(file.c_str(), &width, &height, &channels, 0),
                                                   stbi_image_free);
  if (!pixels) return "";
  const unsigned char* data = pixels.get();
  std::vector<unsigned char> resized;
  if (max_width > 0 && width > max_width) {
    const int new_width = static_cast<int>(max_width);
    const int new_height = std::max(1, static_cast<int>(std::lround(double(height) * new_width / width)));
    resized.resize(static_cast<size_t>(new_width) * new_height * channels);
    if (!stbir_resize_uint8(data, width, height, 0, resized.data(), new_width, new_height, 0, channels)) return "";
    data = resized.data();
    width = new_width;
    height = new_height;
  }
  std::string bytes;
  auto append = [](void* context, void* chunk, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(chunk), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(append, &bytes, width, height, channels, data, width * channels)) return "";
  return "data:image/png;base64," + base64(bytes);
}

std::string render_report(ResultsStore& store, const ReportOptions& options, ReportSummary* summary) {
  RunsQuery selection;
  selection.where = options.where;
  const Table every_run = runs_table(store, selection);  // one row per run that passes --where
  std::vector<RunData> runs = load_runs(store, every_run);
  const std::vector<std::string> varying = varying_keys(runs);
  std::vector<std::string> axes;  // the swept parameters but the seed
  for (const auto& key : varying)
    if (key != "experiment.seed") axes.push_back(key);
  std::vector<std::string> group_by = options.group_by.empty() ? axes : options.group_by;
  for (const auto& key : options.group_by)
    if (!runs.empty() && !runs.front().param.count(key)) {
      std::vector<std::string> known;
      for (const auto& [name, value] : runs.front().params) known.push_back(name);
      throw ConfigError("unknown --group-by key \"" + key + "\"",
                        ErrorContext::with_hint(nearest_name(key, known).empty()
                                                    ? "give parameters as section.key, e.g. loss.plugin"
                                                    : "did you mean \"" + nearest_name(key, known) + "\"?"));
    }
  if (options.metric != "best_kid") {
    bool known = false;
    for (const auto& run : runs) known |= run.metrics.count(options.metric) > 0;
    if (!known && !runs.empty())
      throw ConfigError("no run has the metric \"" + options.metric + "\"",
                        ErrorContext::with_hint("best_kid, or a metric key such as val_n_loss"));
  }
  for (auto& run : runs) {
    std::string label, values;
    for (const auto& key : group_by) {
      auto it = run.param.find(key);
      const std::string value = unquoted(it == run.param.end() ? "" : it->second);
      label += (label.empty() ? "" : ", ") + key + "=" + value;
      values += (values.empty() ? "" : ", ") + value;
    }
    run.group = label.empty() ? "all runs" : label;
    run.group_values = values.empty() ? "all runs" : values;
    run.metric = final_metric(run, options.metric);
  }
  const RunData* baseline = nullptr;
  if (options.baseline > 0) {
    for (const auto& run : runs)
      if (run.record.id == options.baseline) baseline = &run;
    if (!baseline)
      throw ConfigError(fmt::format("--baseline {}: no such run among the report's runs", options.baseline),
                        ErrorContext::in_file(store.path().string()));
  } else {
    for (const auto& run : runs)
      if (std::isfinite(run.metric) && (!baseline || run.metric < baseline->metric)) baseline = &run;
    if (!baseline && !runs.empty()) baseline = &runs.front();
  }

  Page page;
  page.summary.runs = static_cast<int64_t>(runs.size());
  std::string names;
  for (const auto& run : runs)
    if (names.find(run.record.name) == std::string::npos) names += (names.empty() ? "" : ", ") + run.record.name;
  const std::string title = "difflab report: " + (names.empty() ? store.path().filename().string() : names);
  page.html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  if (options.refresh_seconds > 0)
    page.html += fmt::format("<meta http-equiv=\"refresh\" content=\"{}\">\n", options.refresh_seconds);
  page.html += "<meta name=\"generator\" content=\"difflab " + std::string(DIFFLAB_VERSION) + "\">\n<title>" +
               escape(title) + "</title>\n<style>" + kStyle + "</style>\n</head><body>\n";
  page.html += "<h1>" + escape(title) + "</h1>\n";
  const size_t navigation = page.html.size();  // filled in once the sections are known
  overview(page, runs, varying, options.metric, store);
  if (!runs.empty()) {
    results_table(page, store, options, group_by, every_run);
    page.section("curves", "Learning curves", "learning curves");
    page.html += "<p>One line per group (" +
                 escape(group_by.empty() ? std::string("all runs") : fmt::format("{}", fmt::join(group_by, ", "))) +
                 "), the mean over its runs; the band is ± one sample standard deviation where a group has two or "
                 "more runs at an epoch. Click a legend entry to hide its line.</p>\n";
    learning_curves(page, runs, options);
    page.html += "</section>\n";
    rung_view(page, runs, store.decisions());
    search_view(page, store);
    kid_against_nfe(page, runs);
    precision_recall(page, runs);
    one_factor(page, runs, axes, options.metric);
    parallel_coordinates(page, runs, axes, options.metric);
    sample_grids(page, runs, options);
    run_sections(page, runs, varying, baseline, options);
  }
  page.html += fmt::format("<footer><p>Written by difflab {} from <code>{}</code>{}.</p></footer>\n", DIFFLAB_VERSION,
                           escape(store.path().string()),
                           options.refresh_seconds > 0 ? fmt::format("; rewritten every {} s while difflab report "
                                                                     "--watch runs", options.refresh_seconds) : "");
  page.html += "<script>" + std::string(kScript) + "</script>\n</body></html>\n";
  std::string nav = "<nav>";
  for (const auto& [id, name] : page.sections) nav += fmt::format("<a href=\"#{}\">{}</a>", id, escape(name));
  page.html.insert(navigation, nav + "</nav>\n");
  if (summary) *summary = page.summary;
  return page.html;
}

}  // namespace difflab
