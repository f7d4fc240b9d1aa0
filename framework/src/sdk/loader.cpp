// Loading one plugin library: the ABI record first, then the plugin's metadata.
#include "difflab/loader.h"

#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <dlfcn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <mutex>

#include "difflab/plugin_test.h"
#include "difflab/version.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// Every library ever loaded, by canonical path. Never unloaded: objects and LibTorch operator
// registrations made by a plugin must not outlive its code.
struct LoadedLibrary {
  boost::dll::shared_library library;
  const PluginInfo* info;
};
std::map<fs::path, LoadedLibrary>& loaded_libraries() {
  static std::map<fs::path, LoadedLibrary> libraries;
  return libraries;
}
std::mutex loaded_libraries_mutex;

// Checks the record's fixed fields, then its layouts; throws naming what differs.
void check_abi_record(const AbiRecord& abi, const fs::path& file) {
  if (abi.magic != kAbiMagic)
    throw RuntimeError("corrupt ABI record (wrong magic number)", ErrorContext::in_file(file.string()));
  if (abi.abi_version != DIFFLAB_ABI_VERSION)
    throw RuntimeError(fmt::format("plugin ABI version {} does not match difflab's {}", abi.abi_version,
                                   DIFFLAB_ABI_VERSION),
                       ErrorContext::in_file(file.string(), "rebuild the plugin against this difflab"));
  if (abi.torch_major != DIFFLAB_TORCH_MAJOR || abi.torch_minor != DIFFLAB_TORCH_MINOR ||
      abi.cxx11_abi != DIFFLAB_CXX11_ABI)
    throw RuntimeError(fmt::format("plugin built against LibTorch {}.{} (cxx11 ABI {}), difflab uses {}.{} ({})",
                                   abi.torch_major, abi.torch_minor, abi.cxx11_abi, DIFFLAB_TORCH_MAJOR,
                                   DIFFLAB_TORCH_MINOR, DIFFLAB_CXX11_ABI),
                       ErrorContext::in_file(file.string(), "rebuild the plugin against the same LibTorch"));
  const std::vector<std::string> differences = layout_differences(abi);
  if (!differences.empty())
    throw RuntimeError(fmt::format("plugin built against other SDK headers: the layout of {} differs from "
                                   "difflab's", fmt::join(differences, ", ")),
                       ErrorContext::in_file(file.string(), "rebuild the plugin against this difflab's headers"));
}

}  // namespace

std::vector<std::string> layout_differences(const AbiRecord& record) {
  std::vector<std::string> differences;
  std::vector<bool> matched(record.layout_count, false);
  for (const LayoutFingerprint& ours : abi::kLayouts) {
    bool same = false, found = false;
    for (uint32_t i = 0; i < record.layout_count && !found; ++i) {
      if (std::strcmp(record.layouts[i].name, ours.name) != 0) continue;
      found = true;
      matched[i] = true;
      same = record.layouts[i].fingerprint == ours.fingerprint;
    }
    if (!same) differences.emplace_back(found ? ours.name : std::string(ours.name) + " (absent in the plugin)");
  }
  for (uint32_t i = 0; i < record.layout_count; ++i)
    if (!matched[i]) differences.push_back(std::string(record.layouts[i].name) + " (unknown to difflab)");
  return differences;
}

const PluginInfo& load_plugin_library(const fs::path& file) {
  std::lock_guard<std::mutex> lock(loaded_libraries_mutex);
  const fs::path canonical = fs::weakly_canonical(file);
  auto& libraries = loaded_libraries();
  if (auto it = libraries.find(canonical); it != libraries.end()) return *it->second.info;

  boost::dll::shared_library library;
  boost::dll::fs::error_code error;
  library.load(canonical.string(), boost::dll::load_mode::default_mode, error);
  if (error) throw RuntimeError("cannot load library: " + error.message(), ErrorContext::in_file(file.string()));
  if (!library.has("difflab_abi_record"))
    throw RuntimeError("not a difflab plugin (no difflab_abi_record symbol)", ErrorContext::in_file(file.string()));
  // The ABI record is plain data: reading it calls no code of the library.
  check_abi_record(library.get<const AbiRecord>("difflab_abi_record"), file);
  if (!library.has("difflab_plugin_info"))
    throw RuntimeError("plugin has an ABI record but no difflab_plugin_info", ErrorContext::in_file(file.string()));

  const PluginInfo* info = library.get<const PluginInfo*()>("difflab_plugin_info")();
  libraries.emplace(canonical, LoadedLibrary{std::move(library), info});
  return *info;
}

fs::path sdk_library_file() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&sdk_library_file), &info) == 0 || info.dli_fname == nullptr) return {};
  return fs::path(info.dli_fname);
}

Params plugin_test::with_defaults(const PluginInfo& info, const Params& given) {
  Params params;
  for (const auto& spec : info.schema) params.set(spec.name, given.has(spec.name) ? given.get(spec.name) : spec.default_value);
  for (const auto& [name, value] : given.items())
    if (!params.has(name))
      throw RuntimeError(fmt::format("plugin {} has no parameter \"{}\"", info.name, name));
  if (info.validate) {
    const ParamIssue issue = info.validate(params);
    if (!issue.key.empty()) throw RuntimeError(issue.message, ErrorContext::for_key({}, issue.key));
  }
  return params;
}

}  // namespace difflab
