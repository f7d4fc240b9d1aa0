// A run's status: the one type every layer uses for a run row's state, and the only place that
// turns it into the database's text and back.
//
// The state machine (README "Architecture"; docs/architecture.md draws it):
//
//   (claimed) ──► running ──► finished                      (every epoch trained)
//                    │  ├───► diverged                      (a loss became NaN or infinite)
//                    │  ├───► failed                        (any other error: retry_failed starts anew)
//                    │  ├───► pruned                        (an adaptive sweep stopped it at a rung)
//                    │  └───► interrupted ──► running       (a signal, a full disk, a lost rank:
//                    │                                       the same command resumes it)
//                    └── killed (row left running, heartbeat stale) ──► running   (claimed again)
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace difflab {

enum class RunStatus {
  running,
  finished,
  failed,
  diverged,
  interrupted,
  pruned,
};

// The database's text of a status ("running", "finished", ...).
const char* to_string(RunStatus status);
// The status a database text names; nullopt for any other text.
std::optional<RunStatus> parse_run_status(std::string_view text);
// A database text back to a status; a runtime Error naming the text when it is none (a row that
// another program wrote).
RunStatus run_status_from_database(const std::string& text);

// Whether a run in this status is taken back by the next claim (it continues from its
// checkpoint): a killed run (still "running") or an interrupted one.
inline bool resumable(RunStatus status) { return status == RunStatus::running || status == RunStatus::interrupted; }
// Whether the run ended in an error: failed or diverged (the ones retry_failed runs again).
inline bool ended_in_error(RunStatus status) { return status == RunStatus::failed || status == RunStatus::diverged; }

}  // namespace difflab
