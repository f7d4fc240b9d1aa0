// mse: pixelwise mean squared error, the loss of the DDPM paper (Ho et al. 2020, eq. 14).

#include "difflab/loss.h"
#include "difflab/plugin.h"

using namespace difflab;

class MeanSquaredError : public Loss {
 public:
  MeanSquaredError(const Params&, const BuildContext&) {}
  static ParamSchema schema() { return {}; }

  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor& prediction) const override {
    return (target - prediction).pow(2);
  }
};

DIFFLAB_PLUGIN(loss, "mse", MeanSquaredError, "1.1.0",
               "mean squared error; more diverse samples, the DDPM paper's loss")
