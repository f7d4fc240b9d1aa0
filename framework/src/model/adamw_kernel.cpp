// adamw_kernel.inc, compiled for three instruction sets (difflab/cpu_levels.h) and with
// -ffp-contract=off (framework/CMakeLists.txt): every level rounds each operation alike, so the
// pass gives the same bits on every CPU (tests/optimizer_test.cpp).
#include "model/adamw_kernel.h"

#include <cmath>

#include "difflab/cpu.h"

namespace difflab {
namespace {

#define DIFFLAB_LEVEL_FILE "model/adamw_kernel.inc"
#include "difflab/cpu_levels.h"

}  // namespace

void adamw_ema_pass(float* p, const float* g, float* m, float* v, float* ema, int64_t n,
                    const AdamWScalars& s) {
  DIFFLAB_LEVEL_DISPATCH(run, p, g, m, v, ema, n, s);
}

}  // namespace difflab
