// The `difflab` command line; main() only calls this.
#pragma once

namespace difflab {

// Runs a command line; returns the process exit code (0 ok, 1 runtime failure, 2 bad input).
int run_cli(int argc, char** argv);

}  // namespace difflab
