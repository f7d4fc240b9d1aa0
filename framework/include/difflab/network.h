// Network family: (noisy_images, noise_variances) -> prediction; a torch::nn::Module.
#pragma once

#include "difflab/export.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include "difflab/component.h"
#include "difflab/inference.h"

namespace difflab {

class DIFFLAB_API Network : public Component, public torch::nn::Module {
 public:
  // Bump when a virtual function of this interface changes (plugin.h checks it).
  static constexpr uint32_t interface_version = 2;
  ~Network() override;
  // noisy_images [B, C, H, W], noise_variances [B, 1, 1, 1] -> [B, C, H, W]
  virtual torch::Tensor forward(const torch::Tensor& noisy_images,
                                const torch::Tensor& noise_variances) = 0;
  // Optional: this network's evaluation-only form with its current weights (inference.h), for
  // sampling and KID; called once per evaluation, on the EMA network, in evaluation mode. nullptr
  // (the default, and whenever inference::available() is false) means evaluation calls forward().
  virtual std::unique_ptr<InferenceNetwork> prepare_inference() { return nullptr; }
};

// Helpers for U-Net-like network plugins:
// a convolution with "same" padding for odd kernels (Keras' padding="same"),
DIFFLAB_API torch::nn::Conv2d same_conv(int64_t in_channels, int64_t out_channels, int64_t kernel_size);
// and the check that image_size halves `levels` − 1 times (a config Error naming network.widths).
DIFFLAB_API void check_levels(int64_t image_size, size_t levels);
// The memory format the module's convolution kernels are in (ChannelsLast after
// `[experiment] channels_last = true`, else Contiguous). Activations with one channel, like a
// grayscale input, look contiguous either way and convolutions then return contiguous outputs:
// x.contiguous(weight_memory_format(*this)) puts them back in the layout the rest runs fastest in.
DIFFLAB_API torch::MemoryFormat weight_memory_format(const torch::nn::Module& module);

// For a U-Net's validate() (params `widths`, `block_depth`, `embedding_dims`): an issue naming
// the key that makes the network too large to train in this machine's memory, estimated before
// anything is allocated: at least 9·w² weights per 3×3 convolution, two per residual block, on
// the way down and up, plus the first block's 9·(w₀ + embedding_dims)·w₀; 20 bytes a parameter
// (weights, EMA, gradients, two AdamW moments). No issue when it fits.
DIFFLAB_API ParamIssue check_unet_size(const Params& params);

// This machine's physical memory in bytes, the bound every size check compares against.
DIFFLAB_API double machine_memory_bytes();

}  // namespace difflab
