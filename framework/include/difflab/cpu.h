// The CPU difflab runs on, and the instruction set its own vectorised loops run at.
//
// difflab's loops (the fused bf16 kernels of precision.h, the inference path's passes, the fused
// AdamW step) are compiled three times, as LibTorch's ATen kernels are: for AVX-512
// (x86-64-v4), for AVX2 with FMA (x86-64-v3) and for baseline x86-64. One is chosen when a
// process first calls them:
//   - DIFFLAB_CPU_CAPABILITY=avx512|avx2|default, if set;
//   - else ATEN_CPU_CAPABILITY, the variable that forces LibTorch's own dispatch, so that one
//     variable puts both on the same instruction set;
//   - else the best this CPU has.
// A level the CPU lacks is lowered to the best it has. Every level gives the same bits: the loops
// are compiled without floating-point contraction (-ffp-contract=off), so that an FMA never
// replaces a rounded multiply and add, and use only correctly rounded operations
// (tests/precision_test.cpp and optimizer_test.cpp check every level against the others).
#pragma once

#include <string>

#include "difflab/export.h"

namespace difflab {

enum class KernelIsa { baseline = 0, avx2 = 1, avx512 = 2 };

// ATen's names: "default", "avx2", "avx512".
DIFFLAB_API const char* kernel_isa_name(KernelIsa isa);
// The best level this CPU (and this build) supports.
DIFFLAB_API KernelIsa best_kernel_isa();
// The level the loops run at now (see above).
DIFFLAB_API KernelIsa kernel_isa();

// For tests and benchmarks: the loops run at `isa` (lowered to best_kernel_isa()) until the guard
// ends. Not thread-safe against loops running at the same time.
class DIFFLAB_API ScopedKernelIsa {
 public:
  explicit ScopedKernelIsa(KernelIsa isa);
  ~ScopedKernelIsa();
  ScopedKernelIsa(const ScopedKernelIsa&) = delete;
  ScopedKernelIsa& operator=(const ScopedKernelIsa&) = delete;

 private:
  KernelIsa previous_;
};

// What the CPU offers oneDNN (which runs LibTorch's convolutions) for bfloat16, best first: AMX
// tiles (Intel Sapphire Rapids and later), AVX512-BF16 dot products (AMD Zen 4 and later, Intel
// Cooper Lake), AVX-512 without them (bf16 is converted to float32 in registers: "emulated"), or
// nothing (below AVX-512: LibTorch 1.13 has no bf16 convolutions there). ONEDNN_MAX_CPU_ISA
// lowers it as it lowers oneDNN.
enum class Bf16Support { none = 0, emulated = 1, avx512_bf16 = 2, amx = 3 };
DIFFLAB_API Bf16Support cpu_bf16_support();
DIFFLAB_API const char* bf16_support_name(Bf16Support support);

// LibTorch's own choice for its CPU kernels, as at::show_config() reports it: "DEFAULT", "AVX2",
// "AVX512" (ATEN_CPU_CAPABILITY forces it; LibTorch 1.x says "NO AVX" for "DEFAULT"), or
// "unknown".
DIFFLAB_API std::string aten_cpu_capability();

// "AMD EPYC; bf16: avx512_bf16; difflab kernels: avx512; ATen: AVX2; oneDNN: avx512_core_bf16;
// 2 threads" for benchmarks and logs: the CPU's model name (/proc/cpuinfo), its bf16 support, the
// level of difflab's loops, and what LibTorch and oneDNN run.
DIFFLAB_API std::string cpu_description();

}  // namespace difflab
