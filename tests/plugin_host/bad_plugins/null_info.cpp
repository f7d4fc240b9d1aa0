// A library with a valid ABI record whose metadata function returns null: refused, not called
// into (a null PluginInfo used to crash the host).
#include <torch/version.h>

#include "difflab/plugin.h"

extern "C" DIFFLAB_API const ::difflab::AbiRecord difflab_abi_record = {
    ::difflab::kAbiMagic,  DIFFLAB_ABI_VERSION,           TORCH_VERSION_MAJOR,       TORCH_VERSION_MINOR,
    _GLIBCXX_USE_CXX11_ABI, ::difflab::abi::kLayoutCount, ::difflab::abi::kLayouts};
extern "C" DIFFLAB_API const ::difflab::PluginInfo* difflab_plugin_info() { return nullptr; }
