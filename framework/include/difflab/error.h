// The one error type of difflab: a message plus the context a user needs to fix it
// (file, line, column, key, plugin, path) and the exit code the command line maps it to.
#pragma once

#include "difflab/export.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace difflab {

enum class ErrorKind {
  config,       // bad experiment file or command line: exit code 2, nothing written
  runtime,      // a failure while running: exit code 1
  interrupted,  // SIGINT or SIGTERM: exit code 130; the run resumes when started again
};

struct ErrorContext {
  std::string file;     // experiment file or data path
  int64_t line = 0;     // 1-based; 0 when unknown
  int64_t column = 0;   // 1-based; 0 when unknown
  std::string key;      // dotted key, e.g. "schedule.min_signal_rate"
  std::string hint;     // how to fix it

  // Named constructors for the common cases, so that a context never reads {x, 0, 0, "", ""}.
  static ErrorContext in_file(std::string file, std::string hint = {}) {
    return {std::move(file), 0, 0, {}, std::move(hint)};
  }
  static ErrorContext for_key(std::string file, std::string key, std::string hint = {}) {
    return {std::move(file), 0, 0, std::move(key), std::move(hint)};
  }
  static ErrorContext with_hint(std::string hint) { return {{}, 0, 0, {}, std::move(hint)}; }
  // A place in a file: line and column (1-based; 0 when unknown), the key found there, a hint.
  static ErrorContext at(std::string file, int64_t line, int64_t column, std::string key = {}, std::string hint = {}) {
    return {std::move(file), line, column, std::move(key), std::move(hint)};
  }
};

class DIFFLAB_API Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message, ErrorContext context = {});
  ~Error() override;  // the key function: one typeinfo, in the SDK, for every library

  ErrorKind kind() const { return kind_; }
  const ErrorContext& context() const { return context_; }
  const std::string& message() const { return message_; }
  int exit_code() const {
    return kind_ == ErrorKind::config ? 2 : kind_ == ErrorKind::interrupted ? 130 : 1;
  }

 private:
  ErrorKind kind_;
  std::string message_;
  ErrorContext context_;
};

// Shorthands: ConfigError(...) for anything the user can fix in the experiment or command line.
DIFFLAB_API Error ConfigError(std::string message, ErrorContext context = {});
DIFFLAB_API Error RuntimeError(std::string message, ErrorContext context = {});

// The message of any exception for a user or a database row: LibTorch's c10::Error without its
// C++ backtrace, anything else as what() says.
DIFFLAB_API std::string describe(const std::exception& error);

// Levenshtein-nearest candidate for "did you mean" hints; empty if nothing is close.
DIFFLAB_API std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace difflab
