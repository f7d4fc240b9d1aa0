// Typed parameters and their schema: what a plugin (or a framework section) accepts,
// with defaults, ranges and docs. Validation against a schema lives in experiment.cpp.
#pragma once

#include "difflab/export.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace difflab {

enum class ParamType { boolean, integer, real, string, integer_list, real_list, string_list };
DIFFLAB_API const char* to_string(ParamType type);

using ParamValue = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>,
                                std::vector<double>, std::vector<std::string>>;

// TOML-style text of a value: 0.02, "mae", [32, 64], true.
DIFFLAB_API std::string format_value(const ParamValue& value);

struct DIFFLAB_API ParamSpec {
  std::string name;
  ParamType type = ParamType::real;
  ParamValue default_value;
  std::string doc;
  // Numeric bounds (for lists: of every element). Exclusive bounds say "> min" / "< max".
  std::optional<double> min, max;
  bool min_exclusive = false, max_exclusive = false;
  std::vector<std::string> choices;  // allowed strings, if non-empty
  bool path = false;                 // a filesystem path (checked by its plugin)
  std::optional<int64_t> min_length;  // for lists

  // Builders, so that a schema reads as a list of one-liners in a plugin file:
  //   ParamSpec::real("min_signal_rate", 0.02, "signal rate at t = 1").greater_than(0).at_most(1)
  static ParamSpec boolean(std::string name, bool default_value, std::string doc);
  static ParamSpec integer(std::string name, int64_t default_value, std::string doc);
  static ParamSpec real(std::string name, double default_value, std::string doc);
  static ParamSpec string(std::string name, std::string default_value, std::string doc);
  static ParamSpec integers(std::string name, std::vector<int64_t> default_value, std::string doc);
  static ParamSpec reals(std::string name, std::vector<double> default_value, std::string doc);
  static ParamSpec strings(std::string name, std::vector<std::string> default_value,
                           std::string doc);

  ParamSpec& at_least(double bound);
  ParamSpec& greater_than(double bound);
  ParamSpec& at_most(double bound);
  ParamSpec& less_than(double bound);
  ParamSpec& one_of(std::vector<std::string> allowed);
  ParamSpec& non_empty();
  ParamSpec& is_path();

  // "in (0, 1]", "one of cpu | cuda | auto", or "" when unconstrained.
  std::string constraint_text() const;
  // Empty when `value` satisfies the bounds and choices, else what is wrong.
  std::string check(const ParamValue& value) const;
};

using ParamSchema = std::vector<ParamSpec>;

// Resolved values of one section, in schema order, with typed accessors.
class DIFFLAB_API Params {
 public:
  Params() = default;
  void set(const std::string& name, ParamValue value);
  bool has(const std::string& name) const;
  const ParamValue& get(const std::string& name) const;

  bool boolean(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  const std::string& string(const std::string& name) const;
  const std::vector<int64_t>& integers(const std::string& name) const;
  const std::vector<double>& reals(const std::string& name) const;
  const std::vector<std::string>& strings(const std::string& name) const;

  const std::vector<std::pair<std::string, ParamValue>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, ParamValue>> items_;
};

}  // namespace difflab
