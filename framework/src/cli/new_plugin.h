// `difflab new-plugin FAMILY NAME [DIR]`: a buildable out-of-tree plugin project — CMakeLists.txt
// (find_package(difflab), difflab_add_plugin), the plugin's source, a GoogleTest test that loads
// it like difflab does, a tiny experiment that uses it, and a README.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace difflab {

// Writes the project into `dir` (created; it must not hold files yet); returns the files written.
// Throws a config Error for an unknown family, a malformed name or a non-empty folder.
std::vector<std::filesystem::path> write_plugin_project(const std::string& family, const std::string& name,
                                                        const std::filesystem::path& dir);

}  // namespace difflab
