// mae: pixelwise mean absolute error, the seed's loss (keras.losses.mean_absolute_error).

#include "difflab/loss.h"
#include "difflab/plugin.h"

using namespace difflab;

class MeanAbsoluteError : public Loss {
 public:
  MeanAbsoluteError(const Params&, const BuildContext&) {}
  static ParamSchema schema() { return {}; }

  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor& prediction) const override {
    return (target - prediction).abs();
  }
};

DIFFLAB_PLUGIN(loss, "mae", MeanAbsoluteError, "1.1.0",
               "mean absolute error; smoother images (the seed's choice)")
