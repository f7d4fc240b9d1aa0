// Shared helpers for difflab's tests: the plugin registry of the build, temporary folders,
// float64 tensors.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <gtest/gtest.h>
#include <array>
#include <chrono>
#include <cstdio>
#include <sys/wait.h>
#include <ftw.h>
#include <unistd.h>
#include <string>
#include <vector>
#include <torch/torch.h>

#include "difflab/cpu.h"
#include "plugin_host/registry.h"

namespace difflab::test {

// The build's paths, from this test executable's place (<build>/tests/) and the source folder
// that CMake wrote beside it.
inline const std::filesystem::path& test_binary_dir() {
  static const std::filesystem::path dir = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  return dir;
}
inline std::string source_dir() {
  static const std::string dir = [] {
    std::ifstream in(test_binary_dir() / "source_dir.txt");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  return dir;
}
#define DIFFLAB_TEST_SOURCE_DIR ::difflab::test::source_dir()
#define DIFFLAB_TEST_EXECUTABLE (::difflab::test::test_binary_dir().parent_path() / "bin" / "difflab").string()
#define DIFFLAB_TEST_BAD_PLUGIN_DIR (::difflab::test::test_binary_dir() / "bad_plugins").string()

// The instruction sets above baseline that difflab's loops can run at on this CPU (for tests that
// compare every level with the baseline); prints those it lacks, which are not compared.
inline std::vector<KernelIsa> higher_kernel_isas() {
  std::vector<KernelIsa> levels;
  for (KernelIsa isa : {KernelIsa::avx2, KernelIsa::avx512}) {
    if (static_cast<int>(isa) <= static_cast<int>(best_kernel_isa()))
      levels.push_back(isa);
    else
      std::printf("this CPU has no %s: not compared\n", kernel_isa_name(isa));
  }
  return levels;
}

// bf16 autocast on the CPU needs oneDNN's bf16 convolutions (AVX-512 and up); below, a test of it
// is skipped and says why.
#define DIFFLAB_SKIP_WITHOUT_CPU_BF16()                                                                  \
  if (::difflab::cpu_bf16_support() == ::difflab::Bf16Support::none)                                     \
  GTEST_SKIP() << "this CPU has no bf16 convolutions (oneDNN needs AVX-512): " << ::difflab::cpu_description()

// The build's plugins (one registry per test process; libraries stay loaded anyway).
inline PluginRegistry& registry() {
  static PluginRegistry instance;
  return instance;
}

// A fresh, empty folder under the system's temp folder, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = std::filesystem::temp_directory_path() /
            ("difflab-test-" + std::to_string(getpid()) + "-" + std::to_string(++counter) + "-" +
             std::to_string(now));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    // nftw rather than std::filesystem::remove_all: PyTorch's pip wheels export a broken copy of
    // remove_all from libtorch.so that shadows libstdc++'s (seen with torch 2.11, segfault).
    nftw(
        path_.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline torch::TensorOptions f64() { return torch::TensorOptions().dtype(torch::kFloat64); }

template <class T>
std::shared_ptr<T> make(Family family, const std::string& name, const Params& params = {},
                        BuildContext context = {32, 1}) {
  const PluginInfo& info = registry().get(family, name);
  Params filled;  // defaults for whatever the test leaves out
  for (const auto& spec : info.schema)
    filled.set(spec.name, params.has(spec.name) ? params.get(spec.name) : spec.default_value);
  return registry().create<T>(family, name, filled, context);
}

struct Outcome {
  int exit_code;
  std::string output;  // stdout and stderr
};

// Runs a shell command line; its exit code (-1 when killed by a signal) and its output.
inline Outcome shell_command(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  Outcome outcome{-1, ""};
  if (pipe == nullptr) return outcome;
  std::array<char, 4096> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe) != nullptr) outcome.output += buffer.data();
  int status = pclose(pipe);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

// The difflab executable, run as a user runs it with `arguments`; `environment` ("NAME=value
// ...") is set for that process only.
inline Outcome difflab_command(const std::string& arguments, const std::string& environment = "") {
  return shell_command((environment.empty() ? "" : "env " + environment + " ") + std::string(DIFFLAB_TEST_EXECUTABLE) +
                       " " + arguments);
}

// A metric's values over the epochs, in a database of one run.
inline std::vector<double> metric_history(const std::filesystem::path& database, const std::string& key) {
  SQLite::Database db(database.string());
  SQLite::Statement query(db, "SELECT value FROM metrics WHERE key = ? ORDER BY epoch");
  query.bind(1, key);
  std::vector<double> values;
  while (query.executeStep()) values.push_back(query.getColumn(0).getDouble());
  return values;
}

// A whole text file.
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The tiny synthetic experiment every end-to-end test trains (seconds on two cores).
inline std::string tiny_experiment() { return std::string(DIFFLAB_TEST_SOURCE_DIR) + "/tests/data/tiny_synthetic.toml"; }

}  // namespace difflab::test
