// A plugin built for another ABI version: the host must refuse it without calling into it.
#define DIFFLAB_PLUGIN_ABI_VERSION 999u
#include "difflab/loss.h"
#include "difflab/plugin.h"

class WrongAbiLoss : public difflab::Loss {
 public:
  WrongAbiLoss(const difflab::Params&, const difflab::BuildContext&) {}
  static difflab::ParamSchema schema() { return {}; }
  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor&) const override {
    return target;
  }
};

DIFFLAB_PLUGIN(loss, "wrong_abi", WrongAbiLoss, "0.0.1", "refused by the host")
