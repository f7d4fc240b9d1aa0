// Compiles the file DIFFLAB_LEVEL_FILE names once per instruction set of difflab/cpu.h, each copy
// in a namespace named after its level: baseline, avx2, avx512; DIFFLAB_LEVEL_DISPATCH(name, ...)
// then returns the call of `name` in the copy of the level kernel_isa() chose. difflab's own loops
// use it (src/sdk/simd_kernels.cpp, src/model/adamw_kernel.cpp), and a plugin's can:
//
//   #include "difflab/cpu.h"                // first: this file declares nothing of its own
//   namespace {
//   #define DIFFLAB_LEVEL_FILE "my_loops.inc"  // found on the include path, or beside this file
//   #include "difflab/cpu_levels.h"
//   }  // namespace
//   void my_loop(float* x, int64_t n) { DIFFLAB_LEVEL_DISPATCH(my_loop, x, n); }
//
// No include guard: each loop file includes it once, with its own DIFFLAB_LEVEL_FILE. The levels
// use the features of x86-64-v3 and x86-64-v4, not "arch=": GCC does not inline a function of
// another arch into these, and loops call helpers such as std::min. Compile the including source
// with -ffp-contract=off so that the levels round alike (GCC contracts a * b + c into an FMA by
// default in C++, and only the AVX2 and AVX-512 copies have one); elsewhere than GCC on x86-64,
// only the baseline copy is built.
namespace baseline {
#include DIFFLAB_LEVEL_FILE
}  // namespace baseline

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx,avx2,bmi,bmi2,f16c,fma,lzcnt,movbe,xsave")
namespace avx2 {
#include DIFFLAB_LEVEL_FILE
}  // namespace avx2
#pragma GCC target("avx,avx2,bmi,bmi2,f16c,fma,lzcnt,movbe,xsave,avx512f,avx512bw,avx512cd,avx512dq,avx512vl")
namespace avx512 {
#include DIFFLAB_LEVEL_FILE
}  // namespace avx512
#pragma GCC pop_options

// `return` the call of `name(...)` in the copy of the level kernel_isa() chose.
#ifndef DIFFLAB_LEVEL_DISPATCH
#define DIFFLAB_LEVEL_DISPATCH(name, ...)                      \
  switch (::difflab::kernel_isa()) {                          \
    case ::difflab::KernelIsa::avx512: return avx512::name(__VA_ARGS__); \
    case ::difflab::KernelIsa::avx2: return avx2::name(__VA_ARGS__);     \
    case ::difflab::KernelIsa::baseline: break;               \
  }                                                           \
  return baseline::name(__VA_ARGS__)
#endif
#else
#ifndef DIFFLAB_LEVEL_DISPATCH
#define DIFFLAB_LEVEL_DISPATCH(name, ...) return baseline::name(__VA_ARGS__)
#endif
#endif
