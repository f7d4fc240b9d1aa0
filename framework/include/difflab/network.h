// Network family: (noisy_images, noise_variances) -> prediction; a torch::nn::Module.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include "difflab/plugin.h"

namespace difflab {

class BOOST_SYMBOL_VISIBLE Network : public Component, public torch::nn::Module {
 public:
  ~Network() override;
  // noisy_images [B, C, H, W], noise_variances [B, 1, 1, 1] -> [B, C, H, W]
  virtual torch::Tensor forward(const torch::Tensor& noisy_images,
                                const torch::Tensor& noise_variances) = 0;
};

}  // namespace difflab
