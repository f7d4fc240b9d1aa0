// The loop of FusedAdamW (fused_adamw.h): one pass of AdamW and the EMA update over flat float32
// arrays, no LibTorch, written to vectorise (compiled for AVX-512, AVX2 and baseline x86-64; the
// level difflab/cpu.h's kernel_isa() names runs, and every level gives the same bits).
#pragma once

#include <cstdint>

namespace difflab {

// The step's scalars, in float32 as LibTorch's kernels apply them to float32 tensors.
struct AdamWScalars {
  float decay_factor;     // 1 - lr * weight_decay
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  float eps;
  float step_size;    // -lr / (1 - beta1^t)
  float ema_weight;   // 1 - ema decay; the EMA is not touched where ema is null
};

// For each i, in the order of LibTorch's AdamW::step (Loshchilov & Hutter 2019, alg. 2, with
// the bias corrections of Kingma & Ba 2015, alg. 1):
//   p = p (1 - lr wd);  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// then ema = lerp(ema, p, w) as at::lerp computes it (exact at w = 1).
void adamw_ema_pass(float* p, const float* g, float* m, float* v, float* ema, int64_t n,
                    const AdamWScalars& s);

}  // namespace difflab
