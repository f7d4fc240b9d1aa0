#include "difflab/registry.h"

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstdlib>
#include <dlfcn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <mutex>

#include "difflab/version.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// Every library ever loaded, by canonical path. Never unloaded: objects and LibTorch operator
// registrations made by a plugin must not outlive its code.
std::map<fs::path, std::pair<boost::dll::shared_library, const PluginInfo*>>& loaded_libraries() {
  static std::map<fs::path, std::pair<boost::dll::shared_library, const PluginInfo*>> libraries;
  return libraries;
}
std::mutex loaded_libraries_mutex;

bool is_shared_library(const fs::path& path) { return path.extension() == ".so"; }

}  // namespace

const PluginInfo* load_plugin_library(const fs::path& file) {
  std::lock_guard<std::mutex> lock(loaded_libraries_mutex);
  fs::path canonical = fs::weakly_canonical(file);
  auto& libraries = loaded_libraries();
  if (auto it = libraries.find(canonical); it != libraries.end()) return it->second.second;

  boost::dll::shared_library library;
  boost::dll::fs::error_code error;
  library.load(canonical.string(), boost::dll::load_mode::default_mode, error);
  if (error) throw RuntimeError("cannot load library: " + error.message(), {file.string(), 0, 0, "", ""});
  if (!library.has("difflab_abi_record"))
    throw RuntimeError("not a difflab plugin (no difflab_abi_record symbol)", {file.string(), 0, 0, "", ""});

  // The ABI record is plain data: reading it calls no code of the library.
  const auto& abi = library.get<const AbiRecord>("difflab_abi_record");
  if (abi.magic != kAbiMagic)
    throw RuntimeError("corrupt ABI record (wrong magic number)", {file.string(), 0, 0, "", ""});
  if (abi.abi_version != DIFFLAB_ABI_VERSION)
    throw RuntimeError(fmt::format("plugin ABI version {} does not match difflab's {}",
                                   abi.abi_version, DIFFLAB_ABI_VERSION),
                       {file.string(), 0, 0, "", "rebuild the plugin against this difflab"});
  if (abi.torch_major != DIFFLAB_TORCH_MAJOR || abi.torch_minor != DIFFLAB_TORCH_MINOR ||
      abi.cxx11_abi != DIFFLAB_CXX11_ABI)
    throw RuntimeError(
        fmt::format("plugin built against LibTorch {}.{} (cxx11 ABI {}), difflab uses {}.{} ({})",
                    abi.torch_major, abi.torch_minor, abi.cxx11_abi, DIFFLAB_TORCH_MAJOR,
                    DIFFLAB_TORCH_MINOR, DIFFLAB_CXX11_ABI),
        {file.string(), 0, 0, "", "rebuild the plugin against the same LibTorch"});
  if (!library.has("difflab_plugin_info"))
    throw RuntimeError("plugin has an ABI record but no difflab_plugin_info", {file.string(), 0, 0, "", ""});

  const PluginInfo* info = library.get<const PluginInfo*()>("difflab_plugin_info")();
  libraries.emplace(canonical, std::make_pair(std::move(library), info));
  return info;
}

namespace {
// <libdir>/difflab/plugins next to the libdifflab.so this code runs from: right wherever the
// package was installed (cmake --install --prefix anywhere), not only where it was configured.
fs::path installed_plugin_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&installed_plugin_dir), &info) == 0 || info.dli_fname == nullptr)
    return DIFFLAB_INSTALL_PLUGIN_DIR;
  return fs::path(info.dli_fname).parent_path() / "difflab" / "plugins";
}
}  // namespace

std::vector<fs::path> PluginRegistry::default_search_dirs() {
  std::vector<fs::path> dirs = {DIFFLAB_BUILD_PLUGIN_DIR, installed_plugin_dir()};
  if (const char* env = std::getenv("DIFFLAB_PLUGIN_PATH")) {
    std::string paths = env;
    size_t start = 0;
    while (start <= paths.size()) {
      size_t end = paths.find(':', start);
      if (end == std::string::npos) end = paths.size();
      if (end > start) dirs.emplace_back(paths.substr(start, end - start));
      start = end + 1;
    }
  }
  return dirs;
}

PluginRegistry::PluginRegistry(std::vector<fs::path> search_dirs) {
  for (const auto& dir : search_dirs) add_search_dir(dir);
}

void PluginRegistry::add_search_dir(const fs::path& dir) {
  for (const auto& known : search_dirs_)
    if (known == dir) return;
  search_dirs_.push_back(dir);
  scan(dir);
}

void PluginRegistry::scan(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) return;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, error))
    if (entry.is_regular_file() && is_shared_library(entry.path())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) load(file);
}

void PluginRegistry::load(const fs::path& file) {
  const PluginInfo* info = nullptr;
  try {
    info = load_plugin_library(file);
  } catch (const Error& error) {
    rejected_.push_back({file, error.message() +
                                   (error.context().hint.empty() ? "" : " (" + error.context().hint + ")")});
    return;
  }
  for (auto& plugin : plugins_) {
    if (plugin.info->family == info->family && plugin.info->name == info->name) {
      plugin = {info, file};  // later folders take precedence
      return;
    }
  }
  plugins_.push_back({info, file});
}

const PluginInfo* PluginRegistry::find(Family family, const std::string& name) const {
  for (const auto& plugin : plugins_)
    if (plugin.info->family == family && plugin.info->name == name) return plugin.info;
  return nullptr;
}

const PluginInfo& PluginRegistry::get(Family family, const std::string& name,
                                      const ErrorContext& context) const {
  if (const PluginInfo* info = find(family, name)) return *info;
  std::vector<std::string> names;
  for (const auto& plugin : list(family)) names.push_back(plugin.info->name);
  ErrorContext with_hint = context;
  std::string available = names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
  std::string nearest = nearest_name(name, names);
  with_hint.hint = "available " + std::string(to_string(family)) + " plugins: " + available;
  if (!nearest.empty()) with_hint.hint = "did you mean \"" + nearest + "\"? " + with_hint.hint;
  for (const auto& rejected : rejected_)
    with_hint.hint += "\n  note: refused " + rejected.path.string() + ": " + rejected.reason;
  throw ConfigError(fmt::format("unknown {} plugin \"{}\"", to_string(family), name), with_hint);
}

std::vector<LoadedPlugin> PluginRegistry::list(Family family) const {
  std::vector<LoadedPlugin> result;
  for (const auto& plugin : plugins_)
    if (plugin.info->family == family) result.push_back(plugin);
  std::sort(result.begin(), result.end(),
            [](const auto& a, const auto& b) { return a.info->name < b.info->name; });
  return result;
}

}  // namespace difflab
