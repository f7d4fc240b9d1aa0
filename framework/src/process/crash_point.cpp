#include "process/crash_point.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace difflab {

void crash_point(const char* name) {
  static const long target = [] {
    const char* value = std::getenv("DIFFLAB_TEST_CRASH_POINT");
    return value == nullptr || *value == '\0' ? -1L : std::strtol(value, nullptr, 10);
  }();
  static long passed = 0;  // the seam's own counter: a test seam, not program state
  if (target < 0) return;
  ++passed;
  std::fprintf(stderr, "crash point %ld: %s\n", passed, name);
  std::fflush(stderr);
  if (passed == target) {
    std::fflush(stdout);
    ::kill(::getpid(), SIGKILL);  // no handler, no destructor, no flush: a node that died
  }
}

}  // namespace difflab
