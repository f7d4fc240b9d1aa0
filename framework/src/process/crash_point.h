// The crash-point test seam, after SQLite's crash tests: every step of a write protocol that
// must survive a kill (the end of an epoch, docs/architecture.md) calls crash_point() after the
// step, and a test stops the process there with SIGKILL, for every point in turn, then checks that
// running the same command again loses nothing. Not a debugging aid: nothing is printed unless
// the test asks for it.
#pragma once

namespace difflab {

// A named point, right after the step it names ("epoch.rows": the epoch's rows are committed).
// With DIFFLAB_TEST_CRASH_POINT=K (K >= 1) the process kills itself with SIGKILL at the K-th
// point it passes; DIFFLAB_TEST_CRASH_POINT=0 only lists them, one "crash point K: NAME" line
// each on stderr, so that a test learns how many there are. Unset: nothing (one getenv, once).
void crash_point(const char* name);

}  // namespace difflab
