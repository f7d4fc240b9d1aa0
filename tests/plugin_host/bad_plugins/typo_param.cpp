// A plugin-author mistake that only shows when the component is made: the constructor reads a
// parameter its schema does not declare ("scal" for "scale"). The error must name the plugin,
// its section and the key.
#include "difflab/loss.h"
#include "difflab/plugin.h"

class TypoParamLoss : public difflab::Loss {
 public:
  TypoParamLoss(const difflab::Params& params, const difflab::BuildContext&) : scale_(params.real("scal")) {}
  static difflab::ParamSchema schema() { return {difflab::ParamSpec::real("scale", 1.0, "a scale").greater_than(0)}; }
  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor&) const override { return target * scale_; }

 private:
  double scale_;
};

DIFFLAB_PLUGIN(loss, "typo_param", TypoParamLoss, "0.0.1", "fails when made")
