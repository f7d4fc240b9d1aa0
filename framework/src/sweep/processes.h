// Child processes of this executable with their output forwarded line by line under a label:
// a sweep's workers ("[worker K]") and a data-parallel run's ranks ("[rank K]").
#pragma once

#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace difflab {

struct Child {
  std::string label;    // printed before each of its lines: "[label] ..."
  pid_t pid = -1;
  int output = -1;      // read end of its stdout + stderr
  std::string partial;  // an unfinished line
};

// Starts this executable (/proc/self/exe) with `arguments` (argv[1], ...), and `environment`
// added to this process's, its stdout and stderr into a pipe, SIGINT and SIGTERM at default.
void start_child(Child& child, const std::vector<std::string>& arguments,
                 const std::vector<std::pair<std::string, std::string>>& environment = {});

// Copies the child's complete lines to stdout, prefixed with its label: what is there now, or
// (`final`) everything until it closes its output.
void forward_output(Child& child, bool final);

// A free TCP port on this machine (bound to port 0, then released).
int free_port();

// `difflab ... --nproc N`: starts N ranks of `arguments` on this machine, with RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT (so that two jobs never share one),
// forwards their output as "[rank K]", and waits. When a rank fails, the others are given
// `grace_seconds` to fail on their own (their collectives notice it) and are then stopped.
// SIGINT and SIGTERM are passed on. Returns rank 0's exit code, or the first failure's.
int launch_ranks(int64_t nproc, const std::vector<std::string>& arguments, double grace_seconds);

}  // namespace difflab
