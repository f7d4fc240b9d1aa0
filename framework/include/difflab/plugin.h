// The one header a plugin source includes besides its family's: DIFFLAB_PLUGIN, the macro that
// exports a component class, and the ABI record the host reads before calling anything.
//
// The record is plain data. Besides the LibTorch version, it carries one fingerprint per struct
// that crosses the boundary (size, alignment, every member's offset and size), computed at
// compile time from the headers this plugin was compiled against, and every family interface's
// version. The host compares them with its own and refuses a plugin whose layouts differ, naming
// the structs, before any of the plugin's code runs (like LLVM's llvmGetPassPluginInfo record and
// the Linux kernel's modversions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <torch/version.h>

#include "difflab/component.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/export.h"
#include "difflab/features.h"
#include "difflab/loss.h"
#include "difflab/network.h"
#include "difflab/parameterisation.h"
#include "difflab/params.h"
#include "difflab/precision.h"
#include "difflab/sampler.h"
#include "difflab/schedule.h"
#include "difflab/version.h"

namespace difflab {

constexpr uint32_t kAbiMagic = 0xD1FF1AB0u;

// One struct (or interface) as a plugin saw it.
struct LayoutFingerprint {
  const char* name;      // "ImageSplits", "Loss (interface)"
  uint64_t fingerprint;  // FNV-1a of the struct's size, alignment, members' offsets and sizes
};

// The first five fields never move: the host reads magic and abi_version (the version of this
// record's own format) before anything else.
struct AbiRecord {
  uint32_t magic;
  uint32_t abi_version;
  uint32_t torch_major;
  uint32_t torch_minor;
  uint32_t cxx11_abi;
  uint32_t layout_count;
  const LayoutFingerprint* layouts;
};

namespace abi {

// FNV-1a 64 over the little-endian bytes of each value: the same at compile time everywhere.
template <size_t N>
constexpr uint64_t fingerprint(const uint64_t (&values)[N]) {
  uint64_t hash = 1469598103934665603ull;
  for (uint64_t value : values)
    for (int byte = 0; byte < 8; ++byte) {
      hash ^= (value >> (8 * byte)) & 0xFFu;
      hash *= 1099511628211ull;
    }
  return hash;
}

}  // namespace abi
}  // namespace difflab

// offsetof on structs with std::string or tensor members: GCC and Clang compute it exactly, but
// warn that the standard leaves non-standard-layout types to the implementation.
#define DIFFLAB_FIELD(TYPE, MEMBER) offsetof(TYPE, MEMBER), sizeof(static_cast<TYPE*>(nullptr)->MEMBER)
#define DIFFLAB_LAYOUT(TYPE, ...) \
  ::difflab::LayoutFingerprint { #TYPE, ::difflab::abi::fingerprint({sizeof(TYPE), alignof(TYPE), __VA_ARGS__}) }
#define DIFFLAB_INTERFACE(TYPE) \
  ::difflab::LayoutFingerprint { #TYPE " (interface)", ::difflab::abi::fingerprint({sizeof(TYPE), TYPE::interface_version}) }

namespace difflab::abi {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
// Every struct passed between host and plugin, as this translation unit sees it. A class with
// private members (Params, Error) contributes its size and alignment. Add a struct here when it
// starts crossing the boundary; its fingerprint does the rest.
inline constexpr LayoutFingerprint kLayouts[] = {
    DIFFLAB_LAYOUT(AbiRecord, DIFFLAB_FIELD(AbiRecord, layout_count), DIFFLAB_FIELD(AbiRecord, layouts)),
    DIFFLAB_LAYOUT(PluginInfo, DIFFLAB_FIELD(PluginInfo, family), DIFFLAB_FIELD(PluginInfo, name),
                   DIFFLAB_FIELD(PluginInfo, version), DIFFLAB_FIELD(PluginInfo, description),
                   DIFFLAB_FIELD(PluginInfo, schema), DIFFLAB_FIELD(PluginInfo, create),
                   DIFFLAB_FIELD(PluginInfo, validate)),
    DIFFLAB_LAYOUT(ParamSpec, DIFFLAB_FIELD(ParamSpec, name), DIFFLAB_FIELD(ParamSpec, type),
                   DIFFLAB_FIELD(ParamSpec, default_value), DIFFLAB_FIELD(ParamSpec, doc),
                   DIFFLAB_FIELD(ParamSpec, min), DIFFLAB_FIELD(ParamSpec, max),
                   DIFFLAB_FIELD(ParamSpec, min_exclusive), DIFFLAB_FIELD(ParamSpec, max_exclusive),
                   DIFFLAB_FIELD(ParamSpec, choices), DIFFLAB_FIELD(ParamSpec, path),
                   DIFFLAB_FIELD(ParamSpec, min_length)),
    DIFFLAB_LAYOUT(ParamValue, std::variant_size_v<ParamValue>),
    DIFFLAB_LAYOUT(Params, 0),
    DIFFLAB_LAYOUT(ParamIssue, DIFFLAB_FIELD(ParamIssue, key), DIFFLAB_FIELD(ParamIssue, message)),
    DIFFLAB_LAYOUT(BuildContext, DIFFLAB_FIELD(BuildContext, image_size),
                   DIFFLAB_FIELD(BuildContext, image_channels)),
    DIFFLAB_LAYOUT(ErrorContext, DIFFLAB_FIELD(ErrorContext, file), DIFFLAB_FIELD(ErrorContext, line),
                   DIFFLAB_FIELD(ErrorContext, column), DIFFLAB_FIELD(ErrorContext, key),
                   DIFFLAB_FIELD(ErrorContext, hint)),
    DIFFLAB_LAYOUT(Error, 0),
    DIFFLAB_LAYOUT(ImageSplits, DIFFLAB_FIELD(ImageSplits, train), DIFFLAB_FIELD(ImageSplits, validation),
                   DIFFLAB_FIELD(ImageSplits, repetitions), DIFFLAB_FIELD(ImageSplits, train_labels),
                   DIFFLAB_FIELD(ImageSplits, validation_labels)),
    DIFFLAB_LAYOUT(SplitCounts, DIFFLAB_FIELD(SplitCounts, train), DIFFLAB_FIELD(SplitCounts, validation)),
    DIFFLAB_LAYOUT(Rates, DIFFLAB_FIELD(Rates, noise_rates), DIFFLAB_FIELD(Rates, signal_rates)),
    DIFFLAB_LAYOUT(NoisePowerEnds, DIFFLAB_FIELD(NoisePowerEnds, start), DIFFLAB_FIELD(NoisePowerEnds, end)),
    DIFFLAB_LAYOUT(Denoised, DIFFLAB_FIELD(Denoised, pred_noises), DIFFLAB_FIELD(Denoised, pred_images)),
    DIFFLAB_LAYOUT(Denoiser, 0),
    DIFFLAB_LAYOUT(DdimStep, DIFFLAB_FIELD(DdimStep, pred_images), DIFFLAB_FIELD(DdimStep, next_noisy_images)),
    DIFFLAB_LAYOUT(Decomposition, DIFFLAB_FIELD(Decomposition, noises), DIFFLAB_FIELD(Decomposition, images),
                   DIFFLAB_FIELD(Decomposition, velocities)),
    DIFFLAB_LAYOUT(BlockInput, DIFFLAB_FIELD(BlockInput, normalised), DIFFLAB_FIELD(BlockInput, residual)),
    DIFFLAB_INTERFACE(Component),
    DIFFLAB_INTERFACE(Schedule),
    DIFFLAB_INTERFACE(Loss),
    DIFFLAB_INTERFACE(Sampler),
    DIFFLAB_INTERFACE(Network),
    DIFFLAB_INTERFACE(Dataset),
    DIFFLAB_INTERFACE(FeatureExtractor),
};
#pragma GCC diagnostic pop
inline constexpr uint32_t kLayoutCount = sizeof(kLayouts) / sizeof(kLayouts[0]);

}  // namespace difflab::abi

#ifndef DIFFLAB_PLUGIN_ABI_VERSION
#define DIFFLAB_PLUGIN_ABI_VERSION DIFFLAB_ABI_VERSION
#endif

// Exports one component class from a plugin library:
//   DIFFLAB_PLUGIN(schedule, "cosine", CosineSchedule, "1.0.0", "The seed's cosine schedule")
// CLASS needs a constructor (const Params&, const BuildContext&), a static `ParamSchema schema()`
// and, optionally, a static `ParamIssue validate(const Params&)` for cross-field checks.
// The record states the LibTorch the plugin itself was compiled against (<torch/version.h>), so
// that a plugin built against another LibTorch than the host's is refused, not crashed into.
#define DIFFLAB_PLUGIN(FAMILY, NAME, CLASS, VERSION, DESCRIPTION)                               \
  extern "C" DIFFLAB_API const ::difflab::AbiRecord difflab_abi_record = {                      \
      ::difflab::kAbiMagic,        DIFFLAB_PLUGIN_ABI_VERSION, TORCH_VERSION_MAJOR,              \
      TORCH_VERSION_MINOR,         _GLIBCXX_USE_CXX11_ABI,     ::difflab::abi::kLayoutCount,     \
      ::difflab::abi::kLayouts};                                                                \
  extern "C" DIFFLAB_API const ::difflab::PluginInfo* difflab_plugin_info() {                   \
    static const ::difflab::PluginInfo info{                                                    \
        ::difflab::Family::FAMILY,                                                              \
        NAME,                                                                                   \
        VERSION,                                                                                \
        DESCRIPTION,                                                                            \
        CLASS::schema(),                                                                        \
        [](const ::difflab::Params& params,                                                     \
           const ::difflab::BuildContext& context) -> ::difflab::Component* {                   \
          return new CLASS(params, context);                                                    \
        },                                                                                      \
        ::difflab::detail::validator_of<CLASS>()};                                              \
    return &info;                                                                               \
  }
