// A plugin whose ABI record says it was compiled against another LibTorch (as one built with a
// different LibTorch's headers would): the host must refuse it without calling into it.
#include "difflab/loss.h"
#include "difflab/plugin.h"

class WrongTorchLoss : public difflab::Loss {
 public:
  WrongTorchLoss(const difflab::Params&, const difflab::BuildContext&) {}
  static difflab::ParamSchema schema() { return {}; }
  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor&) const override { return target; }
};

#undef TORCH_VERSION_MINOR
#define TORCH_VERSION_MINOR 99
DIFFLAB_PLUGIN(loss, "wrong_torch", WrongTorchLoss, "0.0.1", "refused by the host")
