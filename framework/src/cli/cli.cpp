// The command line: the table of commands (each group's in its own file, one small function per
// command), parsing, help, and the exit codes.
#include "cli/cli.h"

#include <csignal>
#include <cstdio>
#include <fmt/format.h>
#include <iostream>
#include <sstream>
#include <torch/version.h>

#include "cli/command.h"
#include "difflab/error.h"
#include "difflab/params.h"
#include "difflab/version.h"

namespace difflab {
namespace {

int command_help(const po::variables_map& values);

// The commands, in the order `difflab --help` lists them.
const std::vector<Command>& commands() {
  static const CommandTable table = [] {
    CommandTable all;
    add_train_commands(all);
    add_plugin_commands(all);
    add_results_commands(all);
    add_cluster_commands(all);
    all.add("help", "[COMMAND]", "this list, or a command's options", {"COMMAND"}, 0, command_help).variadic = true;
    return all;
  }();
  return table.all();
}

const Command* find_command(const std::string& name) {
  for (const auto& command : commands())
    if (command.name == name) return &command;
  return nullptr;
}

std::string help_text(const Command& command) {
  std::ostringstream text;
  text << "usage: difflab " << command.name << (command.arguments.empty() ? "" : " " + command.arguments)
       << (command.options.options().empty() ? "" : " [OPTIONS]") << "\n\n"
       << command.summary << "\n";
  if (!command.options.options().empty()) text << "\n" << command.options;
  return text.str();
}

std::string usage() {
  std::string text = "usage: difflab COMMAND [ARGUMENTS] [OPTIONS]\n\ncommands:\n";
  for (const auto& command : commands()) {
    // The summary wrapped to 100 columns, in a column of its own.
    std::string line = fmt::format("  {:<30}", command.name + " " + command.arguments);
    if (line.size() > 31) {
      text += line + "\n";
      line = std::string(32, ' ');
    }
    std::istringstream words(command.summary);
    for (std::string word; words >> word;) {
      if (line.size() + 1 + word.size() > 100) {
        text += line + "\n";
        line = std::string(32, ' ');
      }
      line += (line.size() == 32 ? "" : " ") + word;
    }
    text += line + "\n";
  }
  text += R"(
  difflab help COMMAND (or difflab COMMAND --help) lists a command's options.

options:
  --help       show this message
  --version    print the version of difflab and LibTorch

Plugins are searched in the build's and the installed plugin folder, then in DIFFLAB_PLUGIN_PATH
(colon-separated) and in the experiment's [experiment] plugin_paths.
)";
  return text;
}

// Parses argv[2..] against `command`'s arguments and options.
po::variables_map parse(const Command& command, int argc, char** argv) {
  po::options_description all;
  all.add(command.options).add(command.hidden);
  po::options_description arguments;
  arguments.add_options()("argument", po::value<std::vector<std::string>>()->composing());
  all.add(arguments);
  po::positional_options_description positional;
  positional.add("argument", -1);
  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc - 1, argv + 1).options(all).positional(positional).run(), values);
  } catch (const po::error& error) {
    throw ConfigError(fmt::format("difflab {}: {}", command.name, error.what()),
                      ErrorContext::with_hint("difflab help " + command.name + " lists its options"));
  }
  const auto given = values.count("argument") ? values["argument"].as<std::vector<std::string>>()
                                              : std::vector<std::string>{};
  if (given.size() > command.positionals.size() && !command.variadic)
    throw ConfigError("unexpected argument \"" + given[command.positionals.size()] + "\"",
                      ErrorContext::with_hint("usage: difflab " + command.name + " " + command.arguments));
  if (given.size() < command.required)
    throw ConfigError(fmt::format("difflab {}: missing {}", command.name, command.positionals[given.size()]),
                      ErrorContext::with_hint("usage: difflab " + command.name + " " + command.arguments));
  for (size_t i = 0; i < given.size() && i < command.positionals.size(); ++i)
    values.insert({command.positionals[i], po::variable_value(given[i], false)});
  po::notify(values);
  return values;
}

int command_help(const po::variables_map& values) {
  std::string name;  // one word, or two (help slurm collect)
  if (values.count("argument"))
    for (const auto& word : values["argument"].as<std::vector<std::string>>()) name += (name.empty() ? "" : " ") + word;
  if (name.empty()) {
    std::cout << usage();
    return 0;
  }
  const Command* command = find_command(name);
  if (command == nullptr) throw ConfigError("unknown command \"" + name + "\"", ErrorContext::with_hint("see difflab --help"));
  std::cout << help_text(*command);
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  command_line().assign(argv + 1, argv + argc);
  // A file-size limit (ulimit -f) then makes a write fail with EFBIG, which closes the run as
  // failed naming the file, instead of killing the process with SIGXFSZ.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    if (argc < 2) {
      std::cerr << usage();
      return 2;
    }
    const std::string first = argv[1];
    if (first == "--help" || first == "-h") {
      std::cout << usage();
      return 0;
    }
    if (first == "--version") {
      fmt::print("difflab {} (LibTorch {})\n", DIFFLAB_VERSION, TORCH_VERSION);
      return 0;
    }
    // Two-word commands: difflab slurm collect FOLDER, difflab results merge DB SHARD...
    if (argc >= 3) {
      if (const Command* two = find_command(first + " " + argv[2])) {
        for (int i = 3; i < argc; ++i)
          if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
            std::cout << help_text(*two);
            return 0;
          }
        return two->run(parse(*two, argc - 1, argv + 1));
      }
    }
    const Command* command = find_command(first);
    if (command == nullptr) {
      std::vector<std::string> names;
      for (const auto& known : commands()) names.push_back(known.name);
      const std::string nearest = nearest_name(first, names);
      throw ConfigError("unknown command \"" + first + "\"",
                        ErrorContext::with_hint(nearest.empty() ? "see difflab --help" : "did you mean \"" + nearest + "\"?"));
    }
    for (int i = 2; i < argc; ++i)
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::cout << help_text(*command);
        return 0;
      }
    return command->run(parse(*command, argc, argv));
  } catch (const Error& error) {
    fmt::print(stderr, "difflab: error: {}\n", error.what());
    return error.exit_code();
  } catch (const po::error& error) {
    fmt::print(stderr, "difflab: error: {}\n  hint: see difflab --help\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    fmt::print(stderr, "difflab: error: {}\n", describe(error));
    return 1;
  }
}

}  // namespace difflab
