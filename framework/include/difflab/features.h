// Feature-extractor family: images -> feature vectors, for KID.
#pragma once

#include <torch/types.h>

#include "difflab/plugin.h"

namespace difflab {

class BOOST_SYMBOL_VISIBLE FeatureExtractor : public Component {
 public:
  ~FeatureExtractor() override;
  // Called once with the experiment's data before any extract() (a learned extractor trains
  // or loads itself here). The default does nothing.
  virtual void prepare(const struct ImageSplits& data);
  // images [N, C, H, W] in [0, 1] (any device) -> features [N, D], float32 on the CPU.
  virtual torch::Tensor extract(const torch::Tensor& images) = 0;
};

}  // namespace difflab
