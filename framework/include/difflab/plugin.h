// The contract between the difflab host and its plugins: families, metadata, the ABI record
// and DIFFLAB_PLUGIN, the one macro a plugin .cpp uses to export itself.
// Deliberately torch-free: the family interfaces live in schedule.h, loss.h, ... .
#pragma once

#include <boost/config.hpp>
#include <torch/version.h>
#include <cstdint>
#include <string>

#include "difflab/params.h"
#include "difflab/version.h"

namespace difflab {

enum class Family { schedule, loss, sampler, network, dataset, features };
const char* to_string(Family family);
std::vector<Family> all_families();

// What a component needs to know about the experiment beyond its own parameters.
struct BuildContext {
  int64_t image_size = 0;      // [data] image_size
  int64_t image_channels = 0;  // channels of the dataset's images
};

// Base of every component a plugin makes. Its key function lives in the framework library,
// so host and plugins share one typeinfo and dynamic_cast works across libraries.
class BOOST_SYMBOL_VISIBLE Component {
 public:
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

// Read by the host before anything else in a plugin library. A mismatch means the library was
// built against another difflab or LibTorch and must not be called.
constexpr uint32_t kAbiMagic = 0xD1FF1AB0u;
struct AbiRecord {
  uint32_t magic;
  uint32_t abi_version;
  uint32_t torch_major;
  uint32_t torch_minor;
  uint32_t cxx11_abi;
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

#ifndef DIFFLAB_PLUGIN_ABI_VERSION
#define DIFFLAB_PLUGIN_ABI_VERSION DIFFLAB_ABI_VERSION
#endif

// Exports one component class from a plugin library:
//   DIFFLAB_PLUGIN(schedule, "cosine", CosineSchedule, "1.0.0", "The seed's cosine schedule")
// CLASS needs a constructor (const Params&, const BuildContext&), a static `ParamSchema schema()`
// and, optionally, a static `ParamIssue validate(const Params&)` for cross-field checks.
// The record states the LibTorch the plugin itself was compiled against (<torch/version.h>), so
// that a plugin built against another LibTorch than the host's is refused, not crashed into.
#define DIFFLAB_PLUGIN(FAMILY, NAME, CLASS, VERSION, DESCRIPTION)                              \
  extern "C" BOOST_SYMBOL_EXPORT const ::difflab::AbiRecord difflab_abi_record = {             \
      ::difflab::kAbiMagic, DIFFLAB_PLUGIN_ABI_VERSION, TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, \
      _GLIBCXX_USE_CXX11_ABI};                                                                 \
  extern "C" BOOST_SYMBOL_EXPORT const ::difflab::PluginInfo* difflab_plugin_info() {          \
    static const ::difflab::PluginInfo info{                                                   \
        ::difflab::Family::FAMILY,                                                             \
        NAME,                                                                                  \
        VERSION,                                                                               \
        DESCRIPTION,                                                                           \
        CLASS::schema(),                                                                       \
        [](const ::difflab::Params& params,                                                    \
           const ::difflab::BuildContext& context) -> ::difflab::Component* {                  \
          return new CLASS(params, context);                                                   \
        },                                                                                     \
        ::difflab::detail::validator_of<CLASS>()};                                             \
    return &info;                                                                              \
  }
