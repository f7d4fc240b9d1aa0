// PluginRegistry: finds plugin libraries, checks their ABI record, and makes components.
// Libraries stay loaded for the life of the process (LibTorch's registries crash on unload).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "difflab/component.h"
#include "difflab/error.h"
#include "difflab/loader.h"

namespace difflab {

struct RejectedLibrary {
  std::filesystem::path path;
  std::string reason;
};

struct LoadedPlugin {
  const PluginInfo* info = nullptr;
  std::filesystem::path path;
};

// `error`, thrown by plugin `name` of `family` while it was made, with the plugin named in the
// message and its section in the key ("loss.scale" for a parameter "scale" the plugin asked for).
Error in_plugin(const Error& error, Family family, const std::string& name);

class PluginRegistry {
 public:
  // The plugin folder of this difflab (the build's, or the installed one) and DIFFLAB_PLUGIN_PATH
  // (colon-separated), in that order of precedence from last to first: a later folder's plugin
  // of the same family and name replaces an earlier one, with a warning.
  static std::vector<std::filesystem::path> default_search_dirs();

  explicit PluginRegistry(std::vector<std::filesystem::path> search_dirs = default_search_dirs());

  // Scans more folders (e.g. the ones an experiment lists).
  void add_search_dir(const std::filesystem::path& dir);

  // nullptr when absent.
  const PluginInfo* find(Family family, const std::string& name) const;
  // Throws a config Error listing the available plugins of the family.
  const PluginInfo& get(Family family, const std::string& name,
                        const ErrorContext& context = {}) const;
  std::vector<LoadedPlugin> list(Family family) const;
  const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
  const std::vector<RejectedLibrary>& rejected() const { return rejected_; }
  // One line per plugin that a later folder's plugin of the same family and name replaced (also
  // printed to stderr as it happens).
  const std::vector<std::string>& warnings() const { return warnings_; }
  const std::vector<std::filesystem::path>& search_dirs() const { return search_dirs_; }

  // Makes a component and checks that it is of the family's interface type T.
  template <class T>
  std::shared_ptr<T> create(Family family, const std::string& name, const Params& params,
                            const BuildContext& context) const {
    Component* component = nullptr;
    try {
      component = get(family, name).create(params, context);
    } catch (const Error& error) {
      throw in_plugin(error, family, name);
    }
    T* typed = dynamic_cast<T*>(component);
    if (typed == nullptr) {
      delete component;
      throw RuntimeError("plugin " + name + " does not implement the " + to_string(family) +
                         " interface");
    }
    return std::shared_ptr<T>(typed);
  }

 private:
  void scan(const std::filesystem::path& dir);
  void load(const std::filesystem::path& file);

  std::vector<std::filesystem::path> search_dirs_;
  std::vector<LoadedPlugin> plugins_;
  std::vector<RejectedLibrary> rejected_;
  std::vector<std::string> warnings_;
};

}  // namespace difflab
