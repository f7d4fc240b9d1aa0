// A plugin compiled against SDK headers whose ImageSplits gained a member (tests/CMakeLists.txt
// copies the SDK's headers and edits that struct): the host must refuse it by the layout
// fingerprint in its ABI record, naming ImageSplits, before calling any of its code.
#include "difflab/loss.h"
#include "difflab/plugin.h"

#ifndef DIFFLAB_TEST_CHANGED_HEADERS
#error "build this plugin against the changed copy of the SDK headers"
#endif

class ChangedLayoutLoss : public difflab::Loss {
 public:
  ChangedLayoutLoss(const difflab::Params&, const difflab::BuildContext&) {}
  static difflab::ParamSchema schema() { return {}; }
  torch::Tensor elementwise(const torch::Tensor& target, const torch::Tensor&) const override { return target; }
};

DIFFLAB_PLUGIN(loss, "changed_layout", ChangedLayoutLoss, "0.0.1", "refused by the host")
