// `difflab new-plugin`: a buildable out-of-tree plugin project from the templates in
// framework/templates/plugin (common/ for every family, <family>/ for the plugin and its test),
// embedded in the executable at build time (cmake/embed_templates.cmake).
#include "cli/new_plugin.h"

#include <algorithm>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <string_view>
#include <utility>

#include "difflab/error.h"

namespace difflab {

// plugin_templates.cpp, generated at build time: (path under templates/plugin, contents).
const std::vector<std::pair<std::string_view, std::string_view>>& plugin_template_files();

namespace fs = std::filesystem;
namespace {

// Placeholders: @NAME@ the plugin's name, @CLASS@ its class, @FAMILY@ its family; in the example
// experiment @DATA@, @NETWORK@, @NETWORK_KEYS@ and @EXTRA@ (the family's own section).
std::string template_file(const std::string& path) {
  for (const auto& [name, text] : plugin_template_files())
    if (name == path) return std::string(text);
  throw std::logic_error("difflab: no embedded template " + path);
}

// The experiment section that names a family's plugin.
std::string section_of(const std::string& family) { return family == "dataset" ? "data" : family; }

std::string replace_all(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [key, value] : values)
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size()))
      text.replace(at, key.size(), value);
  return text;
}

std::string class_name(const std::string& name) {
  std::string result;
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    result += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return result + "Plugin";
}

}  // namespace

std::vector<fs::path> write_plugin_project(const std::string& family, const std::string& name, const fs::path& dir) {
  const std::vector<std::string> families = {"dataset", "features", "loss", "network", "sampler", "schedule"};
  if (std::find(families.begin(), families.end(), family) == families.end())
    throw ConfigError("unknown plugin family \"" + family + "\"",
                      ErrorContext::with_hint("families: dataset, features, loss, network, sampler, schedule"));
  if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0])) ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
    throw ConfigError("plugin name \"" + name + "\" must be lower-case letters, digits and _, starting with a letter");
  if (fs::exists(dir) && !fs::is_empty(dir))
    throw ConfigError("folder exists and is not empty", ErrorContext::in_file(dir.string(), "choose a new folder"));
  const bool is_data = family == "dataset", is_network = family == "network";
  std::string extra;
  if (!is_data && !is_network) extra = fmt::format("[{}]\nplugin = \"{}\"\n", section_of(family), name);
  const std::map<std::string, std::string> values = {
      {"@NAME@", name},
      {"@CLASS@", class_name(name)},
      {"@FAMILY@", family},
      {"@DATA@", is_data ? name : "synthetic"},
      {"@NETWORK@", is_network ? name : "residual_unet"},
      {"@NETWORK_KEYS@", is_network ? "width = 16" : "widths = [8, 16]\nblock_depth = 1\nembedding_dims = 8"},
      {"@EXTRA@", extra},
  };
  const std::vector<std::pair<std::string, std::string>> files = {
      {"CMakeLists.txt", template_file("common/CMakeLists.txt")},
      {name + ".cpp", template_file(family + "/plugin.cpp")},
      {"test_" + name + ".cpp", template_file("common/test_head.cpp") + "\n" + template_file(family + "/test.cpp")},
      {"experiment.toml", template_file("common/experiment.toml")},
      {"README.md", template_file("common/README.md")},
  };
  fs::create_directories(dir);
  std::vector<fs::path> written;
  for (const auto& [file, text] : files) {
    const fs::path path = dir / file;
    std::ofstream out(path);
    out << replace_all(text, values);
    if (!out) throw RuntimeError("cannot write " + path.string());
    written.push_back(path);
  }
  return written;
}

}  // namespace difflab
