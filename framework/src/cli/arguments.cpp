#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fmt/format.h>
#include <sstream>
#include <unistd.h>

#include "cli/command.h"
#include "difflab/error.h"
#include "process/stop_request.h"

namespace difflab {

Command& CommandTable::add(std::string name, std::string arguments, std::string summary,
                           std::vector<std::string> positionals, size_t required,
                           std::function<int(const po::variables_map&)> run) {
  commands_.push_back({std::move(name), std::move(arguments), std::move(summary), std::move(positionals), required,
                       po::options_description("options"), po::options_description(), std::move(run)});
  return commands_.back();
}

void add_set_option(po::options_description& options) {
  options.add_options()("set", po::value<std::vector<std::string>>()->composing()->value_name("KEY=VALUE"),
                        "override one key of the experiment, TOML value syntax (repeatable): "
                        "--set training.epochs=3 --set loss.plugin=mse");
}

std::string text(const po::variables_map& values, const std::string& name, const std::string& otherwise) {
  return values.count(name) ? values[name].as<std::string>() : otherwise;
}
int64_t integer(const po::variables_map& values, const std::string& name, int64_t at_least) {
  const int64_t value = values[name].as<int64_t>();
  if (value < at_least) throw ConfigError(fmt::format("--{} must be at least {}", name, at_least));
  return value;
}
bool flag(const po::variables_map& values, const std::string& name) { return values[name].as<bool>(); }
std::vector<std::string> overrides(const po::variables_map& values) {
  return values.count("set") ? values["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
}

std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream keys(text);
  for (std::string key; std::getline(keys, key, ',');)
    if (!key.empty()) items.push_back(key);
  return items;
}

std::vector<std::string>& command_line() {
  static std::vector<std::string> words;
  return words;
}

std::vector<std::string> command_line_without(const std::string& name, const std::vector<std::string>& extra) {
  std::vector<std::string> words;
  const std::vector<std::string>& all = command_line();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i] == "--" + name) {
      ++i;
      continue;
    }
    if (all[i].rfind("--" + name + "=", 0) == 0) continue;
    words.push_back(all[i]);
  }
  words.insert(words.end(), extra.begin(), extra.end());
  return words;
}

namespace {

bool hook_rank_matches() {
  const char* only = std::getenv("DIFFLAB_TEST_HOOK_RANK");
  if (only == nullptr) return true;
  const char* rank = std::getenv("RANK");
  return std::string(only) == (rank != nullptr ? rank : "0");
}

std::function<void(int64_t)> signal_hook(const char* variable) {
  const char* hook = std::getenv(variable);
  if (hook == nullptr || !hook_rank_matches()) return {};
  int64_t hook_at = 0, hook_signal = 0;
  char once[4096] = {};
  const int fields = std::sscanf(hook, "%ld %ld %4095s", &hook_at, &hook_signal, once);
  if (fields < 2) return {};
  const std::string once_file = fields >= 3 ? once : "";
  return [=](int64_t at) {
    if (at != hook_at) return;
    if (!once_file.empty() && open(once_file.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644) < 0) return;
    std::raise(static_cast<int>(hook_signal));
  };
}

}  // namespace

std::function<void(int64_t)> after_epoch_from_environment() { return signal_hook("DIFFLAB_TEST_SIGNAL_AFTER_EPOCH"); }

std::function<void(int64_t)> after_step_from_environment() {
  std::function<void(int64_t)> raise = signal_hook("DIFFLAB_TEST_SIGNAL_AFTER_STEP");
  const char* pause = hook_rank_matches() ? std::getenv("DIFFLAB_TEST_PAUSE_AFTER_STEP") : nullptr;
  int64_t pause_at = 0;
  char file[4096] = {};
  if (pause == nullptr || std::sscanf(pause, "%ld %4095s", &pause_at, file) != 2) return raise;
  const std::string marker = file;
  return [=](int64_t step) {
    if (raise) raise(step);
    if (step != pause_at) return;
    const int created = open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (created < 0) return;
    const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
    const std::string text = std::string(task != nullptr ? task : "-") + "\n";
    if (write(created, text.data(), text.size()) < 0) std::perror("difflab: test pause marker");
    close(created);
    for (int i = 0; i < 1200 && !StopRequest::requested(); ++i) usleep(100000);
  };
}

}  // namespace difflab
