// What every component shares: its family, the context it is built in, its base class and the
// metadata a plugin library describes it with. The family interfaces live in schedule.h, loss.h,
// ...; DIFFLAB_PLUGIN and the ABI record in plugin.h. Deliberately torch-free.
#pragma once

#include "difflab/export.h"

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "difflab/params.h"

namespace difflab {

enum class Family { schedule, loss, sampler, network, dataset, features };
DIFFLAB_API const char* to_string(Family family);
DIFFLAB_API std::vector<Family> all_families();

// What a component needs to know about the experiment beyond its own parameters.
struct BuildContext {
  int64_t image_size = 0;      // [data] image_size
  int64_t image_channels = 0;  // channels of the dataset's images
};

// Base of every component a plugin makes. Its key function lives in the framework library,
// so host and plugins share one typeinfo and dynamic_cast works across libraries.
class DIFFLAB_API Component {
 public:
  // Bump when a virtual function of this interface changes (plugin.h checks it).
  static constexpr uint32_t interface_version = 1;
  virtual ~Component();
};

// A cross-field check a schema cannot express (e.g. min_signal_rate < max_signal_rate).
struct ParamIssue {
  std::string key;      // the parameter to blame; empty = no issue
  std::string message;
};

using Factory = Component* (*)(const Params& params, const BuildContext& context);
using Validator = ParamIssue (*)(const Params& params);

struct PluginInfo {
  Family family;
  std::string name;
  std::string version;
  std::string description;
  ParamSchema schema;
  Factory create = nullptr;
  Validator validate = nullptr;  // optional
};

namespace detail {
template <class T, class = void>
struct HasValidate : std::false_type {};
template <class T>
struct HasValidate<T, std::void_t<decltype(T::validate(std::declval<const Params&>()))>>
    : std::true_type {};

template <class T>
Validator validator_of() {
  if constexpr (HasValidate<T>::value) {
    return [](const Params& params) { return T::validate(params); };
  } else {
    return nullptr;
  }
}
}  // namespace detail

}  // namespace difflab
