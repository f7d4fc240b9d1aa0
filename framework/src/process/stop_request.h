// The one owner of the signals that ask a difflab process to stop: SIGINT (Ctrl-C), SIGTERM (kill,
// scancel, a pod's deletion) and Slurm's warning before a time limit or a preemption (SIGUSR2).
// Whoever must react asks here: the trainer (checkpoint at the next step, close the run as
// interrupted), the sweep runner and the data-parallel launcher (pass the signal on to their
// child processes), a cluster task (requeue itself on the warning). Nothing else installs a
// handler for these signals.
#pragma once

#include <csignal>
#include <utility>
#include <vector>

namespace difflab {

// The warning signal: SIGUSR2, not SIGUSR1, which NCCL takes for itself.
constexpr int kWarningSignal = SIGUSR2;

// Holds the handlers while alive. Scopes nest (a cluster task's, then its run's): the outermost
// one forgets a signal of an earlier scope, and each restores the handlers it replaced.
class StopRequest {
 public:
  explicit StopRequest(std::vector<int> signals = {SIGINT, SIGTERM});
  ~StopRequest();
  StopRequest(const StopRequest&) = delete;
  StopRequest& operator=(const StopRequest&) = delete;

  // The first signal that came while a scope was held, or 0.
  static int signal();
  static bool requested() { return signal() != 0; }
  // Throws an interrupted Error ("interrupted by signal N") once a signal came.
  static void throw_if_requested();

 private:
  std::vector<std::pair<int, void (*)(int)>> previous_;
};

// In a child process between fork and exec: the stop signals back at their defaults.
void reset_stop_signals();

}  // namespace difflab
