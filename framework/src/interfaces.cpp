// Key functions of the plugin interfaces: one typeinfo per interface, in the framework library.
#include "difflab/dataset.h"
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
FeatureExtractor::~FeatureExtractor() = default;
void FeatureExtractor::prepare(const ImageSplits&) {}

ParamSchema signal_rate_schema() {
  return {
      ParamSpec::real("min_signal_rate", 0.02,
                      "signal rate at t = 1; too low oversaturates, 0 divides by zero")
          .greater_than(0)
          .less_than(1),
      ParamSpec::real("max_signal_rate", 0.95, "signal rate at t = 0").greater_than(0).at_most(1),
  };
}

ParamIssue check_signal_rates(const Params& params) {
  if (params.real("min_signal_rate") >= params.real("max_signal_rate"))
    return {"min_signal_rate", "min_signal_rate must be below max_signal_rate"};
  return {};
}

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
