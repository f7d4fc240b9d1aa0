// The hot loops of the fused bf16 operations (precision.cpp) and of the inference path: plain C++
// over raw pointers, no LibTorch, written so that the compiler vectorises them. simd_kernels.inc
// holds them; difflab/cpu_levels.h compiles it three times here, for AVX-512 (x86-64-v4's features),
// AVX2 + FMA (x86-64-v3's) and baseline x86-64, and each call runs the copy of the level kernel_isa() chose
// (difflab/cpu.h), so one binary runs on any x86-64 CPU and a test or a user can force any level
// the CPU has. This file is built with -fno-math-errno -fno-trapping-math (as LibTorch is), without
// which GCC does not if-convert comparisons such as to_bf16's NaN test and those loops do not
// vectorise, and with -ffp-contract=off: no level fuses a multiply and an add, so all three round
// alike and give the same bits.
#include "simd_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "difflab/cpu.h"

namespace difflab::simd {

// The swish tables (below), read by the loops of every level.
const uint32_t* swish_value_table();
const float* swish_derivative_table();

namespace {

#define DIFFLAB_LEVEL_FILE "sdk/simd_kernels.inc"
#include "difflab/cpu_levels.h"

// The bf16 value nearest to v (ties to even): the float32 nearest to v, rounded again to bf16,
// can miss it by one unit when the first rounding lands on a bf16 midpoint.
bf16_bits nearest_bf16(double v) {
  if (v != v) return 0x7FC0u;
  const float f = static_cast<float>(v);
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const auto toward_zero = static_cast<bf16_bits>(bits >> 16);  // sign-magnitude: truncation
  if (std::isinf(f)) return toward_zero;
  const auto away = static_cast<bf16_bits>(toward_zero + 1);
  const double below = std::fabs(v - static_cast<double>(baseline::from_bf16(toward_zero)));
  const double above = std::fabs(v - static_cast<double>(baseline::from_bf16(away)));
  if (below != above) return below < above ? toward_zero : away;
  return (toward_zero & 1u) == 0 ? toward_zero : away;
}

// Magnitudes below FLT_MIN become zero: a subnormal float costs a microcode assist in every
// float32 operation that reads it later.
double flush_subnormal(double v) { return std::fabs(v) < 1.1754943508222875e-38 ? 0.0 * v : v; }

// Swish and its derivative for each of the 65536 bf16 inputs, computed in float64: a table lookup
// is cheaper than even a polynomial exp, and exact. swish(x) = x s, s = 1 / (1 + e^-x); swish'(x) =
// s (1 + x (1 - s)), with 1 - s = e^-x / (1 + e^-x), free of cancellation; the limits at -inf
// (0 and 0) and +inf (inf and 1) stand for the expressions' inf * 0.
struct SwishTables {
  // bf16 bits widened to 32: GCC vectorises a gather of 32-bit entries (vpgatherdd), not of 16-bit
  // ones, and the 256 KiB table stays in L2.
  std::vector<uint32_t> value;
  std::vector<float> derivative;

  SwishTables() : value(1u << 16), derivative(1u << 16) {
    for (uint32_t h = 0; h < (1u << 16); ++h) {
      const double x = baseline::from_bf16(static_cast<bf16_bits>(h));
      double swish = NAN, slope = NAN;
      if (std::isinf(x)) {
        swish = x > 0 ? x : -0.0;
        slope = x > 0 ? 1.0 : 0.0;
      } else if (!std::isnan(x)) {
        const double e = std::exp(-x);  // inf below x = -709: s = 0, 1 - s = 1
        const double s = std::isinf(e) ? 0.0 : 1.0 / (1.0 + e);
        const double one_minus_s = std::isinf(e) ? 1.0 : e / (1.0 + e);
        swish = x * s;
        slope = s * (1.0 + x * one_minus_s);
      }
      value[h] = nearest_bf16(flush_subnormal(swish));
      derivative[h] = static_cast<float>(flush_subnormal(slope));
    }
  }
};

const SwishTables& swish_tables() {
  static const SwishTables tables;
  return tables;
}

}  // namespace

const uint32_t* swish_value_table() { return swish_tables().value.data(); }
const float* swish_derivative_table() { return swish_tables().derivative.data(); }

// Each loop of simd_kernels.h runs the copy of the chosen level.
void shifted_sums(const float* x, int64_t x_stride, int64_t rows, int64_t channels, const float* shift,
                  float* sum, float* square_sum) {
  DIFFLAB_LEVEL_DISPATCH(shifted_sums, x, x_stride, rows, channels, shift, sum, square_sum);
}
void normalise_rows(const float* x, int64_t x_stride, int64_t rows, int64_t channels, const float* mean,
                    const float* inverse_std, bf16_bits* y, bf16_bits* x_bf16, int64_t y_stride) {
  DIFFLAB_LEVEL_DISPATCH(normalise_rows, x, x_stride, rows, channels, mean, inverse_std, y, x_bf16, y_stride);
}
void gradient_sums(const bf16_bits* g, const bf16_bits* y, int64_t rows, int64_t channels, float* g_sum,
                   float* g_y_sum) {
  DIFFLAB_LEVEL_DISPATCH(gradient_sums, g, y, rows, channels, g_sum, g_y_sum);
}
void normalise_backward_rows(const bf16_bits* g, const bf16_bits* y, int64_t stride, int64_t rows,
                             int64_t channels, const float* scale, const float* offset, const float* slope,
                             const float* residual_float, const bf16_bits* residual_bf16, float* dx,
                             int64_t dx_stride) {
  DIFFLAB_LEVEL_DISPATCH(normalise_backward_rows, g, y, stride, rows, channels, scale, offset, slope, residual_float,
                   residual_bf16, dx, dx_stride);
}
void silu_forward(const bf16_bits* x, bf16_bits* y, int64_t n) { DIFFLAB_LEVEL_DISPATCH(silu_forward, x, y, n); }
void silu_in_place(bf16_bits* x, int64_t n) { DIFFLAB_LEVEL_DISPATCH(silu_in_place, x, n); }
void silu_backward(const bf16_bits* g, const bf16_bits* x, bf16_bits* dx, int64_t n) {
  DIFFLAB_LEVEL_DISPATCH(silu_backward, g, x, dx, n);
}
void add_bf16_bf16(const bf16_bits* a, const bf16_bits* b, float* out, int64_t n) {
  DIFFLAB_LEVEL_DISPATCH(add_bf16_bf16, a, b, out, n);
}
void add_bf16_float(const bf16_bits* a, const float* b, float* out, int64_t n) {
  DIFFLAB_LEVEL_DISPATCH(add_bf16_float, a, b, out, n);
}
void upsample2x_forward_row(const float* image, int64_t height, int64_t width, int64_t channels, int64_t out_y,
                            float* out_row) {
  DIFFLAB_LEVEL_DISPATCH(upsample2x_forward_row, image, height, width, channels, out_y, out_row);
}
void upsample2x_backward_row(const float* grad, int64_t pixel_stride, int64_t height, int64_t width,
                             int64_t channels, int64_t in_y, float* scratch, float* grad_row) {
  DIFFLAB_LEVEL_DISPATCH(upsample2x_backward_row, grad, pixel_stride, height, width, channels, in_y, scratch, grad_row);
}
void float_to_bf16(const float* x, bf16_bits* out, int64_t n) { DIFFLAB_LEVEL_DISPATCH(float_to_bf16, x, out, n); }
void scale_shift_pixels(const bf16_bits* x, int64_t x_stride, int64_t pixels, int64_t channels,
                        const float* scale, const float* shift, bf16_bits* y, int64_t y_stride,
                        bf16_bits* copy, int64_t copy_stride) {
  DIFFLAB_LEVEL_DISPATCH(scale_shift_pixels, x, x_stride, pixels, channels, scale, shift, y, y_stride, copy, copy_stride);
}
void average_pool2x_row(const bf16_bits* image, int64_t in_stride, int64_t width, int64_t channels,
                        int64_t out_y, bf16_bits* out_row, int64_t out_stride) {
  DIFFLAB_LEVEL_DISPATCH(average_pool2x_row, image, in_stride, width, channels, out_y, out_row, out_stride);
}
void upsample2x_bf16_row(const bf16_bits* image, int64_t in_stride, int64_t height, int64_t width,
                         int64_t channels, int64_t out_y, bf16_bits* out_row, int64_t out_stride) {
  DIFFLAB_LEVEL_DISPATCH(upsample2x_bf16_row, image, in_stride, height, width, channels, out_y, out_row, out_stride);
}

}  // namespace difflab::simd
