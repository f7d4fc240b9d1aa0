// Mixed precision helpers for network plugins.
//
// Under CPU bf16 autocast a convolution runs in bf16 (AMX/AVX-512) and returns bf16, but LibTorch's
// bf16 CPU kernels for the elementwise work around it (BatchNorm, swish, upsampling, additions) are
// slower than its float32 ones, and every float32 <-> bf16 cast between them is one more pass over
// the activations, forward and backward. The helpers below do that work in float32 arithmetic while
// reading and writing each activation once, in the dtype its consumer wants: `batch_norm` writes
// bf16 for the next convolution, `swish` stays in bf16 between two convolutions, `add_as_float` adds
// a bf16 convolution output to a float32 residual. On CUDA, without autocast, or for a layout they
// do not handle, each one falls back to the plain LibTorch operation, so a network written with
// them runs anywhere.
#pragma once

#include "difflab/export.h"

#include <torch/types.h>

namespace torch::nn {
class BatchNorm2dImpl;
}  // namespace torch::nn

namespace difflab {

// True while bf16 autocast is enabled for the CPU (AutocastGuard, diffusion_model.h).
DIFFLAB_API bool cpu_bf16_autocast();

// The output of a bf16 convolution as float32, for float32 elementwise work after it; on CUDA and
// in float32 it returns its input unchanged.
inline torch::Tensor float_activations(const torch::Tensor& x) {
  return (x.is_cpu() && x.scalar_type() == torch::kBFloat16) ? x.to(torch::kFloat32) : x;
}

// norm(x) for a BatchNorm2d without affine parameters, in training or evaluation mode, with the
// same running-statistics update as LibTorch (momentum, unbiased variance, num_batches_tracked).
// Under CPU bf16 autocast, for a float32 channels_last input, one fused kernel computes the batch
// statistics (float32 sums over fixed chunks of rows, combined in float64) and writes the result
// in bf16, ready for the next convolution; its backward pass reads the bf16 gradient and writes
// float32. Otherwise it is norm(x).
DIFFLAB_API torch::Tensor batch_norm(torch::nn::BatchNorm2dImpl& norm, const torch::Tensor& x);

// What a residual block does with its input x: batch_norm(norm, x) for the first convolution, and
// x for the residual branch, in bf16 when that branch is a convolution under CPU bf16 autocast
// (`residual_conv`). Fused, the cast happens in the same pass as the normalisation, and the backward
// pass adds the residual branch's gradient to the normalisation's in one pass.
struct BlockInput {
  torch::Tensor normalised;
  torch::Tensor residual;
};
DIFFLAB_API BlockInput normalise_block_input(torch::nn::BatchNorm2dImpl& norm, const torch::Tensor& x,
                                 bool residual_conv);
// The same for the channel concatenation [x, skip] (a U-Net's up block), without building it in
// float32: fused, both are normalised in one pass into the bf16 concatenation, and each gets its
// own gradient back. The residual branch must be a convolution (it reads the bf16
// concatenation); without fusion it is normalise_block_input(norm, torch::cat({x, skip}, 1)).
DIFFLAB_API BlockInput normalise_block_input(torch::nn::BatchNorm2dImpl& norm, const torch::Tensor& x,
                                             const torch::Tensor& skip, bool residual_conv);

// x * sigmoid(x) (swish, SiLU). A bf16 CPU input gives the bf16 nearest to its float64 value (a
// table of every bf16 input; magnitudes below FLT_MIN are 0, -inf gives 0), and a gradient from the
// float64 derivative; other inputs use torch::silu.
DIFFLAB_API torch::Tensor swish(const torch::Tensor& x);

// Bilinear 2x upsampling with align_corners = false (Keras' UpSampling2D(interpolation="bilinear")).
// For a float32 channels_last CPU tensor, a dedicated kernel whose backward pass reads a channel
// slice of a larger gradient in place (a U-Net concatenates the upsampled tensor with a skip
// connection); LibTorch's copies it first and is slow in channels_last. Otherwise F::interpolate.
DIFFLAB_API torch::Tensor upsample_bilinear_2x(const torch::Tensor& x);

// a + b in float32, where either may be a bf16 CPU tensor (a convolution's output under autocast):
// one pass instead of a cast and an addition, and the backward pass hands each input its gradient
// in its own dtype. Same-shaped tensors only; otherwise (or off the CPU) it is float_activations(a)
// + float_activations(b).
DIFFLAB_API torch::Tensor add_as_float(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace difflab
