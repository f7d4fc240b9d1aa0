#include "difflab/results_report.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <algorithm>
#include <fmt/format.h>
#include <map>

#include "difflab/error.h"
#include "difflab/results_store.h"

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
  throw ConfigError("unknown format \"" + name + "\"", {"--format", 0, 0, "", "table, csv, json or markdown"});
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

Table runs_table(ResultsStore& store, const std::string& sort, int64_t limit) {
  SQLite::Database& db = store.database();
  Table table = query_table(db,
                            "SELECT run_id, status, epochs, n_loss, i_loss, val_n_loss, val_i_loss, "
                            "best_kid, best_kid_epoch FROM run_summary ORDER BY run_id");
  // The parameters that differ between runs are what distinguishes them: the swept ones.
  std::vector<std::string> varying;
  SQLite::Statement keys(db, "SELECT key FROM params GROUP BY key HAVING COUNT(DISTINCT value) > 1 "
                             "OR COUNT(*) < (SELECT COUNT(*) FROM runs) ORDER BY MIN(rowid)");
  while (keys.executeStep()) varying.push_back(keys.getColumn(0).getString());
  std::map<std::pair<std::string, std::string>, std::pair<std::string, std::string>> values;
  SQLite::Statement params(db, "SELECT run_id, key, value, type FROM params");
  while (params.executeStep())
    values[{params.getColumn(0).getString(), params.getColumn(1).getString()}] = {
        params.getColumn(2).getString(), params.getColumn(3).getString()};
  table.columns.insert(table.columns.begin() + 2, varying.begin(), varying.end());
  std::vector<bool> numeric_params;
  for (const auto& key : varying) {
    bool numeric = true;
    for (const auto& row : table.rows) {
      auto it = values.find({*row[0], key});
      if (it != values.end() && it->second.second != "integer" && it->second.second != "float") numeric = false;
    }
    numeric_params.push_back(numeric);
  }
  table.numeric.insert(table.numeric.begin() + 2, numeric_params.begin(), numeric_params.end());
  for (auto& row : table.rows) {
    std::vector<std::optional<std::string>> cells;
    for (const auto& key : varying) {
      auto it = values.find({*row[0], key});
      cells.push_back(it == values.end() ? std::nullopt
                                         : std::optional<std::string>(param_cell(it->second.first, it->second.second)));
    }
    row.insert(row.begin() + 2, cells.begin(), cells.end());
  }

  const bool descending = !sort.empty() && sort[0] == '-';
  const std::string column = descending ? sort.substr(1) : sort;
  auto found = std::find(table.columns.begin(), table.columns.end(), column);
  if (found == table.columns.end())
    throw ConfigError("cannot sort by \"" + column + "\"",
                      {"--sort", 0, 0, "", fmt::format("columns: {}", fmt::join(table.columns, ", "))});
  const size_t index = static_cast<size_t>(found - table.columns.begin());
  const bool numeric = table.numeric[index];
  std::stable_sort(table.rows.begin(), table.rows.end(), [&](const auto& a, const auto& b) {
    if (!a[index] || !b[index]) return a[index].has_value() && !b[index].has_value();  // NULLs last
    const bool less = numeric ? std::stod(*a[index]) < std::stod(*b[index]) : *a[index] < *b[index];
    const bool greater = numeric ? std::stod(*b[index]) < std::stod(*a[index]) : *b[index] < *a[index];
    return descending ? greater : less;
  });
  if (limit > 0 && static_cast<int64_t>(table.rows.size()) > limit) table.rows.resize(static_cast<size_t>(limit));
  return table;
}

std::string run_report(ResultsStore& store, int64_t run_id, TableFormat format) {
  std::optional<RunRecord> run = store.run(run_id);
  if (!run) throw ConfigError(fmt::format("no run {} in the database", run_id), {"--run", 0, 0, "", ""});
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
                          "SELECT epoch, mean, std, protocol, features, sampler, diffusion_steps, "
                          "real_count, generated_count FROM kid WHERE run_id = ? ORDER BY epoch",
                          run_id);
  Table artifacts = query_table(db, "SELECT epoch, kind, path FROM artifacts WHERE run_id = ? ORDER BY epoch, kind",
                                run_id);
  if (format == TableFormat::json)
    return fmt::format("{{\"run_id\": {}, \"status\": {}, \"error\": {}, \"config_toml\": {},\n"
                       "\"metrics\": {}, \"kid\": {}, \"artifacts\": {}}}\n",
                       run_id, json_string(run->status), json_string(run->error), json_string(run->config_toml),
                       format_table(history, format), format_table(kid, format), format_table(artifacts, format));
  const std::string heading = format == TableFormat::markdown ? "## " : "# ";
  return fmt::format("{}run {} ({}){}\n\n{}configuration\n{}\n{}metrics\n{}\n{}kid\n{}\n{}artifacts\n{}", heading,
                     run_id, run->status, run->error.empty() ? "" : ": " + run->error, heading,
                     run->config_toml, heading, format_table(history, format), heading,
                     format_table(kid, format), heading, format_table(artifacts, format));
}

}  // namespace difflab
