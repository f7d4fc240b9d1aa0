#include "plugin_host/registry.h"

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>

#include "difflab/loader.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

bool is_shared_library(const fs::path& path) { return path.extension() == ".so"; }

// The plugin folder that belongs to the SDK library this process uses: the build's plugins/ when
// it is the build tree's, else <libdir>/difflab/plugins beside it, wherever the package was
// installed (cmake --install --prefix anywhere). Never both: an installed difflab does not also
// load the plugins of the tree it was built in.
fs::path own_plugin_dir() {
  const fs::path sdk = sdk_library_file();
  if (sdk.empty()) return DIFFLAB_INSTALL_PLUGIN_DIR;
  std::error_code error;
  if (fs::equivalent(sdk.parent_path(), DIFFLAB_BUILD_LIB_DIR, error)) return DIFFLAB_BUILD_PLUGIN_DIR;
  return sdk.parent_path() / "difflab" / "plugins";
}
}  // namespace

std::vector<fs::path> PluginRegistry::default_search_dirs() {
  std::vector<fs::path> dirs = {own_plugin_dir()};
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
    info = &load_plugin_library(file);
  } catch (const Error& error) {
    rejected_.push_back({file, error.message() +
                                   (error.context().hint.empty() ? "" : " (" + error.context().hint + ")")});
    return;
  }
  for (auto& plugin : plugins_) {
    if (plugin.info->family == info->family && plugin.info->name == info->name) {
      // Later folders take precedence; say so, naming both files.
      warnings_.push_back(fmt::format("{} plugin \"{}\" of {} replaces the one of {} (a later plugin folder wins)",
                                      to_string(info->family), info->name, file.string(), plugin.path.string()));
      fmt::print(stderr, "difflab: warning: {}\n", warnings_.back());
      plugin = {info, file};
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

Error in_plugin(const Error& error, Family family, const std::string& name) {
  ErrorContext context = error.context();
  const std::string section = family == Family::dataset ? "data" : to_string(family);
  if (!context.key.empty() && context.key.find('.') == std::string::npos) context.key = section + "." + context.key;
  return Error(error.kind(), fmt::format("{} plugin \"{}\": {}", to_string(family), name, error.message()), context);
}

}  // namespace difflab
