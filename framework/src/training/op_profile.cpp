#include "training/op_profile.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <map>

#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define DIFFLAB_HAS_LEGACY_PROFILER 1
#endif

namespace difflab {

#ifdef DIFFLAB_HAS_LEGACY_PROFILER
namespace profiler = torch::autograd::profiler;
namespace {

// The events of every thread while `body` ran under the legacy profiler (CPU), with memory
// events when `memory`.
profiler::thread_event_lists profiled(const std::function<void()>& body, bool memory) {
  profiler::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(
      torch::profiler::impl::ProfilerState::CPU, /*report_input_shapes=*/false, /*profile_memory=*/memory));
  try {
    body();
  } catch (...) {
    profiler::disableProfilerLegacy();
    throw;
  }
  return profiler::disableProfilerLegacy();
}

}  // namespace
#endif

std::vector<OperatorTime> profile_operators(const std::function<void()>& body) {
#ifdef DIFFLAB_HAS_LEGACY_PROFILER
  const profiler::thread_event_lists threads = profiled(body, /*memory=*/false);

  // Ranges nest per thread: self time = a range's time minus its children's.
  std::map<std::string, OperatorTime> by_name;
  for (const auto& events : threads) {
    struct Open {
      const profiler::LegacyEvent* push;
      double children_us;
    };
    std::vector<Open> stack;
    for (const auto& event : events) {
      if (event.kindStr() == "push") {
        stack.push_back({&event, 0.0});
      } else if (event.kindStr() == "pop" && !stack.empty()) {
        const Open open = stack.back();
        stack.pop_back();
        const double total_us = open.push->cpuElapsedUs(event);
        OperatorTime& time = by_name[open.push->name()];
        time.self_ms += (total_us - open.children_us) / 1000.0;
        time.total_ms += total_us / 1000.0;
        ++time.calls;
        if (!stack.empty()) stack.back().children_us += total_us;
      }
    }
  }
  std::vector<OperatorTime> table;
  for (auto& [name, time] : by_name) {
    time.name = name;
    table.push_back(time);
  }
  std::sort(table.begin(), table.end(),
            [](const OperatorTime& a, const OperatorTime& b) { return a.self_ms > b.self_ms; });
  return table;
#else
  body();
  return {};
#endif
}

namespace {

// The bytes LibTorch's allocators hand out and take back on this thread while it is installed
// (c10's memory-reporting hook, which the profiler itself uses), and their peak: no event lists,
// so `difflab check` stays small.
struct PeakCounter final : c10::MemoryReportingInfoBase {
  void reportMemoryUsage(void*, int64_t bytes, int64_t, int64_t, c10::Device) override {
    held += bytes;
    peak = std::max(peak, held);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t held = 0, peak = 0;
};

}  // namespace

int64_t peak_allocated_bytes(const std::function<void()>& body) {
  auto counter = std::make_shared<PeakCounter>();
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, counter);
    body();
  }
  return counter->peak;
}

}  // namespace difflab
