// The inference path for network plugins: evaluation-only forward passes (sampling, KID) on the
// CPU in bf16, built from oneDNN primitives with their post-operations, for the networks that opt
// in through Network::prepare_inference.
//
// What it does differently from a training-mode forward pass under autocast:
//  - the weights are snapshotted once (the EMA network's, when sampling) in bf16, reordered into
//    the layout each convolution kernel wants, and reused for every step;
//  - BatchNorm's running statistics are folded into a per-channel scale and shift (in float64),
//    applied in one pass that also writes the bf16 input of the next convolution;
//  - activations, the residual stream included, are bf16 NHWC; a residual addition is the
//    convolution's sum post-operation, no pass of its own; swish is a table lookup right after
//    the convolution, while its output is in cache (as oneDNN 2.6's eltwise post-operation it made
//    the AMX convolution 3.6x slower);
//  - a U-Net's concatenation is no pass of its own: the normalisation reads its parts where they
//    are and writes the concatenated input of the residual branch in the same pass;
//  - every buffer and primitive is made once per input shape and reused at every step; no
//    autograd bookkeeping at all.
// All of it is exposed as a few building blocks (Activation, Conv, Normalise, pooling and
// upsampling) from which a plugin writes its network's evaluation forward pass;
// plugins/network/residual_unet.cpp is the example.
#pragma once

#include "difflab/export.h"

#include <memory>
#include <vector>
#include <torch/types.h>

namespace torch::nn {
class Conv2dImpl;
class BatchNorm2dImpl;
}  // namespace torch::nn

namespace difflab {

// A network's evaluation-only form, made by Network::prepare_inference from the network's
// weights at that moment (later weight changes do not reach it).
class DIFFLAB_API InferenceNetwork {
 public:
  virtual ~InferenceNetwork();
  // The same contract as Network::forward (noisy_images [B, C, H, W] float32, noise_variances
  // [B, 1, 1, 1]) under no autograd; returns float32 [B, C, H, W].
  virtual torch::Tensor forward(const torch::Tensor& noisy_images, const torch::Tensor& noise_variances) = 0;
};

namespace inference {

// Whether this build and CPU run the inference path: difflab was built with oneDNN's headers
// (libdnnl-dev) and the CPU has bf16 instructions (AVX-512 BF16 or AMX). When false, a network's
// prepare_inference returns nullptr and evaluation uses Network::forward.
DIFFLAB_API bool available();

// A bf16 activation in NHWC: channels [offset, offset + channels) of `storage` [B, H, W, S], a
// contiguous bf16 tensor; S > channels when it is one slice of a wider (concatenated) buffer.
struct DIFFLAB_API Activation {
  torch::Tensor storage;
  int64_t offset = 0;
  int64_t channels = 0;

  int64_t batch() const { return storage.size(0); }
  int64_t height() const { return storage.size(1); }
  int64_t width() const { return storage.size(2); }
  int64_t stride() const { return storage.size(3); }  // values from one pixel to the next
  // Channels [first, first + count) of this one.
  Activation slice(int64_t first, int64_t count) const;
  // As a [B, C, H, W] tensor view (channels_last strides) of the same memory.
  torch::Tensor view() const;
};
// A new buffer [batch, height, width, channels] (uninitialised).
DIFFLAB_API Activation allocate(int64_t batch, int64_t height, int64_t width, int64_t channels);

// A convolution (stride 1, "same" padding) prepared from a Conv2d's weights and bias at the time
// of construction. The oneDNN primitive for a given batch and image size is made the first time
// it is seen and kept, with its reordered weights and scratchpad. Source and destination are
// dense buffers (stride == channels): for a channel slice, oneDNN 2.6 falls back to its reference
// kernel, hundreds of times slower.
class DIFFLAB_API Conv {
 public:
  enum class Post {
    none,
    swish,         // dst = swish(conv(src))
    add_to_output  // dst += conv(src): a residual addition into what dst already holds
  };
  Conv(const torch::nn::Conv2dImpl& conv, Post post = Post::none);
  ~Conv();
  Conv(Conv&&) noexcept;
  Conv& operator=(Conv&&) noexcept;
  int64_t out_channels() const;
  // dst (bf16 activation of out_channels) = post(conv(src)).
  void operator()(const Activation& src, const Activation& dst);
  // The same into a float32 NHWC tensor [B, H, W, out_channels] (a network's output).
  void operator()(const Activation& src, const torch::Tensor& dst_float);  // Post::none only

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// BatchNorm2d (without affine parameters) in evaluation mode as y = x * scale + shift, scale =
// 1 / sqrt(running_var + eps), shift = -running_mean * scale (Ioffe & Szegedy 2015, alg. 2, the
// inference step), computed in float64 at construction.
class DIFFLAB_API Normalise {
 public:
  explicit Normalise(const torch::nn::BatchNorm2dImpl& norm);
  // y = norm(x), where x is the concatenation of `parts` along the channels (a U-Net's [x, skip]);
  // with `copy`, x is also written there in the same pass (the residual branch's input: for a 1x1
  // convolution, or what Conv::Post::add_to_output adds to). y and copy have all the channels.
  void operator()(const std::vector<Activation>& parts, const Activation& y, const Activation* copy = nullptr) const;

 private:
  std::vector<float> scale_, shift_;
};

// y [B, H/2, W/2] = 2x2 average pooling of x; y may be a slice.
DIFFLAB_API void average_pool_2x(const Activation& x, const Activation& y);
// y [B, 2H, 2W] = bilinear 2x upsampling of x (align_corners = false); y may be a slice.
DIFFLAB_API void upsample_bilinear_2x(const Activation& x, const Activation& y);
// Writes a float [B, C, H, W] or [B, C, 1, 1] tensor (broadcast over the pixels) into y, in bf16.
DIFFLAB_API void write(const torch::Tensor& values, const Activation& y);

}  // namespace inference
}  // namespace difflab
