// A plugin-author mistake: a parameter's default breaks its own range (scale must be > 0, the
// default is -1). Refused when the library loads, naming the parameter, before any run uses it.
#include "difflab/loss.h"
#include "difflab/plugin.h"

class BadDefaultLoss : public difflab::Loss {
 public:
  BadDefaultLoss(const difflab::Params&, const difflab::BuildContext&) {}
  static difflab::ParamSchema schema() {
    return {difflab::ParamSpec::real("scale", -1.0, "a scale").greater_than(0)};
  }
  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor&) const override { return target; }
};

DIFFLAB_PLUGIN(loss, "bad_default", BadDefaultLoss, "0.0.1", "refused by the host")
