// Running a scheduler's commands (sbatch, squeue, kubectl, ...) from a launcher.
#pragma once

#include <string>
#include <vector>

namespace difflab {

struct CommandOutput {
  int code = -1;       // the exit code; -1 when it did not start or was killed
  std::string output;  // stdout and stderr together
};

// Runs a program with these words (no shell: each word is quoted) and returns its exit code and
// output.
CommandOutput run_command(const std::vector<std::string>& words);
// A word quoted for sh.
std::string shell_quote(const std::string& word);
// The word as is when sh reads it as one word (letters, digits and _ - . / = : + , @), else quoted.
std::string shell_word(const std::string& word);
bool have_program(const std::string& name);
// This executable's path (/proc/self/exe), for the job a task runs.
std::string executable_path();

}  // namespace difflab
