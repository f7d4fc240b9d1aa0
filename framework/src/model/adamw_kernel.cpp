// adamw_kernel.inc, compiled for three instruction sets as src/sdk/simd_kernels.cpp compiles its
// loops, and with -ffp-contract=off (framework/CMakeLists.txt): every level rounds each operation
// alike, so the pass gives the same bits on every CPU (tests/optimizer_test.cpp).
#include "model/adamw_kernel.h"

#include <cmath>

#include "difflab/cpu.h"

namespace difflab {
namespace {

namespace baseline {
#include "adamw_kernel.inc"
}  // namespace baseline

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DIFFLAB_ADAMW_LEVELS 1
#pragma GCC push_options
#pragma GCC target("avx,avx2,bmi,bmi2,f16c,fma,lzcnt,movbe,xsave")
namespace avx2 {
#include "adamw_kernel.inc"
}  // namespace avx2
#pragma GCC target("avx,avx2,bmi,bmi2,f16c,fma,lzcnt,movbe,xsave,avx512f,avx512bw,avx512cd,avx512dq,avx512vl")
namespace avx512 {
#include "adamw_kernel.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif

}  // namespace

void adamw_ema_pass(float* p, const float* g, float* m, float* v, float* ema, int64_t n,
                    const AdamWScalars& s) {
#ifdef DIFFLAB_ADAMW_LEVELS
  switch (kernel_isa()) {
    case KernelIsa::avx512: return avx512::run(p, g, m, v, ema, n, s);
    case KernelIsa::avx2: return avx2::run(p, g, m, v, ema, n, s);
    case KernelIsa::baseline: break;
  }
#endif
  baseline::run(p, g, m, v, ema, n, s);
}

}  // namespace difflab
