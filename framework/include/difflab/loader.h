// Loading one plugin library the way difflab does, for the host's registry and for a plugin's own
// tests: the ABI record is read and checked (magic number, record version, LibTorch, every struct
// layout and interface version) before any of the library's code runs. Libraries stay loaded for
// the life of the process (LibTorch's registries crash on unload).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "difflab/component.h"
#include "difflab/export.h"

namespace difflab {

struct AbiRecord;  // difflab/plugin.h: this header stays free of LibTorch for the host's sake

// The plugin's metadata, or a runtime Error naming the file and why it was refused (no ABI
// record, wrong magic, record version, LibTorch version, or the structs whose layouts differ).
// Loading the same file again returns the same info.
DIFFLAB_API const PluginInfo& load_plugin_library(const std::filesystem::path& file);

// The names of the layouts in `record` that differ from this SDK's (or that one side lacks), in
// this SDK's order: e.g. {"ImageSplits"}. Empty when the plugin was built against these headers.
DIFFLAB_API std::vector<std::string> layout_differences(const AbiRecord& record);

// The file of the SDK library this code runs in: installed plugins live beside it, in
// difflab/plugins.
DIFFLAB_API std::filesystem::path sdk_library_file();

}  // namespace difflab
