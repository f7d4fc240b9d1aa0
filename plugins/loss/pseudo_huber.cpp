// pseudo_huber: √(d² + c²) − c for d = target − prediction: quadratic near zero, linear far out
// (Charbonnier; used for diffusion and consistency training by Song & Dhariwal 2023, "Improved
// techniques for training consistency models", sec. 3.3, with c = 0.00054·√D for D = the number
// of values in one image).
#include <cmath>

#include "difflab/loss.h"
#include "difflab/plugin.h"

using namespace difflab;

class PseudoHuber : public Loss {
 public:
  PseudoHuber(const Params& params, const BuildContext&) : c_(params.real("c")) {}
  static ParamSchema schema() {
    return {ParamSpec::real("c", 0.0, "transition scale; 0 = 0.00054·√(values per image), Song & Dhariwal 2023")
                .at_least(0)};
  }

  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor& prediction) const override {
    const double c = c_ > 0 ? c_ : 0.00054 * std::sqrt(static_cast<double>(target[0].numel()));
    const torch::Tensor differences = target - prediction;
    return torch::sqrt(differences * differences + c * c) - c;
  }

 private:
  double c_;
};

DIFFLAB_PLUGIN(loss, "pseudo_huber", PseudoHuber, "1.0.0",
               "pseudo-Huber sqrt(d² + c²) − c: MSE near zero, MAE far out")
