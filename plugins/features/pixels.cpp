// pixels: the images' own pixels in [0, 1], flattened — a baseline feature space for KID and
// the extractor the tests use. Needs no model, so KID in pixel space is comparable everywhere.

#include "difflab/features.h"
#include "difflab/plugin.h"

using namespace difflab;

class PixelFeatures : public FeatureExtractor {
 public:
  PixelFeatures(const Params&, const BuildContext&) {}
  static ParamSchema schema() { return {}; }

  torch::Tensor extract(const torch::Tensor& images) override {
    return images.detach().to(torch::kCPU, torch::kFloat32).flatten(1).contiguous();  // [N, C·H·W]
  }
};

DIFFLAB_PLUGIN(features, "pixels", PixelFeatures, "1.0.0",
               "flattened pixels in [0, 1]; a model-free KID baseline")
