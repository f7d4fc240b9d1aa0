// Feature-extractor family: images -> feature vectors, for KID.
#pragma once

#include "difflab/export.h"

#include <torch/types.h>

#include "difflab/component.h"

namespace difflab {

class DIFFLAB_API FeatureExtractor : public Component {
 public:
  // Bump when a virtual function of this interface changes (plugin.h checks it).
  static constexpr uint32_t interface_version = 1;
  ~FeatureExtractor() override;
  // Called once with the experiment's data before any extract() (a learned extractor trains
  // or loads itself here). The default does nothing.
  virtual void prepare(const struct ImageSplits& data);
  // images [N, C, H, W] in [0, 1] (any device) -> features [N, D], float32 on the CPU.
  virtual torch::Tensor extract(const torch::Tensor& images) = 0;
};

}  // namespace difflab
