// Loads the plugin the way difflab does (its .so from the build folder, ABI record and struct
// layouts checked first) and checks what it does.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "difflab/@FAMILY@.h"
#include "difflab/plugin_test.h"

using namespace difflab;

namespace {
// The plugin with every parameter at its default (or as given).
template <class T>
std::shared_ptr<T> make(const Params& given = {}, BuildContext context = {/*image_size=*/16, /*image_channels=*/1}) {
  return plugin_test::make<T>(PLUGIN_LIBRARY, given, context);
}
}  // namespace
