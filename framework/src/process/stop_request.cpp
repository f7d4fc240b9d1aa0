#include "process/stop_request.h"

#include <atomic>
#include <string>

#include "difflab/error.h"

namespace difflab {
namespace {

std::atomic<int> received_signal{0};
int depth = 0;

extern "C" void on_stop_signal(int signal) {
  int none = 0;
  received_signal.compare_exchange_strong(none, signal);
}

}  // namespace

StopRequest::StopRequest(std::vector<int> signals) {
  if (depth++ == 0) received_signal = 0;
  for (int signal : signals) previous_.emplace_back(signal, std::signal(signal, on_stop_signal));
}

StopRequest::~StopRequest() {
  for (auto it = previous_.rbegin(); it != previous_.rend(); ++it) std::signal(it->first, it->second);
  --depth;
}

int StopRequest::signal() { return received_signal.load(); }

void StopRequest::throw_if_requested() {
  if (int signal = received_signal.load())
    throw Error(ErrorKind::interrupted, "interrupted by signal " + std::to_string(signal));
}

void reset_stop_signals() {
  for (int signal : {SIGINT, SIGTERM, kWarningSignal}) std::signal(signal, SIG_DFL);
}

}  // namespace difflab
