// For a plugin's own tests: load its library as difflab does and make its component with the
// schema's defaults, through the SDK alone.
//   auto loss = difflab::plugin_test::make<difflab::Loss>(PLUGIN_LIBRARY);
#pragma once

#include <filesystem>
#include <memory>

#include "difflab/error.h"
#include "difflab/export.h"
#include "difflab/loader.h"

namespace difflab::plugin_test {

// `info`'s schema at its defaults, then every value of `given` (a runtime Error for a name the
// schema lacks), checked by the plugin's validate() when it has one.
DIFFLAB_API Params with_defaults(const PluginInfo& info, const Params& given = {});

// The plugin in `library` made with with_defaults(info, given), as interface T.
template <class T>
std::shared_ptr<T> make(const std::filesystem::path& library, const Params& given = {},
                        BuildContext context = {/*image_size=*/16, /*image_channels=*/1}) {
  const PluginInfo& info = load_plugin_library(library);
  Component* component = info.create(with_defaults(info, given), context);
  T* typed = dynamic_cast<T*>(component);
  if (typed == nullptr) {
    delete component;
    throw RuntimeError("plugin " + info.name + " is not of the requested interface",
                       ErrorContext::in_file(library.string()));
  }
  return std::shared_ptr<T>(typed);
}

}  // namespace difflab::plugin_test
