// plugins, new-plugin: what plugins there are, and a new one to start from.
#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/command.h"
#include "cli/new_plugin.h"
#include "difflab/error.h"
#include "plugin_host/registry.h"

namespace difflab {
namespace {

int command_new_plugin(const po::variables_map& values) {
  const std::string family = text(values, "FAMILY"), name = text(values, "NAME");
  const std::string dir = text(values, "DIR", name);
  for (const auto& path : write_plugin_project(family, name, dir)) fmt::print("wrote {}\n", path.string());
  fmt::print("build it against the installed difflab:\n  cmake -S {0} -B {0}/build -DCMAKE_PREFIX_PATH=<prefix> && "
             "cmake --build {0}/build && ctest --test-dir {0}/build\n", dir);
  return 0;
}

int command_plugins(const po::variables_map& values) {
  const std::string only = text(values, "family");
  std::vector<std::string> names;
  for (Family family : all_families()) names.emplace_back(to_string(family));
  if (!only.empty() && std::find(names.begin(), names.end(), only) == names.end())
    throw ConfigError("unknown plugin family \"" + only + "\"",
                      ErrorContext::with_hint("families: " + fmt::format("{}", fmt::join(names, ", "))));
  PluginRegistry registry;
  for (Family family : all_families()) {
    if (!only.empty() && only != to_string(family)) continue;
    fmt::print("[{}]\n", to_string(family));
    for (const auto& plugin : registry.list(family)) {
      const PluginInfo& info = *plugin.info;
      fmt::print("  {} {} — {}\n    ({})\n", info.name, info.version, info.description,
                 plugin.path.string());
      for (const auto& spec : info.schema) {
        std::string constraint = spec.constraint_text();
        fmt::print("    {:<26} {:<18} default {:<22}{}\n      {}\n", spec.name,
                   to_string(spec.type), format_value(spec.default_value),
                   constraint.empty() ? "" : "  " + constraint, spec.doc);
      }
    }
  }
  for (const auto& rejected : registry.rejected())
    fmt::print("refused {}: {}\n", rejected.path.string(), rejected.reason);
  return 0;
}

void add_plugins(CommandTable& table) {
  Command& plugins = table.add("plugins", "", "list plugins with their parameters", {}, 0, command_plugins);
  plugins.options.add_options()("family", po::value<std::string>()->value_name("NAME"),
                                "only this family: dataset, network, schedule, loss, sampler, features");
}

void add_new_plugin(CommandTable& table) {
  table.add("new-plugin", "FAMILY NAME [DIR]", "write a buildable plugin project (CMake, source, test, example "
            "experiment) into DIR (default: NAME)", {"FAMILY", "NAME", "DIR"}, 2, command_new_plugin);
}

}  // namespace

void add_plugin_commands(CommandTable& table) {
  add_plugins(table);
  add_new_plugin(table);
}

}  // namespace difflab
