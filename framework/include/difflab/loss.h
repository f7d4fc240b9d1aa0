// Loss family: (target, prediction) -> elementwise loss; operator() is its mean.
#pragma once

#include <torch/types.h>

#include "difflab/plugin.h"

namespace difflab {

class BOOST_SYMBOL_VISIBLE Loss : public Component {
 public:
  ~Loss() override;
  // The loss of every element, the shape of `target`; the framework weights (e.g. min-SNR-γ)
  // and averages it.
  virtual torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor& prediction) const = 0;
  // The mean over every element.
  torch::Tensor operator()(const torch::Tensor& target, const torch::Tensor& prediction) const {
    return elementwise(target, prediction).mean();
  }
};

}  // namespace difflab
