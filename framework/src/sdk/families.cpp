// The plugin families: their interfaces' key functions (one typeinfo per interface, in the SDK
// library, so that dynamic_cast to a family works across libraries) and their names. The
// families' shared helpers are in schedule.cpp, sampler.cpp and network.cpp.
#include <torch/torch.h>

#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "difflab/loss.h"
#include "difflab/network.h"
#include "difflab/sampler.h"
#include "difflab/schedule.h"

namespace difflab {

Component::~Component() = default;
Schedule::~Schedule() = default;
Loss::~Loss() = default;
Sampler::~Sampler() = default;
Network::~Network() = default;
Dataset::~Dataset() = default;
std::optional<SplitCounts> Dataset::counts() const { return std::nullopt; }
FeatureExtractor::~FeatureExtractor() = default;
void FeatureExtractor::prepare(const ImageSplits&) {}

const char* to_string(Family family) {
  switch (family) {
    case Family::schedule: return "schedule";
    case Family::loss: return "loss";
    case Family::sampler: return "sampler";
    case Family::network: return "network";
    case Family::dataset: return "dataset";
    case Family::features: return "features";
  }
  return "?";
}

std::vector<Family> all_families() {
  return {Family::dataset,  Family::network, Family::schedule,
          Family::loss,     Family::sampler, Family::features};
}

}  // namespace difflab
