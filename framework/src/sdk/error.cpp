#include "difflab/error.h"

#include <algorithm>
#include <new>
#include <c10/util/Exception.h>

namespace difflab {
namespace {

std::string format_error(const std::string& message, const ErrorContext& context) {
  std::string text;
  if (!context.file.empty()) {
    text += context.file;
    if (context.line > 0) {
      text += ":" + std::to_string(context.line);
      if (context.column > 0) text += ":" + std::to_string(context.column);
    }
    text += ": ";
  }
  if (!context.key.empty()) text += context.key + ": ";
  text += message;
  if (!context.hint.empty()) text += "\n  hint: " + context.hint;
  return text;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

Error::Error(ErrorKind kind, std::string message, ErrorContext context)
    : std::runtime_error(format_error(message, context)),
      kind_(kind),
      message_(std::move(message)),
      context_(std::move(context)) {}
Error::~Error() = default;

std::string describe(const std::exception& error) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&error)) return torch_error->what_without_backtrace();
  if (dynamic_cast<const std::bad_alloc*>(&error) != nullptr)
    return "out of memory (std::bad_alloc): lower training.batch_size, or the network's size";
  return error.what();
}

Error ConfigError(std::string message, ErrorContext context) {
  return Error(ErrorKind::config, std::move(message), std::move(context));
}

Error RuntimeError(std::string message, ErrorContext context) {
  return Error(ErrorKind::runtime, std::move(message), std::move(context));
}

std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 3) + 1;
  for (const auto& candidate : candidates) {
    size_t distance = edit_distance(name, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

}  // namespace difflab
