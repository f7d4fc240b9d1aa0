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

struct RunsQuery {
  std::string where;                  // a filter (see filter.h); empty = every run
  std::vector<std::string> group_by;  // columns; given: one row per group of finished runs
  std::string sort;                   // a column, "-" in front: descending (NULLs last)
  int64_t limit = 0;                  // 0 = all rows
  bool split_std = false;             // groups: mean and std in columns of their own (csv, json)
  // groups: a filter (filter.h) that picks the baseline group, e.g. 'loss.plugin = "mae"'; every
  // other group gets, per metric, its difference of means to it with a 95% bootstrap interval
  // over seeds (paired by seed where both have the same seeds) and Welch's t-test p-value
  // (results/statistics.h).
  std::string baseline;
};

// Without group_by: one row per run that passes `where`: run_id, status, every parameter whose
// value differs between those runs, epochs, the latest losses, the best KID and its epoch.
// With group_by: one row per distinct value of those columns over the finished runs: the count
// and mean ± sample standard deviation of the best KID and the final losses (the ablation
// table; the seeds are what varies within a group).
Table runs_table(ResultsStore& store, const RunsQuery& query = {});

// One run: its resolved configuration, metric history (one row per epoch), KID and artifacts.
std::string run_report(ResultsStore& store, int64_t run_id, TableFormat format);

}  // namespace difflab
