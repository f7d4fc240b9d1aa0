// Loss family: (target, prediction) -> scalar mean loss.
#pragma once

#include <torch/types.h>

#include "difflab/plugin.h"

namespace difflab {

class BOOST_SYMBOL_VISIBLE Loss : public Component {
 public:
  ~Loss() override;
  virtual torch::Tensor operator()(const torch::Tensor& target,
                                   const torch::Tensor& prediction) const = 0;
};

}  // namespace difflab
