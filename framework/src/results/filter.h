// `difflab results --where`: a small expression language over a run's columns, evaluated in
// C++ on rows already read from the database, so that the user's text never becomes SQL.
//
//   expression := term ("or" term)*          term := factor ("and" factor)*
//   factor     := "not" factor | "(" expression ")" | comparison
//   comparison := COLUMN op value | COLUMN "in" "(" value ("," value)* ")"
//               | COLUMN "is" ["not"] "null"
//   op         := = | == | != | <> | < | <= | > | >=
//   value      := number | "text" | 'text' | true | false
//
// COLUMN is a result column (run_id, status, n_loss, best_kid or its alias kid, ...) or a
// parameter's dotted key (loss.plugin, schedule.min_signal_rate, ...). Keywords are
// case-insensitive. A comparison with a missing value (NULL) is false.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

namespace difflab {

// One cell of a row: its text (nullopt = NULL) and, for numeric columns, its number.
struct Cell {
  std::optional<std::string> text;
  std::optional<double> number;
};
using Row = std::map<std::string, Cell>;

class Filter {
 public:
  // Parses `text` against the known columns (name -> holds numbers). Throws a config Error
  // naming the column (1-based) of the problem in --where, and the nearest column name for an
  // unknown one.
  static Filter parse(const std::string& text, const std::map<std::string, bool>& columns);
  bool matches(const Row& row) const;

  struct Node;

 private:
  std::shared_ptr<const Node> root_;
};

}  // namespace difflab
