// The hot loops of the fused bf16 operations (precision.cpp): plain C++ over raw pointers, no
// LibTorch, written so that the compiler vectorises them. Each is compiled three times (x86-64-v4 =
// AVX-512, v3 = AVX2 + FMA, baseline) and picked when the library loads, so one binary runs on any
// x86-64 CPU. This file is built with -fno-math-errno -fno-trapping-math (as LibTorch is), without
// which GCC does not if-convert comparisons such as to_bf16's NaN test, and those loops do not
// vectorise.
#include "simd_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DIFFLAB_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DIFFLAB_SIMD_CLONES
#endif

namespace difflab::simd {
namespace {

inline float from_bf16(bf16_bits h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline bf16_bits to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;  // nearest even
  return static_cast<bf16_bits>(f != f ? 0x7FC0u : rounded);              // keep NaN a NaN
}

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
  const double below = std::fabs(v - static_cast<double>(from_bf16(toward_zero)));
  const double above = std::fabs(v - static_cast<double>(from_bf16(away)));
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
      const double x = from_bf16(static_cast<bf16_bits>(h));
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

// The two input indices and weights of output index `out` of a 2x bilinear upsampling with
// align_corners = false: source coordinate (out + 0.5) / 2 - 0.5, clamped to [0, size - 1].
struct Taps {
  int64_t near, far;
  float near_weight, far_weight;
};
inline Taps taps(int64_t out, int64_t size) {
  const int64_t near = out / 2;
  const int64_t far = (out % 2 == 0) ? std::max<int64_t>(near - 1, 0) : std::min<int64_t>(near + 1, size - 1);
  return {near, far, 0.75f, 0.25f};
}

}  // namespace

DIFFLAB_SIMD_CLONES void shifted_sums(const float* __restrict x, int64_t x_stride, int64_t rows, int64_t channels,
                                      const float* __restrict shift, float* __restrict sum,
                                      float* __restrict square_sum) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * x_stride;
    for (int64_t c = 0; c < channels; ++c) {
      const float d = row[c] - shift[c];
      sum[c] += d;
      square_sum[c] += d * d;
    }
  }
}

DIFFLAB_SIMD_CLONES void normalise_rows(const float* __restrict x, int64_t x_stride, int64_t rows, int64_t channels,
                                        const float* __restrict mean, const float* __restrict inverse_std,
                                        bf16_bits* __restrict y, bf16_bits* __restrict x_bf16, int64_t y_stride) {
  if (x_bf16 == nullptr) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = x + r * x_stride;
      bf16_bits* out = y + r * y_stride;
      for (int64_t c = 0; c < channels; ++c) out[c] = to_bf16((in[c] - mean[c]) * inverse_std[c]);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = x + r * x_stride;
      bf16_bits* out = y + r * y_stride;
      bf16_bits* copy = x_bf16 + r * y_stride;
      for (int64_t c = 0; c < channels; ++c) {
        out[c] = to_bf16((in[c] - mean[c]) * inverse_std[c]);
        copy[c] = to_bf16(in[c]);
      }
    }
  }
}

DIFFLAB_SIMD_CLONES void gradient_sums(const bf16_bits* __restrict g, const bf16_bits* __restrict y,
                                       int64_t rows, int64_t channels, float* __restrict g_sum,
                                       float* __restrict g_y_sum) {
  for (int64_t i = 0; i < rows * channels; i += channels)
    for (int64_t c = 0; c < channels; ++c) {
      const float gv = from_bf16(g[i + c]);
      g_sum[c] += gv;
      g_y_sum[c] += gv * from_bf16(y[i + c]);
    }
}

DIFFLAB_SIMD_CLONES void normalise_backward_rows(
    const bf16_bits* __restrict g, const bf16_bits* __restrict y, int64_t stride, int64_t rows, int64_t channels,
    const float* __restrict scale, const float* __restrict offset, const float* __restrict slope,
    const float* __restrict residual_float, const bf16_bits* __restrict residual_bf16, float* __restrict dx,
    int64_t dx_stride) {
  // One loop per case, so that each vectorises.
  for (int64_t r = 0; r < rows; ++r) {
    const bf16_bits* g_row = g + r * stride;
    const bf16_bits* y_row = y + r * stride;
    float* out = dx + r * dx_stride;
    if (residual_float != nullptr) {
      const float* residual = residual_float + r * stride;
      for (int64_t c = 0; c < channels; ++c)
        out[c] = scale[c] * from_bf16(g_row[c]) - offset[c] - slope[c] * from_bf16(y_row[c]) + residual[c];
    } else if (residual_bf16 != nullptr) {
      const bf16_bits* residual = residual_bf16 + r * stride;
      for (int64_t c = 0; c < channels; ++c)
        out[c] = scale[c] * from_bf16(g_row[c]) - offset[c] - slope[c] * from_bf16(y_row[c]) +
                 from_bf16(residual[c]);
    } else {
      for (int64_t c = 0; c < channels; ++c)
        out[c] = scale[c] * from_bf16(g_row[c]) - offset[c] - slope[c] * from_bf16(y_row[c]);
    }
  }
}

DIFFLAB_SIMD_CLONES void silu_forward(const bf16_bits* __restrict x, bf16_bits* __restrict y, int64_t n) {
  const uint32_t* __restrict table = swish_tables().value.data();
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<bf16_bits>(table[x[i]]);
}

DIFFLAB_SIMD_CLONES void silu_in_place(bf16_bits* x, int64_t n) {
  const uint32_t* __restrict table = swish_tables().value.data();
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<bf16_bits>(table[x[i]]);
}

DIFFLAB_SIMD_CLONES void silu_backward(const bf16_bits* __restrict g, const bf16_bits* __restrict x,
                                       bf16_bits* __restrict dx, int64_t n) {
  const float* __restrict slope = swish_tables().derivative.data();
  for (int64_t i = 0; i < n; ++i) dx[i] = to_bf16(from_bf16(g[i]) * slope[x[i]]);
}

DIFFLAB_SIMD_CLONES void add_bf16_bf16(const bf16_bits* __restrict a, const bf16_bits* __restrict b,
                                       float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = from_bf16(a[i]) + from_bf16(b[i]);
}

DIFFLAB_SIMD_CLONES void add_bf16_float(const bf16_bits* __restrict a, const float* __restrict b,
                                        float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = from_bf16(a[i]) + b[i];
}

DIFFLAB_SIMD_CLONES void upsample2x_forward_row(const float* __restrict image, int64_t height, int64_t width,
                                                int64_t channels, int64_t out_y, float* __restrict out_row) {
  const Taps y = taps(out_y, height);
  const float* near_row = image + y.near * width * channels;
  const float* far_row = image + y.far * width * channels;
  for (int64_t out_x = 0; out_x < 2 * width; ++out_x) {
    const Taps x = taps(out_x, width);
    const float* a = near_row + x.near * channels;
    const float* b = near_row + x.far * channels;
    const float* c = far_row + x.near * channels;
    const float* d = far_row + x.far * channels;
    float* out = out_row + out_x * channels;
    for (int64_t k = 0; k < channels; ++k)
      out[k] = y.near_weight * (x.near_weight * a[k] + x.far_weight * b[k]) +
               y.far_weight * (x.near_weight * c[k] + x.far_weight * d[k]);
  }
}

DIFFLAB_SIMD_CLONES void upsample2x_backward_row(const float* __restrict grad, int64_t pixel_stride,
                                                 int64_t height, int64_t width, int64_t channels,
                                                 int64_t in_y, float* __restrict scratch,
                                                 float* __restrict grad_row) {
  // Rows first: scratch = the weighted sum of the output rows that read input row in_y.
  const int64_t out_width = 2 * width;
  for (int64_t i = 0; i < out_width * channels; ++i) scratch[i] = 0.0f;
  for (int64_t out_y = std::max<int64_t>(2 * in_y - 1, 0); out_y <= std::min(2 * in_y + 2, 2 * height - 1);
       ++out_y) {
    const Taps y = taps(out_y, height);
    const float weight = (y.near == in_y ? y.near_weight : 0.0f) + (y.far == in_y ? y.far_weight : 0.0f);
    if (weight == 0.0f) continue;
    const float* row = grad + out_y * out_width * pixel_stride;
    for (int64_t out_x = 0; out_x < out_width; ++out_x)
      for (int64_t k = 0; k < channels; ++k)
        scratch[out_x * channels + k] += weight * row[out_x * pixel_stride + k];
  }
  // Then columns, the same way.
  for (int64_t in_x = 0; in_x < width; ++in_x) {
    float* out = grad_row + in_x * channels;
    for (int64_t k = 0; k < channels; ++k) out[k] = 0.0f;
    for (int64_t out_x = std::max<int64_t>(2 * in_x - 1, 0); out_x <= std::min(2 * in_x + 2, out_width - 1);
         ++out_x) {
      const Taps x = taps(out_x, width);
      const float weight = (x.near == in_x ? x.near_weight : 0.0f) + (x.far == in_x ? x.far_weight : 0.0f);
      const float* column = scratch + out_x * channels;
      for (int64_t k = 0; k < channels; ++k) out[k] += weight * column[k];
    }
  }
}

DIFFLAB_SIMD_CLONES void float_to_bf16(const float* __restrict x, bf16_bits* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = to_bf16(x[i]);
}

DIFFLAB_SIMD_CLONES void scale_shift_pixels(const bf16_bits* __restrict x, int64_t x_stride, int64_t pixels,
                                            int64_t channels, const float* __restrict scale,
                                            const float* __restrict shift, bf16_bits* __restrict y,
                                            int64_t y_stride, bf16_bits* __restrict copy, int64_t copy_stride) {
  // Blocks of 16 channels with a fixed trip count, one vector each under AVX-512: a pixel has only
  // 32 to 224 channels, and a loop of unknown length would spend more on its set-up and remainder
  // than on the work.
  constexpr int64_t kBlock = 16;
  const int64_t blocked = channels - channels % kBlock;
  for (int64_t p = 0; p < pixels; ++p) {
    const bf16_bits* in = x + p * x_stride;
    bf16_bits* out = y + p * y_stride;
    bf16_bits* copied = copy != nullptr ? copy + p * copy_stride : nullptr;
    for (int64_t c0 = 0; c0 < blocked; c0 += kBlock) {
      for (int64_t k = 0; k < kBlock; ++k)
        out[c0 + k] = to_bf16(from_bf16(in[c0 + k]) * scale[c0 + k] + shift[c0 + k]);
      if (copied != nullptr)
        for (int64_t k = 0; k < kBlock; ++k) copied[c0 + k] = in[c0 + k];
    }
    for (int64_t c = blocked; c < channels; ++c) {
      out[c] = to_bf16(from_bf16(in[c]) * scale[c] + shift[c]);
      if (copied != nullptr) copied[c] = in[c];
    }
  }
}

DIFFLAB_SIMD_CLONES void average_pool2x_row(const bf16_bits* __restrict image, int64_t in_stride, int64_t width,
                                            int64_t channels, int64_t out_y, bf16_bits* __restrict out_row,
                                            int64_t out_stride) {
  const bf16_bits* top = image + 2 * out_y * width * in_stride;
  const bf16_bits* bottom = top + width * in_stride;
  for (int64_t out_x = 0; out_x < width / 2; ++out_x) {
    const bf16_bits* a = top + 2 * out_x * in_stride;
    const bf16_bits* b = bottom + 2 * out_x * in_stride;
    bf16_bits* out = out_row + out_x * out_stride;
    for (int64_t k = 0; k < channels; ++k)
      out[k] = to_bf16(0.25f * ((from_bf16(a[k]) + from_bf16(a[k + in_stride])) +
                                (from_bf16(b[k]) + from_bf16(b[k + in_stride]))));
  }
}

DIFFLAB_SIMD_CLONES void upsample2x_bf16_row(const bf16_bits* __restrict image, int64_t in_stride, int64_t height,
                                             int64_t width, int64_t channels, int64_t out_y,
                                             bf16_bits* __restrict out_row, int64_t out_stride) {
  const Taps y = taps(out_y, height);
  const bf16_bits* near_row = image + y.near * width * in_stride;
  const bf16_bits* far_row = image + y.far * width * in_stride;
  for (int64_t out_x = 0; out_x < 2 * width; ++out_x) {
    const Taps x = taps(out_x, width);
    const bf16_bits* a = near_row + x.near * in_stride;
    const bf16_bits* b = near_row + x.far * in_stride;
    const bf16_bits* c = far_row + x.near * in_stride;
    const bf16_bits* d = far_row + x.far * in_stride;
    bf16_bits* out = out_row + out_x * out_stride;
    for (int64_t k = 0; k < channels; ++k)
      out[k] = to_bf16(y.near_weight * (x.near_weight * from_bf16(a[k]) + x.far_weight * from_bf16(b[k])) +
                       y.far_weight * (x.near_weight * from_bf16(c[k]) + x.far_weight * from_bf16(d[k])));
  }
}

}  // namespace difflab::simd
