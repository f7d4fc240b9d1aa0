#include "model/adamw_kernel.h"

#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DIFFLAB_ADAMW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DIFFLAB_ADAMW_CLONES
#endif

namespace difflab {
namespace {

// Inlined into each clone below, so that every clone's copy is compiled for its instruction set.
template <bool kEma>
[[gnu::always_inline]] inline void pass(float* __restrict p, const float* __restrict g, float* __restrict m,
                                        float* __restrict v, float* __restrict ema, int64_t n,
                                        const AdamWScalars s) {
  const bool near_start = s.ema_weight < 0.5f;  // at::lerp's two forms, chosen by the weight
  for (int64_t i = 0; i < n; ++i) {
    const float gradient = g[i];
    float parameter = p[i] * s.decay_factor;
    const float first = m[i] * s.beta1 + s.one_minus_beta1 * gradient;
    const float second = v[i] * s.beta2 + s.one_minus_beta2 * gradient * gradient;
    const float denominator = std::sqrt(second) / s.bias_correction2_sqrt + s.eps;
    parameter = parameter + s.step_size * first / denominator;
    p[i] = parameter;
    m[i] = first;
    v[i] = second;
    if constexpr (kEma) {
      const float old = ema[i];
      ema[i] = near_start ? old + s.ema_weight * (parameter - old)
                          : parameter - (parameter - old) * (1.0f - s.ema_weight);
    }
  }
}

DIFFLAB_ADAMW_CLONES void pass_with_ema(float* p, const float* g, float* m, float* v, float* ema, int64_t n,
                                        const AdamWScalars s) {
  pass<true>(p, g, m, v, ema, n, s);
}

DIFFLAB_ADAMW_CLONES void pass_without_ema(float* p, const float* g, float* m, float* v, int64_t n,
                                           const AdamWScalars s) {
  pass<false>(p, g, m, v, nullptr, n, s);
}

}  // namespace

void adamw_ema_pass(float* p, const float* g, float* m, float* v, float* ema, int64_t n,
                    const AdamWScalars& s) {
  if (ema != nullptr)
    pass_with_ema(p, g, m, v, ema, n, s);
  else
    pass_without_ema(p, g, m, v, n, s);
}

}  // namespace difflab
