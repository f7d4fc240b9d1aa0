#include "results/merge.h"

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/SQLiteCpp.h>
#include <SQLiteCpp/Transaction.h>
#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <optional>
#include <sqlite3.h>
#include <unistd.h>

#include "difflab/error.h"
#include "results/results_store.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// One SQLite value, compared by type and content.
struct Value {
  int type = SQLITE_NULL;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;
  bool operator==(const Value& other) const {
    return type == other.type && integer == other.integer && real == other.real && text == other.text;
  }
  bool operator<(const Value& other) const {
    return std::tie(type, integer, real, text) < std::tie(other.type, other.integer, other.real, other.text);
  }
};
using Row = std::vector<Value>;

Value read_value(const SQLite::Column& column) {
  Value value;
  value.type = column.getType();
  if (value.type == SQLITE_INTEGER) value.integer = column.getInt64();
  else if (value.type == SQLITE_FLOAT) value.real = column.getDouble();
  else if (value.type != SQLITE_NULL) value.text = column.getString();
  return value;
}

void bind_value(SQLite::Statement& statement, int index, const Value& value) {
  if (value.type == SQLITE_INTEGER) statement.bind(index, value.integer);
  else if (value.type == SQLITE_FLOAT) statement.bind(index, value.real);
  else if (value.type == SQLITE_NULL) statement.bind(index);
  else statement.bind(index, value.text);
}

// The tables that hang off a run (run_id), in the order they are written.
const std::vector<std::string>& child_tables() {
  static const std::vector<std::string> tables = {"params",    "metrics",      "artifacts",   "kid",
                                                  "decisions", "step_metrics", "sweep_trials", "sample_metrics"};
  return tables;
}

std::vector<std::string> columns(SQLite::Database& db, const std::string& table, const std::string& without) {
  SQLite::Statement query(db, "SELECT name FROM pragma_table_info(?) ORDER BY cid");
  query.bind(1, table);
  std::vector<std::string> names;
  while (query.executeStep())
    if (query.getColumn(0).getString() != without) names.push_back(query.getColumn(0).getString());
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// Everything a database holds of one run, without its id: the run row (trained_by as the
// attempt of the run it names) and its child rows, sorted, so that two databases' copies of one
// attempt compare equal exactly when they hold the same.
struct RunContent {
  std::string attempt;
  Row run;
  std::optional<std::string> trained_by_attempt;
  std::map<std::string, std::vector<Row>> children;
  bool operator==(const RunContent& other) const {
    return run == other.run && trained_by_attempt == other.trained_by_attempt && children == other.children;
  }
};

// The schema's column lists (the run row's without id and trained_by, the children's without
// run_id), read from `db`.
struct Layout {
  std::vector<std::string> run_columns;
  std::map<std::string, std::vector<std::string>> child_columns;
  explicit Layout(SQLite::Database& db) {
    for (const auto& name : columns(db, "runs", "id"))
      if (name != "trained_by") run_columns.push_back(name);
    for (const auto& table : child_tables()) child_columns[table] = columns(db, table, "run_id");
  }
};

RunContent read_run_content(SQLite::Database& db, const Layout& layout, int64_t run_id) {
  RunContent content;
  SQLite::Statement run(db, "SELECT " + joined(layout.run_columns) +
                                ", (SELECT attempt FROM runs t WHERE t.id = r.trained_by) FROM runs r WHERE id = ?");
  run.bind(1, run_id);
  if (!run.executeStep()) throw std::logic_error("merge: run vanished");
  for (int i = 0; i < static_cast<int>(layout.run_columns.size()); ++i) {
    content.run.push_back(read_value(run.getColumn(i)));
    if (layout.run_columns[static_cast<size_t>(i)] == "attempt") content.attempt = run.getColumn(i).getString();
  }
  const SQLite::Column trained_by = run.getColumn(static_cast<int>(layout.run_columns.size()));
  if (!trained_by.isNull()) content.trained_by_attempt = trained_by.getString();
  for (const auto& [table, names] : layout.child_columns) {
    SQLite::Statement rows(db, "SELECT " + joined(names) + " FROM " + table + " WHERE run_id = ?");
    rows.bind(1, run_id);
    auto& list = content.children[table];
    while (rows.executeStep()) {
      Row row;
      for (int i = 0; i < static_cast<int>(names.size()); ++i) row.push_back(read_value(rows.getColumn(i)));
      list.push_back(std::move(row));
    }
    std::sort(list.begin(), list.end());
  }
  return content;
}

// The tables of a sweep rather than of a run, keyed by the sweep (and trial): a row is the same in
// every shard that has it, and kept once (INSERT OR IGNORE).
const std::vector<std::string>& sweep_tables() {
  static const std::vector<std::string> tables = {"sweeps", "proposals"};
  return tables;
}

// A shard's runs, and its sweep tables' rows, per table.
struct ShardContent {
  std::vector<RunContent> runs;
  std::map<std::string, std::vector<Row>> sweep_rows;
};

ShardContent read_shard(const fs::path& shard, const Layout& layout,
                        const std::map<std::string, std::vector<std::string>>& sweep_columns) {
  ResultsStore store(shard, OpenMode::read_only);
  ShardContent content;
  SQLite::Statement ids(store.database(), "SELECT id FROM runs ORDER BY id");
  while (ids.executeStep())
    content.runs.push_back(read_run_content(store.database(), layout, ids.getColumn(0).getInt64()));
  for (const auto& [table, names] : sweep_columns) {
    SQLite::Statement rows(store.database(), "SELECT " + joined(names) + " FROM " + table);
    while (rows.executeStep()) {
      Row row;
      for (int i = 0; i < static_cast<int>(names.size()); ++i) row.push_back(read_value(rows.getColumn(i)));
      content.sweep_rows[table].push_back(std::move(row));
    }
  }
  return content;
}

void write_children(SQLite::Database& db, const Layout& layout, int64_t run_id, const RunContent& content) {
  for (const auto& table : child_tables()) {
    const std::vector<std::string>& names = layout.child_columns.at(table);
    std::string marks = "?";
    for (size_t i = 0; i < names.size(); ++i) marks += ", ?";
    SQLite::Statement insert(db, "INSERT INTO " + table + " (run_id, " + joined(names) + ") VALUES (" + marks + ")");
    for (const Row& row : content.children.at(table)) {
      insert.bind(1, run_id);
      for (size_t i = 0; i < row.size(); ++i) bind_value(insert, static_cast<int>(i) + 2, row[i]);
      insert.exec();
      insert.reset();
    }
  }
}

enum class Merged { added, updated, unchanged };

Merged merge_run(SQLite::Database& db, const Layout& layout, const RunContent& content) {
  SQLite::Statement find(db, "SELECT id FROM runs WHERE attempt = ?");
  find.bind(1, content.attempt);
  std::optional<int64_t> existing;
  if (find.executeStep()) existing = find.getColumn(0).getInt64();
  Merged result = Merged::added;
  int64_t run_id = 0;
  if (existing) {
    if (read_run_content(db, layout, *existing) == content) return Merged::unchanged;
    run_id = *existing;
    std::string assignments;
    for (const auto& name : layout.run_columns) assignments += (assignments.empty() ? "" : ", ") + name + " = ?";
    SQLite::Statement update(db, "UPDATE runs SET " + assignments + " WHERE id = ?");
    for (size_t i = 0; i < content.run.size(); ++i) bind_value(update, static_cast<int>(i) + 1, content.run[i]);
    update.bind(static_cast<int>(content.run.size()) + 1, run_id);
    update.exec();
    for (const auto& table : child_tables()) {
      SQLite::Statement remove(db, "DELETE FROM " + table + " WHERE run_id = ?");
      remove.bind(1, run_id);
      remove.exec();
    }
    result = Merged::updated;
  } else {
    std::string marks;
    for (size_t i = 0; i < layout.run_columns.size(); ++i) marks += i == 0 ? "?" : ", ?";
    SQLite::Statement insert(db, "INSERT INTO runs (" + joined(layout.run_columns) + ") VALUES (" + marks + ")");
    for (size_t i = 0; i < content.run.size(); ++i) bind_value(insert, static_cast<int>(i) + 1, content.run[i]);
    insert.exec();
    run_id = db.getLastInsertRowid();
  }
  write_children(db, layout, run_id, content);
  return result;
}

}  // namespace

std::string shard_problem(const fs::path& shard) {
  std::error_code error;
  if (!fs::exists(shard, error)) return "not found";
  try {
    ResultsStore store(shard, OpenMode::read_only);
    SQLite::Statement check(store.database(), "PRAGMA integrity_check");
    std::string problems;
    while (check.executeStep()) {
      const std::string line = check.getColumn(0).getString();
      if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
    if (!problems.empty()) return "corrupt (integrity_check: " + problems + ")";
    if (!store.database().tableExists("runs")) return "holds no runs table";
  } catch (const Error& failure) {
    return failure.message();
  } catch (const std::exception& failure) {
    return std::string("unreadable: ") + failure.what();
  }
  return "";
}

MergeReport merge_shards(ResultsStore& main, const std::vector<fs::path>& shards) {
  MergeReport report;
  SQLite::Database& db = main.database();
  const Layout layout(db);
  std::map<std::string, std::vector<std::string>> sweep_columns;
  for (const std::string& table : sweep_tables()) sweep_columns[table] = columns(db, table, "");
  std::vector<std::pair<fs::path, ShardContent>> good;
  for (const auto& shard : shards) {
    std::string problem = shard_problem(shard);
    if (problem.empty()) {
      try {
        good.emplace_back(shard, read_shard(shard, layout, sweep_columns));
        continue;
      } catch (const std::exception& failure) {
        problem = std::string("unreadable: ") + failure.what();
      }
    }
    report.skipped.push_back({shard, problem});
  }
  SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
  for (const auto& [shard, shard_content] : good) {
    const std::vector<RunContent>& runs = shard_content.runs;
    for (const auto& [table, rows] : shard_content.sweep_rows) {
      const std::vector<std::string>& names = sweep_columns.at(table);
      std::string marks;
      for (size_t i = 0; i < names.size(); ++i) marks += i == 0 ? "?" : ", ?";
      SQLite::Statement add(db, "INSERT OR IGNORE INTO " + table + " (" + joined(names) + ") VALUES (" + marks + ")");
      for (const Row& row : rows) {
        for (size_t i = 0; i < row.size(); ++i) bind_value(add, static_cast<int>(i) + 1, row[i]);
        add.exec();
        add.reset();
      }
    }
    for (const RunContent& content : runs) {
      switch (merge_run(db, layout, content)) {
        case Merged::added: ++report.runs_added; break;
        case Merged::updated: ++report.runs_updated; break;
        case Merged::unchanged: ++report.runs_unchanged; break;
      }
    }
    // A run that evaluates another run's network names it by id: the merged ids.
    SQLite::Statement link(db, "UPDATE runs SET trained_by = (SELECT id FROM runs t WHERE t.attempt = ?) "
                               "WHERE attempt = ?");
    for (const RunContent& content : runs) {
      if (!content.trained_by_attempt) continue;
      link.bind(1, *content.trained_by_attempt);
      link.bind(2, content.attempt);
      link.exec();
      link.reset();
    }
    ++report.shards_merged;
  }
  transaction.commit();
  return report;
}

void snapshot_database(const fs::path& from, const fs::path& to) {
  const fs::path temporary = to.parent_path() / fmt::format(".{}.{}.part", to.filename().string(), getpid());
  try {
    fs::create_directories(to.parent_path());
    fs::remove(temporary);
    {
      SQLite::Database source(from.string(), SQLite::OPEN_READONLY);
      source.setBusyTimeout(30000);
      SQLite::Database copy(temporary.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      SQLite::Backup backup(copy, source);
      backup.executeStep();  // every page, in one step: a consistent snapshot
      copy.exec("PRAGMA journal_mode = DELETE");
    }
    fs::rename(temporary, to);
  } catch (const std::exception& failure) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw RuntimeError(fmt::format("cannot copy the shard database {}: {}", from.string(), failure.what()),
                       ErrorContext::in_file(to.string()));
  }
}

}  // namespace difflab
