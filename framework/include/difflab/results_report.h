// `difflab results`: the results database as tables — one row per run with the parameters that
// vary between runs, or one run in full — in table, CSV, JSON or Markdown form.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace difflab {

class ResultsStore;

enum class TableFormat { table, csv, json, markdown };
// "table" | "csv" | "json" | "markdown"; throws a config Error otherwise.
TableFormat parse_table_format(const std::string& name);

struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;  // nullopt = NULL
  std::vector<bool> numeric;                                   // per column
};

std::string format_table(const Table& table, TableFormat format);

// One row per run: run_id, status, every parameter whose value differs between runs, epochs,
// the latest losses, the best KID and its epoch. `sort` names a column ("-" in front: descending;
// NULLs last); limit 0 = all.
Table runs_table(ResultsStore& store, const std::string& sort = "run_id", int64_t limit = 0);

// One run: its resolved configuration, metric history (one row per epoch), KID and artifacts.
std::string run_report(ResultsStore& store, int64_t run_id, TableFormat format);

}  // namespace difflab
