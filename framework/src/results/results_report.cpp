#include "results/results_report.h"
#include "results/statistics.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <tuple>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>

#include "difflab/error.h"
#include "results/filter.h"
#include "results/results_store.h"

namespace difflab {
namespace {

std::optional<std::string> cell(const SQLite::Column& column) {
  if (column.isNull()) return std::nullopt;
  if (column.isFloat()) return fmt::format("{:.6g}", column.getDouble());
  return column.getString();
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += c;
    }
  }
  return out + "\"";
}

// A parameter's stored TOML text as a cell: strings without their quotes.
std::string param_cell(const std::string& value, const std::string& type) {
  if (type == "string" && value.size() >= 2) return value.substr(1, value.size() - 2);
  return value;
}

Table query_table(SQLite::Database& db, const std::string& sql, int64_t bind_id = 0) {
  SQLite::Statement query(db, sql);
  if (bind_id > 0) query.bind(1, bind_id);
  Table table;
  for (int i = 0; i < query.getColumnCount(); ++i) table.columns.push_back(query.getColumnName(i));
  table.numeric.assign(table.columns.size(), false);
  while (query.executeStep()) {
    std::vector<std::optional<std::string>> row;
    for (int i = 0; i < query.getColumnCount(); ++i) {
      row.push_back(cell(query.getColumn(i)));
      if (query.getColumn(i).isFloat() || query.getColumn(i).isInteger()) table.numeric[i] = true;
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

}  // namespace

TableFormat parse_table_format(const std::string& name) {
  if (name == "table") return TableFormat::table;
  if (name == "csv") return TableFormat::csv;
  if (name == "json") return TableFormat::json;
  if (name == "markdown") return TableFormat::markdown;
  throw ConfigError("unknown format \"" + name + "\"", ErrorContext::in_file("--format", "table, csv, json or markdown"));
}

std::string format_table(const Table& table, TableFormat format) {
  const size_t columns = table.columns.size();
  std::string out;
  if (format == TableFormat::json) {
    out = "[";
    for (size_t r = 0; r < table.rows.size(); ++r) {
      out += r ? ",\n {" : "\n {";
      for (size_t c = 0; c < columns; ++c) {
        const auto& value = table.rows[r][c];
        std::string shown = !value ? "null" : table.numeric[c] ? *value : json_string(*value);
        out += (c ? ", " : "") + json_string(table.columns[c]) + ": " + shown;
      }
      out += "}";
    }
    return out + (table.rows.empty() ? "]\n" : "\n]\n");
  }
  if (format == TableFormat::csv) {
    for (size_t c = 0; c < columns; ++c) out += (c ? "," : "") + csv_field(table.columns[c]);
    out += "\n";
    for (const auto& row : table.rows) {
      for (size_t c = 0; c < columns; ++c) out += (c ? "," : "") + csv_field(row[c].value_or(""));
      out += "\n";
    }
    return out;
  }
  std::vector<size_t> widths(columns);
  for (size_t c = 0; c < columns; ++c) {
    widths[c] = std::max<size_t>(table.columns[c].size(), 3);
    for (const auto& row : table.rows) widths[c] = std::max(widths[c], row[c].value_or("-").size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text = format == TableFormat::markdown ? "|" : "";
    for (size_t c = 0; c < columns; ++c) {
      const std::string padded = table.numeric[c] ? fmt::format("{:>{}}", cells[c], widths[c])
                                                  : fmt::format("{:<{}}", cells[c], widths[c]);
      text += format == TableFormat::markdown ? " " + padded + " |" : (c ? "  " : "") + padded;
    }
    while (format == TableFormat::table && !text.empty() && text.back() == ' ') text.pop_back();
    return text + "\n";
  };
  out += line(table.columns);
  std::vector<std::string> rule;
  for (size_t c = 0; c < columns; ++c)
    rule.push_back(format == TableFormat::markdown && table.numeric[c] ? std::string(widths[c] - 1, '-') + ":"
                                                                       : std::string(widths[c], '-'));
  out += line(rule);
  for (const auto& row : table.rows) {
    std::vector<std::string> cells;
    for (const auto& value : row) cells.push_back(value.value_or("-"));
    out += line(cells);
  }
  return out;
}

namespace {

// The summary columns of every run (run_summary), in display order after the parameters.
const std::vector<std::string> kMetricColumns = {"epochs", "n_loss", "i_loss", "val_n_loss",
                                                 "val_i_loss", "best_kid", "best_kid_epoch"};
// What --group-by aggregates, best first.
const std::vector<std::string> kAggregated = {"best_kid", "val_n_loss", "val_i_loss", "n_loss", "i_loss"};
// The sample metrics' columns, where some run has them.
const std::vector<std::string> kSampleColumns = {"best_fid", "best_precision", "best_recall", "best_density",
                                                 "best_coverage"};
std::vector<std::string> present(const std::vector<std::string>& columns, const std::map<std::string, bool>& numeric) {
  std::vector<std::string> shown;
  for (const auto& column : columns)
    if (numeric.count(column)) shown.push_back(column);
  return shown;
}

// Every run as a Row of named cells: run_id, name, status, the summary metrics and every
// parameter; `numeric` receives which columns hold numbers, `keys` the parameters in order.
std::vector<Row> read_runs(SQLite::Database& db, std::map<std::string, bool>& numeric, std::vector<std::string>& keys) {
  std::vector<Row> rows;
  std::map<std::string, size_t> index;
  SQLite::Statement summary(db, "SELECT run_id, name, status, epochs, n_loss, i_loss, val_n_loss, val_i_loss, "
                                "best_kid, best_kid_epoch FROM run_summary ORDER BY run_id");
  for (int i = 0; i < summary.getColumnCount(); ++i) {
    const std::string name = summary.getColumnName(i);
    numeric[name] = name != "name" && name != "status";
  }
  while (summary.executeStep()) {
    Row row;
    for (int i = 0; i < summary.getColumnCount(); ++i) {
      const SQLite::Column column = summary.getColumn(i);
      Cell value{cell(column), std::nullopt};
      if (!column.isNull() && numeric[summary.getColumnName(i)]) value.number = column.getDouble();
      row[summary.getColumnName(i)] = value;
    }
    index[*row["run_id"].text] = rows.size();
    rows.push_back(std::move(row));
  }
  // The sample metrics besides KID (sample_metrics, schema 12): each run's best over its epochs,
  // lowest FID, highest precision, recall, density and coverage, as best_fid, best_precision, ...
  if (db.tableExists("sample_metrics")) {
    SQLite::Statement samples(db, "SELECT run_id, metric, CASE WHEN metric = 'fid' THEN MIN(value) ELSE MAX(value) END "
                                  "FROM sample_metrics WHERE source = 'epoch' GROUP BY run_id, metric");
    while (samples.executeStep()) {
      auto found = index.find(samples.getColumn(0).getString());
      if (found == index.end()) continue;
      const std::string column = "best_" + samples.getColumn(1).getString();
      numeric[column] = true;
      rows[found->second][column] = Cell{fmt::format("{:.6g}", samples.getColumn(2).getDouble()), samples.getColumn(2).getDouble()};
    }
  }
  // An adaptive sweep's trials: the last rung each was judged at (strategy/pruning.h).
  SQLite::Statement rungs(db, "SELECT run_id, MAX(rung) FROM decisions GROUP BY run_id");
  while (rungs.executeStep()) {
    auto found = index.find(rungs.getColumn(0).getString());
    if (found == index.end()) continue;
    numeric["rung"] = true;
    rows[found->second]["rung"] = Cell{rungs.getColumn(1).getString(), rungs.getColumn(1).getDouble()};
  }
  SQLite::Statement params(db, "SELECT run_id, key, value, type, number FROM params ORDER BY rowid");
  while (params.executeStep()) {
    auto found = index.find(params.getColumn(0).getString());
    if (found == index.end()) continue;
    const std::string key = params.getColumn(1).getString(), type = params.getColumn(3).getString();
    const bool is_number = type == "integer" || type == "float";
    if (!numeric.count(key)) {
      numeric[key] = is_number;
      keys.push_back(key);
    }
    numeric[key] = numeric[key] && is_number;
    Cell value{param_cell(params.getColumn(2).getString(), type), std::nullopt};
    if (is_number) value.number = params.getColumn(4).getDouble();
    rows[found->second][key] = value;
  }
  return rows;
}

// The columns whose value differs between `rows` (or is missing from some).
std::vector<std::string> varying(const std::vector<Row>& rows, const std::vector<std::string>& keys) {
  std::vector<std::string> result;
  for (const auto& key : keys) {
    std::optional<std::optional<std::string>> first;
    for (const auto& row : rows) {
      auto found = row.find(key);
      std::optional<std::string> value = found == row.end() ? std::nullopt : found->second.text;
      if (!first) first = value;
      else if (*first != value) {
        result.push_back(key);
        break;
      }
    }
  }
  return result;
}

size_t column_index(const Table& table, const std::string& name, const std::string& option) {
  auto found = std::find(table.columns.begin(), table.columns.end(), name);
  if (found == table.columns.end())
    throw ConfigError("no column \"" + name + "\" to " + option.substr(2) + " by",
                      ErrorContext::in_file(option, fmt::format("columns: {}", fmt::join(table.columns, ", "))));
  return static_cast<size_t>(found - table.columns.begin());
}

// Stable sort on one column: numbers as numbers (a "mean ± std" cell by its mean), NULLs last.
void sort_rows(Table& table, size_t index, bool descending) {
  const bool numeric = table.numeric[index];
  auto key = [&](const std::optional<std::string>& text) { return std::strtod(text->c_str(), nullptr); };
  std::stable_sort(table.rows.begin(), table.rows.end(), [&](const auto& a, const auto& b) {
    if (!a[index] || !b[index]) return a[index].has_value() && !b[index].has_value();
    const bool less = numeric ? key(a[index]) < key(b[index]) : *a[index] < *b[index];
    const bool greater = numeric ? key(b[index]) < key(a[index]) : *b[index] < *a[index];
    return descending ? greater : less;
  });
}

// Mean and sample standard deviation (n - 1) of the values present, two-pass for accuracy.
std::tuple<size_t, double, double> mean_std(const std::vector<double>& values) {
  if (values.empty()) return {0, 0.0, 0.0};
  double mean = 0.0;
  for (double value : values) mean += value / static_cast<double>(values.size());
  double squares = 0.0;
  for (double value : values) squares += (value - mean) * (value - mean);
  return {values.size(), mean, values.size() > 1 ? std::sqrt(squares / static_cast<double>(values.size() - 1)) : 0.0};
}

// Each group's difference to the baseline group (query.baseline picks it), per metric: the
// difference of means, its 95% bootstrap interval over seeds and Welch's p (statistics.h).
void add_baseline_columns(Table& table, const std::vector<std::vector<const Row*>>& members,
                          const std::vector<std::string>& aggregated, const RunsQuery& query,
                          const std::map<std::string, bool>& numeric) {
  std::optional<Filter> filter;
  try {
    filter = Filter::parse(query.baseline, numeric);
  } catch (const Error& error) {
    throw ConfigError(error.what(), ErrorContext::in_file("--baseline", "e.g. 'loss.plugin = \"mae\"'"));
  }
  std::vector<size_t> matched;
  for (size_t g = 0; g < members.size(); ++g)
    if (std::any_of(members[g].begin(), members[g].end(), [&](const Row* row) { return filter->matches(*row); }))
      matched.push_back(g);
  if (matched.size() != 1)
    throw ConfigError(fmt::format("--baseline '{}' matches {} of the {} groups; it must pick one", query.baseline,
                                  matched.size(), members.size()),
                      ErrorContext::in_file("--baseline", "name the baseline group's values of the --group-by keys"));
  const size_t base = matched.front();
  const auto pairs = [](const std::vector<const Row*>& rows, const std::string& metric) {
    std::vector<std::pair<std::string, double>> values;
    for (const Row* row : rows) {
      const auto found = row->find(metric);
      if (found == row->end() || !found->second.number) continue;
      const auto seed = row->find("experiment.seed");
      values.emplace_back(seed == row->end() || !seed->second.text ? "" : *seed->second.text, *found->second.number);
    }
    return values;
  };
  for (size_t g = 0; g < members.size(); ++g)
    for (const auto& metric : aggregated) {
      auto& cells = table.rows[g];
      if (g == base) {
        if (query.split_std) cells.insert(cells.end(), {std::string("0"), std::nullopt, std::nullopt, std::nullopt});
        else cells.emplace_back("baseline");
        continue;
      }
      const auto a = pairs(members[g], metric), b = pairs(members[base], metric);
      std::vector<double> va, vb;
      for (const auto& entry : a) va.push_back(entry.second);
      for (const auto& entry : b) vb.push_back(entry.second);
      const BootstrapInterval interval = bootstrap_difference(a, b);
      const WelchTest welch = welch_test(va, vb);
      const auto number = [](double value) {
        return std::isnan(value) ? std::nullopt : std::optional<std::string>(fmt::format("{:.6g}", value));
      };
      if (query.split_std) {
        cells.insert(cells.end(), {number(interval.difference), number(interval.low), number(interval.high), number(welch.p)});
      } else if (std::isnan(interval.difference)) {
        cells.emplace_back(std::nullopt);
      } else {
        cells.push_back(fmt::format("{:+.3g} [{:+.3g}, {:+.3g}]{} p={}", interval.difference, interval.low,
                                    interval.high, interval.paired ? " paired" : "",
                                    std::isnan(welch.p) ? std::string("–") : fmt::format("{:.2g}", welch.p)));
      }
    }
}

Table group_table(const std::vector<Row>& rows, const RunsQuery& query, const std::map<std::string, bool>& numeric) {
  std::vector<std::string> aggregated = {kAggregated.front()};  // best_kid, the sample metrics, the losses
  for (const auto& column : present(kSampleColumns, numeric)) aggregated.push_back(column);
  aggregated.insert(aggregated.end(), kAggregated.begin() + 1, kAggregated.end());
  Table table;
  table.columns = query.group_by;
  for (const auto& key : query.group_by) table.numeric.push_back(numeric.at(key));
  table.columns.push_back("runs");
  table.numeric.push_back(true);
  for (const auto& metric : aggregated) {
    if (query.split_std) {
      table.columns.insert(table.columns.end(), {metric + "_mean", metric + "_std"});
      table.numeric.insert(table.numeric.end(), {true, true});
    } else {
      table.columns.push_back(metric);
      table.numeric.push_back(true);
    }
  }
  if (!query.baseline.empty())
    for (const auto& metric : aggregated) {
      if (query.split_std) {
        for (const char* part : {"_diff", "_ci_low", "_ci_high", "_p"}) table.columns.push_back(metric + part);
        table.numeric.insert(table.numeric.end(), {true, true, true, true});
      } else {
        table.columns.push_back(metric + " vs baseline");
        table.numeric.push_back(false);
      }
    }
  std::vector<std::vector<std::optional<std::string>>> keys;
  std::vector<std::vector<const Row*>> members;
  for (const auto& row : rows) {
    if (!row.at("status").text || parse_run_status(*row.at("status").text) != RunStatus::finished) continue;
    std::vector<std::optional<std::string>> key;
    for (const auto& column : query.group_by) {
      auto found = row.find(column);
      key.push_back(found == row.end() ? std::nullopt : found->second.text);
    }
    auto existing = std::find(keys.begin(), keys.end(), key);
    if (existing == keys.end()) {
      keys.push_back(key);
      members.push_back({&row});
    } else {
      members[static_cast<size_t>(existing - keys.begin())].push_back(&row);
    }
  }
  for (size_t g = 0; g < keys.size(); ++g) {
    std::vector<std::optional<std::string>> cells = keys[g];
    cells.push_back(std::to_string(members[g].size()));
    for (const auto& metric : aggregated) {
      std::vector<double> values;
      for (const Row* row : members[g])
        if (auto found = row->find(metric); found != row->end() && found->second.number)
          values.push_back(*found->second.number);
      const auto [count, mean, std] = mean_std(values);
      if (query.split_std) {
        cells.push_back(count ? std::optional<std::string>(fmt::format("{:.6g}", mean)) : std::nullopt);
        cells.push_back(count > 1 ? std::optional<std::string>(fmt::format("{:.6g}", std)) : std::nullopt);
      } else if (count == 0) {
        cells.emplace_back(std::nullopt);
      } else {
        cells.push_back(count > 1 ? fmt::format("{:.4g} ± {:.2g}", mean, std) : fmt::format("{:.4g}", mean));
      }
    }
    table.rows.push_back(std::move(cells));
  }
  if (!query.baseline.empty()) add_baseline_columns(table, members, aggregated, query, numeric);
  for (size_t k = query.group_by.size(); k-- > 0;) sort_rows(table, k, false);
  return table;
}

}  // namespace

Table runs_table(ResultsStore& store, const RunsQuery& query) {
  std::map<std::string, bool> numeric;
  std::vector<std::string> keys;
  std::vector<Row> rows = read_runs(store.database(), numeric, keys);
  if (!query.where.empty()) {
    const Filter filter = Filter::parse(query.where, numeric);
    rows.erase(std::remove_if(rows.begin(), rows.end(), [&](const Row& row) { return !filter.matches(row); }),
               rows.end());
  }
  Table table;
  if (!query.group_by.empty()) {
    for (const auto& key : query.group_by)
      if (!numeric.count(key)) {
        std::vector<std::string> names;
        for (const auto& entry : numeric) names.push_back(entry.first);
        const std::string nearest = nearest_name(key, names);
        throw ConfigError("no column \"" + key + "\" to group by",
                          ErrorContext::in_file("--group-by", nearest.empty() ? "e.g. loss.plugin" : "did you mean " + nearest + "?"));
      }
    table = group_table(rows, query, numeric);
  } else {
    // One row per run: the parameters that differ between the runs shown are what tells them apart.
    table.columns = {"run_id", "status"};
    if (numeric.count("rung")) table.columns.push_back("rung");  // an adaptive sweep's
    std::vector<std::string> shown = varying(rows, std::vector<std::string>{"name"});
    for (const auto& key : varying(rows, keys)) shown.push_back(key);
    table.columns.insert(table.columns.end(), shown.begin(), shown.end());
    table.columns.insert(table.columns.end(), kMetricColumns.begin(), kMetricColumns.end());
    for (const auto& column : present(kSampleColumns, numeric)) table.columns.push_back(column);
    for (const auto& column : table.columns) table.numeric.push_back(numeric.at(column));
    for (const auto& row : rows) {
      std::vector<std::optional<std::string>> cells;
      for (const auto& column : table.columns) {
        auto found = row.find(column);
        cells.push_back(found == row.end() ? std::nullopt : found->second.text);
      }
      table.rows.push_back(std::move(cells));
    }
  }
  if (!query.sort.empty()) {
    const bool descending = query.sort[0] == '-';
    std::string column = descending ? query.sort.substr(1) : query.sort;
    if (column == "kid") column = "best_kid";
    if (query.split_std && !query.group_by.empty() &&
        (std::find(kAggregated.begin(), kAggregated.end(), column) != kAggregated.end() ||
         std::find(kSampleColumns.begin(), kSampleColumns.end(), column) != kSampleColumns.end()))
      column += "_mean";
    sort_rows(table, column_index(table, column, "--sort"), descending);
  }
  if (query.limit > 0 && static_cast<int64_t>(table.rows.size()) > query.limit)
    table.rows.resize(static_cast<size_t>(query.limit));
  return table;
}

std::string run_report(ResultsStore& store, int64_t run_id, TableFormat format) {
  std::optional<RunRecord> run = store.run(run_id);
  if (!run) throw ConfigError(fmt::format("no run {} in the database", run_id), ErrorContext::in_file("--run"));
  SQLite::Database& db = store.database();
  // Metric history: one row per epoch, one column per metric key.
  std::vector<std::string> keys;
  SQLite::Statement key_query(db, "SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key");
  key_query.bind(1, run_id);
  while (key_query.executeStep()) keys.push_back(key_query.getColumn(0).getString());
  std::string pivot = "SELECT epoch, MAX(step) AS step";
  for (const auto& key : keys)
    pivot += fmt::format(", MAX(CASE WHEN key = '{}' THEN value END) AS \"{}\"", key, key);  // keys are ours
  pivot += " FROM metrics WHERE run_id = ? GROUP BY epoch ORDER BY epoch";
  Table history = query_table(db, pivot, run_id);
  Table kid = query_table(db,
                          "SELECT epoch, mean, std, protocol, features, sampler, diffusion_steps, nfe, "
                          "real_count, generated_count FROM kid WHERE run_id = ? ORDER BY epoch",
                          run_id);
  Table artifacts = query_table(db, "SELECT epoch, kind, path FROM artifacts WHERE run_id = ? ORDER BY epoch, kind",
                                run_id);
  Table samples = db.tableExists("sample_metrics")
                      ? query_table(db,
                                    "SELECT epoch, source, metric, value, features, sampler, diffusion_steps, nfe, "
                                    "real_count, generated_count, k FROM sample_metrics WHERE run_id = ? "
                                    "ORDER BY epoch, source, metric",
                                    run_id)
                      : Table{};
  if (format == TableFormat::json)
    return fmt::format("{{\"run_id\": {}, \"status\": {}, \"error\": {}, \"config_toml\": {},\n"
                       "\"metrics\": {}, \"kid\": {}, \"sample_metrics\": {}, \"artifacts\": {}}}\n",
                       run_id, json_string(to_string(run->status)), json_string(run->error), json_string(run->config_toml),
                       format_table(history, format), format_table(kid, format), format_table(samples, format),
                       format_table(artifacts, format));
  const std::string heading = format == TableFormat::markdown ? "## " : "# ";
  return fmt::format("{}run {} ({}){}\n\n{}configuration\n{}\n{}metrics\n{}\n{}kid\n{}\n{}{}artifacts\n{}", heading,
                     run_id, to_string(run->status), run->error.empty() ? "" : ": " + run->error, heading,
                     run->config_toml, heading, format_table(history, format), heading, format_table(kid, format),
                     samples.rows.empty() ? "" : heading + "sample metrics\n" + format_table(samples, format) + "\n",
                     heading, format_table(artifacts, format));
}

}  // namespace difflab
