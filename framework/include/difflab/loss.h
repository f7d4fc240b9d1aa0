// Loss family: (target, prediction) -> elementwise loss; operator() is its mean.
#pragma once

#include "difflab/export.h"

#include <torch/types.h>

#include "difflab/component.h"

namespace difflab {

class DIFFLAB_API Loss : public Component {
 public:
  // Bump when a virtual function of this interface changes (plugin.h checks it).
  static constexpr uint32_t interface_version = 2;
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
