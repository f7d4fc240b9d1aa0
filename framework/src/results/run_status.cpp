#include "results/run_status.h"

#include <array>
#include <utility>

#include "difflab/error.h"

namespace difflab {
namespace {

constexpr std::array<std::pair<RunStatus, const char*>, 6> kNames{{
    {RunStatus::running, "running"},
    {RunStatus::finished, "finished"},
    {RunStatus::failed, "failed"},
    {RunStatus::diverged, "diverged"},
    {RunStatus::interrupted, "interrupted"},
    {RunStatus::pruned, "pruned"},
}};

}  // namespace

const char* to_string(RunStatus status) {
  for (const auto& [value, name] : kNames)
    if (value == status) return name;
  return "unknown";
}

std::optional<RunStatus> parse_run_status(std::string_view text) {
  for (const auto& [value, name] : kNames)
    if (text == name) return value;
  return std::nullopt;
}

RunStatus run_status_from_database(const std::string& text) {
  if (auto status = parse_run_status(text)) return *status;
  throw RuntimeError("a run row with the unknown status \"" + text + "\"",
                     ErrorContext::with_hint("was the database written by another program?"));
}

}  // namespace difflab
