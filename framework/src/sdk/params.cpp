#include "difflab/params.h"

#include "difflab/error.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <stdexcept>

namespace difflab {
namespace {

std::string format_real(double value) {
  std::string text = fmt::format("{}", value);
  // TOML needs a '.' or an exponent to read a float back as a float.
  if (std::isfinite(value) && text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

std::string quote(const std::string& text) {
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

template <class T, class F>
std::string format_list(const std::vector<T>& values, F format_one) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + format_one(values[i]);
  return text + "]";
}

std::string format_bound(double value) { return fmt::format("{}", value); }

}  // namespace

const char* to_string(ParamType type) {
  switch (type) {
    case ParamType::boolean: return "boolean";
    case ParamType::integer: return "integer";
    case ParamType::real: return "float";
    case ParamType::string: return "string";
    case ParamType::integer_list: return "array of integers";
    case ParamType::real_list: return "array of floats";
    case ParamType::string_list: return "array of strings";
  }
  return "?";
}

std::string format_value(const ParamValue& value) {
  struct Formatter {
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return format_real(v); }
    std::string operator()(const std::string& v) const { return quote(v); }
    std::string operator()(const std::vector<int64_t>& v) const {
      return format_list(v, [](int64_t x) { return std::to_string(x); });
    }
    std::string operator()(const std::vector<double>& v) const {
      return format_list(v, format_real);
    }
    std::string operator()(const std::vector<std::string>& v) const {
      return format_list(v, quote);
    }
  };
  return std::visit(Formatter{}, value);
}

#define DIFFLAB_SPEC_BUILDER(FUNCTION, TYPE, PARAM_TYPE)                                 \
  ParamSpec ParamSpec::FUNCTION(std::string name, TYPE default_value, std::string doc) { \
    ParamSpec spec;                                                                      \
    spec.name = std::move(name);                                                         \
    spec.type = PARAM_TYPE;                                                              \
    spec.default_value = std::move(default_value);                                       \
    spec.doc = std::move(doc);                                                           \
    return spec;                                                                         \
  }
DIFFLAB_SPEC_BUILDER(boolean, bool, ParamType::boolean)
DIFFLAB_SPEC_BUILDER(integer, int64_t, ParamType::integer)
DIFFLAB_SPEC_BUILDER(real, double, ParamType::real)
DIFFLAB_SPEC_BUILDER(string, std::string, ParamType::string)
DIFFLAB_SPEC_BUILDER(integers, std::vector<int64_t>, ParamType::integer_list)
DIFFLAB_SPEC_BUILDER(reals, std::vector<double>, ParamType::real_list)
DIFFLAB_SPEC_BUILDER(strings, std::vector<std::string>, ParamType::string_list)
#undef DIFFLAB_SPEC_BUILDER

ParamSpec& ParamSpec::at_least(double bound) { min = bound; min_exclusive = false; return *this; }
ParamSpec& ParamSpec::greater_than(double bound) { min = bound; min_exclusive = true; return *this; }
ParamSpec& ParamSpec::at_most(double bound) { max = bound; max_exclusive = false; return *this; }
ParamSpec& ParamSpec::less_than(double bound) { max = bound; max_exclusive = true; return *this; }
ParamSpec& ParamSpec::one_of(std::vector<std::string> allowed) {
  choices = std::move(allowed);
  return *this;
}
ParamSpec& ParamSpec::non_empty() { min_length = 1; return *this; }
ParamSpec& ParamSpec::is_path() { path = true; return *this; }

std::string ParamSpec::constraint_text() const {
  if (!choices.empty()) {
    std::string text = "one of ";
    for (size_t i = 0; i < choices.size(); ++i) text += (i ? " | " : "") + choices[i];
    return text;
  }
  if (!min && !max) return min_length ? "non-empty" : "";
  if (min && !max) return std::string(min_exclusive ? "> " : ">= ") + format_bound(*min);
  if (!min && max) return std::string(max_exclusive ? "< " : "<= ") + format_bound(*max);
  return fmt::format("in {}{}, {}{}", min_exclusive ? "(" : "[", format_bound(*min),
                     format_bound(*max), max_exclusive ? ")" : "]");
}

std::string ParamSpec::check(const ParamValue& value) const {
  auto out_of_range = [&](double x) {
    return (min && (min_exclusive ? x <= *min : x < *min)) ||
           (max && (max_exclusive ? x >= *max : x > *max)) || std::isnan(x);
  };
  auto range_message = [&](const std::string& shown) {
    return fmt::format("value {} is out of range: expected {}", shown, constraint_text());
  };
  // No parameter takes an infinity or NaN (a learning rate of inf trains nothing, silently).
  auto non_finite = [](double x) { return fmt::format("value {} is not a finite number", x); };
  if (const auto* v = std::get_if<int64_t>(&value)) {
    if (out_of_range(static_cast<double>(*v))) return range_message(std::to_string(*v));
  } else if (const auto* v = std::get_if<double>(&value)) {
    if (!std::isfinite(*v)) return non_finite(*v);
    if (out_of_range(*v)) return range_message(format_real(*v));
  } else if (const auto* v = std::get_if<std::string>(&value)) {
    if (!choices.empty() && std::find(choices.begin(), choices.end(), *v) == choices.end())
      return fmt::format("value \"{}\" is not allowed: expected {}", *v, constraint_text());
  } else if (const auto* v = std::get_if<std::vector<int64_t>>(&value)) {
    if (min_length && static_cast<int64_t>(v->size()) < *min_length)
      return "expected a non-empty array";
    for (int64_t x : *v)
      if (out_of_range(static_cast<double>(x))) return range_message(std::to_string(x));
  } else if (const auto* v = std::get_if<std::vector<double>>(&value)) {
    if (min_length && static_cast<int64_t>(v->size()) < *min_length)
      return "expected a non-empty array";
    for (double x : *v) {
      if (!std::isfinite(x)) return non_finite(x);
      if (out_of_range(x)) return range_message(format_real(x));
    }
  } else if (const auto* v = std::get_if<std::vector<std::string>>(&value)) {
    if (min_length && static_cast<int64_t>(v->size()) < *min_length)
      return "expected a non-empty array";
    for (const std::string& x : *v)
      if (!choices.empty() && std::find(choices.begin(), choices.end(), x) == choices.end())
        return fmt::format("value \"{}\" is not allowed: expected {}", x, constraint_text());
  }
  return "";
}

void Params::set(const std::string& name, ParamValue value) {
  for (auto& item : items_) {
    if (item.first == name) {
      item.second = std::move(value);
      return;
    }
  }
  items_.emplace_back(name, std::move(value));
}

bool Params::has(const std::string& name) const {
  for (const auto& item : items_)
    if (item.first == name) return true;
  return false;
}

const ParamValue& Params::get(const std::string& name) const {
  for (const auto& item : items_)
    if (item.first == name) return item.second;
  std::vector<std::string> names;
  for (const auto& item : items_) names.push_back(item.first);
  const std::string nearest = nearest_name(name, names);
  throw RuntimeError(fmt::format("no parameter \"{}\"", name),
                     ErrorContext::for_key({}, name, nearest.empty() ? fmt::format("parameters: {}", fmt::join(names, ", "))
                                                                     : "did you mean \"" + nearest + "\"?"));
}

namespace {
template <class T>
const T& typed(const Params& params, const std::string& name) {
  const T* value = std::get_if<T>(&params.get(name));
  if (value == nullptr)
    throw RuntimeError("parameter is not of the type asked for (" + format_value(params.get(name)) + ")",
                       ErrorContext::for_key({}, name));
  return *value;
}
}  // namespace

bool Params::boolean(const std::string& name) const { return typed<bool>(*this, name); }
int64_t Params::integer(const std::string& name) const { return typed<int64_t>(*this, name); }
double Params::real(const std::string& name) const { return typed<double>(*this, name); }
const std::string& Params::string(const std::string& name) const {
  return typed<std::string>(*this, name);
}
const std::vector<int64_t>& Params::integers(const std::string& name) const {
  return typed<std::vector<int64_t>>(*this, name);
}
const std::vector<double>& Params::reals(const std::string& name) const {
  return typed<std::vector<double>>(*this, name);
}
const std::vector<std::string>& Params::strings(const std::string& name) const {
  return typed<std::vector<std::string>>(*this, name);
}

}  // namespace difflab
