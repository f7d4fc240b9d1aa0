// What every command of the command line is made of: its table entry (arguments, options, what
// it runs), the accessors of its parsed values, and the test seams. Each group of commands
// (train_commands.cpp, results_commands.cpp, cluster_commands.cpp, plugin_commands.cpp) adds its
// entries with one small function per command, beside what the command does.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace difflab {
namespace po = boost::program_options;

// One command: its positional arguments and options (Boost.Program_options), and what it does.
// An option that a command does not take is an error naming the command, with a hint.
struct Command {
  std::string name;
  std::string arguments;                // "FILE", "DIR_A DIR_B", "FAMILY NAME [DIR]"
  std::string summary;                  // one line for `difflab --help`
  std::vector<std::string> positionals; // names of the positional arguments, in order
  size_t required = 0;                  // how many of them must be given
  po::options_description options;      // the options, with their documentation
  po::options_description hidden;       // internal options (a sweep worker's --worker)
  std::function<int(const po::variables_map&)> run;
  bool variadic = false;                // the last positional takes any number of values
};

// The commands, in the order `difflab --help` lists them.
class CommandTable {
 public:
  Command& add(std::string name, std::string arguments, std::string summary, std::vector<std::string> positionals,
               size_t required, std::function<int(const po::variables_map&)> run);
  const std::vector<Command>& all() const { return commands_; }

 private:
  std::vector<Command> commands_;
};

void add_train_commands(CommandTable& table);    // run, check, bench
void add_plugin_commands(CommandTable& table);   // plugins, new-plugin
void add_results_commands(CommandTable& table);  // sample, results, report, results merge, kid
void add_cluster_commands(CommandTable& table);  // slurm, k8s, sweep task|collect|status|cancel

// --set KEY=VALUE (repeatable).
void add_set_option(po::options_description& options);
std::string text(const po::variables_map& values, const std::string& name, const std::string& otherwise = {});
// An integer option, at least `at_least` (a config Error naming the option otherwise).
int64_t integer(const po::variables_map& values, const std::string& name, int64_t at_least);
bool flag(const po::variables_map& values, const std::string& name);
std::vector<std::string> overrides(const po::variables_map& values);
// "a,b,c" -> {"a", "b", "c"} (--group-by).
std::vector<std::string> comma_list(const std::string& text);

// This process's command line (argv[1], ...): what --nproc starts again in each rank.
std::vector<std::string>& command_line();
// The command line without `--name VALUE` (or --name=VALUE), with `extra` added.
std::vector<std::string> command_line_without(const std::string& name, const std::vector<std::string>& extra);

// The test seams of the command line:
// - DIFFLAB_TEST_SIGNAL_AFTER_EPOCH="EPOCH SIGNAL [ONCE_FILE]" raises SIGNAL right after that
//   epoch's checkpoint (9: a power cut; 15: an interrupt, noticed at the next step); with
//   ONCE_FILE, only in the process that creates that file first.
// - DIFFLAB_TEST_SIGNAL_AFTER_STEP="STEP SIGNAL [ONCE_FILE]": the same after an optimiser step
//   (a signal inside an epoch).
// - DIFFLAB_TEST_PAUSE_AFTER_STEP="STEP FILE": after that step, the process that creates FILE
//   first writes SLURM_ARRAY_TASK_ID (or "-") into it and waits (at most 120 s) for a signal, so
//   that a test can send one at a known step (a Slurm preemption); other processes go on.
// The trainer only sees RunOptions::after_epoch and after_step.
// DIFFLAB_TEST_HOOK_RANK=R: the hooks act in rank R of a data-parallel run only.
std::function<void(int64_t)> after_epoch_from_environment();
std::function<void(int64_t)> after_step_from_environment();

// run --report FILE: the report of the run's database, rewritten after every epoch (a live view
// with --workers comes from difflab report --watch) and when the command ends (argument true). A
// report that cannot be written is a warning: it never stops a run. Empty without --report.
std::function<void(bool)> report_writer(const po::variables_map& values, const std::string& database);

// Calls a function when the scope ends, however it ends.
struct AtExit {
  std::function<void()> action;
  ~AtExit() {
    if (action) action();
  }
};

}  // namespace difflab
