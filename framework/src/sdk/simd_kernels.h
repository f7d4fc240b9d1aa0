// Vectorised loops for the fused bf16 operations of precision.cpp (see simd_kernels.cpp). Tensors
// are raw NHWC rows of `channels` values, or flat arrays of `n` values; bf16 values are their
// 16-bit patterns (the upper half of a float32). Outputs never alias inputs.
#pragma once

#include <cstdint>

namespace difflab::simd {

using bf16_bits = uint16_t;

// Adds, per channel, sum(x - shift) and sum((x - shift)^2) over the rows (x_stride values apart) to
// `sum`, `square_sum`.
void shifted_sums(const float* x, int64_t x_stride, int64_t rows, int64_t channels, const float* shift,
                  float* sum, float* square_sum);
// y = bf16((x - mean) * inverse_std), per channel, and x_bf16 = bf16(x) unless it is null; the rows
// of x lie x_stride values apart, those of y and x_bf16 y_stride apart (a channel slice of the
// concatenation of several inputs).
void normalise_rows(const float* x, int64_t x_stride, int64_t rows, int64_t channels, const float* mean,
                    const float* inverse_std, bf16_bits* y, bf16_bits* x_bf16, int64_t y_stride);
// Adds, per channel, sum(g) and sum(g * y) to `g_sum`, `g_y_sum`.
void gradient_sums(const bf16_bits* g, const bf16_bits* y, int64_t rows, int64_t channels, float* g_sum,
                   float* g_y_sum);
// dx = scale * g - offset - slope * y (+ residual_float or residual_bf16, where not null), per channel;
// the rows of g, y and the residual lie `stride` values apart, those of dx dx_stride apart.
void normalise_backward_rows(const bf16_bits* g, const bf16_bits* y, int64_t stride, int64_t rows,
                             int64_t channels, const float* scale, const float* offset, const float* slope,
                             const float* residual_float, const bf16_bits* residual_bf16, float* dx,
                             int64_t dx_stride);
// y = swish(x) = x sigmoid(x), the bf16 nearest to its float64 value, and its gradient dx =
// bf16(g * swish'(x)), swish'(x) in float32: both looked up in tables of every bf16 input.
void silu_forward(const bf16_bits* x, bf16_bits* y, int64_t n);
void silu_in_place(bf16_bits* x, int64_t n);  // x = swish(x)
void silu_backward(const bf16_bits* g, const bf16_bits* x, bf16_bits* dx, int64_t n);
// out = a + b in float32.
void add_bf16_bf16(const bf16_bits* a, const bf16_bits* b, float* out, int64_t n);
void add_bf16_float(const bf16_bits* a, const float* b, float* out, int64_t n);
// Bilinear 2x upsampling, align_corners = false, of one NHWC image [height, width, channels]:
// output row out_y (2 * width pixels). Each output pixel is 3/4 of its nearest input pixel and 1/4
// of the next one away, per axis, clamped at the borders.
void upsample2x_forward_row(const float* image, int64_t height, int64_t width, int64_t channels,
                            int64_t out_y, float* out_row);
// Its gradient: input row in_y (width pixels, dense) of one image from the gradient of the
// [2 height, 2 width] output, whose pixels are `pixel_stride` floats apart (>= channels: the
// gradient may be a channel slice of a larger tensor). `scratch` holds 2 * width * channels floats.
void upsample2x_backward_row(const float* grad, int64_t pixel_stride, int64_t height, int64_t width,
                             int64_t channels, int64_t in_y, float* scratch, float* grad_row);
// out = bf16(x), rounding to nearest even.
void float_to_bf16(const float* x, bf16_bits* out, int64_t n);

// The inference path (inference.cpp): bf16 NHWC pixels whose channels are contiguous and which lie
// `*_stride` values apart (>= channels: a channel slice of a wider buffer).
// y = bf16(x * scale + shift) per channel over `pixels` pixels, and copy = x unless null.
void scale_shift_pixels(const bf16_bits* x, int64_t x_stride, int64_t pixels, int64_t channels,
                        const float* scale, const float* shift, bf16_bits* y, int64_t y_stride,
                        bf16_bits* copy, int64_t copy_stride);
// Output row out_y of a 2x2 average pooling of one image [height, width] (out: width / 2 pixels).
void average_pool2x_row(const bf16_bits* image, int64_t in_stride, int64_t width, int64_t channels,
                        int64_t out_y, bf16_bits* out_row, int64_t out_stride);
// Output row out_y of a 2x bilinear upsampling (align_corners = false) of one image, in bf16.
void upsample2x_bf16_row(const bf16_bits* image, int64_t in_stride, int64_t height, int64_t width,
                         int64_t channels, int64_t out_y, bf16_bits* out_row, int64_t out_stride);

}  // namespace difflab::simd
