#include "difflab/cpu.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <fmt/format.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#ifdef DIFFLAB_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace difflab {
namespace {

// -1: not chosen yet.
std::atomic<int> active_isa{-1};

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The level a variable names, or -1 where it is unset or names none.
int isa_from_environment(const char* variable) {
  const char* value = std::getenv(variable);
  if (value == nullptr || *value == '\0') return -1;
  const std::string name = lower(value);
  if (name == "avx512") return static_cast<int>(KernelIsa::avx512);
  if (name == "avx2") return static_cast<int>(KernelIsa::avx2);
  if (name == "default") return static_cast<int>(KernelIsa::baseline);
  return -1;
}

int chosen_isa() {
  const int best = static_cast<int>(best_kernel_isa());
  int wanted = isa_from_environment("DIFFLAB_CPU_CAPABILITY");
  if (wanted < 0) wanted = isa_from_environment("ATEN_CPU_CAPABILITY");
  return wanted < 0 ? best : std::min(wanted, best);
}

// The line of /proc/cpuinfo that starts with `key`, after its colon; empty where there is none.
std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return {};
}

#ifndef DIFFLAB_HAVE_DNNL
std::set<std::string> cpu_flags() {
  std::istringstream words(cpuinfo_field("flags"));
  std::set<std::string> flags;
  for (std::string word; words >> word;) flags.insert(word);
  return flags;
}
#endif

}  // namespace

// What LibTorch says of its own dispatch: "CPU capability usage: AVX2" in at::show_config().
std::string aten_cpu_capability() {
  const std::string config = at::show_config();
  const std::string key = "CPU capability usage: ";
  const auto at = config.find(key);
  if (at == std::string::npos) return "unknown";
  const auto end = config.find('\n', at);
  const std::string capability =
      config.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
  return capability == "NO AVX" ? "DEFAULT" : capability;  // LibTorch 1.x's name for it
}

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::avx512: return "avx512";
    case KernelIsa::avx2: return "avx2";
    case KernelIsa::baseline: break;
  }
  return "default";
}

KernelIsa best_kernel_isa() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  // The features of x86-64-v4 and x86-64-v3 that the compiled loops may use.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return KernelIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
      __builtin_cpu_supports("bmi2"))
    return KernelIsa::avx2;
#endif
  return KernelIsa::baseline;  // other compilers build the baseline loops only
}

KernelIsa kernel_isa() {
  int isa = active_isa.load(std::memory_order_relaxed);
  if (isa < 0) {
    isa = chosen_isa();
    active_isa.store(isa, std::memory_order_relaxed);
  }
  return static_cast<KernelIsa>(isa);
}

ScopedKernelIsa::ScopedKernelIsa(KernelIsa isa) : previous_(kernel_isa()) {
  active_isa.store(std::min(static_cast<int>(isa), static_cast<int>(best_kernel_isa())));
}

ScopedKernelIsa::~ScopedKernelIsa() { active_isa.store(static_cast<int>(previous_)); }

Bf16Support cpu_bf16_support() {
#ifdef DIFFLAB_HAVE_DNNL
  // What oneDNN itself will use, after ONEDNN_MAX_CPU_ISA.
  const auto effective = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const auto has = [&](dnnl_cpu_isa_t isa) { return (effective & isa) == static_cast<unsigned>(isa); };
  if (has(dnnl_cpu_isa_avx512_core_amx)) return Bf16Support::amx;
  if (has(dnnl_cpu_isa_avx512_core_bf16)) return Bf16Support::avx512_bf16;
  if (has(dnnl_cpu_isa_avx512_core)) return Bf16Support::emulated;
  return Bf16Support::none;
#else
  const std::set<std::string> flags = cpu_flags();
  if (flags.count("amx_bf16") && flags.count("amx_tile")) return Bf16Support::amx;
  if (flags.count("avx512_bf16")) return Bf16Support::avx512_bf16;
  if (flags.count("avx512bw") && flags.count("avx512vl") && flags.count("avx512dq")) return Bf16Support::emulated;
  return Bf16Support::none;
#endif
}

const char* bf16_support_name(Bf16Support support) {
  switch (support) {
    case Bf16Support::amx: return "amx";
    case Bf16Support::avx512_bf16: return "avx512_bf16";
    case Bf16Support::emulated: return "emulated (avx512_core)";
    case Bf16Support::none: break;
  }
  return "none";
}

std::string cpu_description() {
  std::string model = cpuinfo_field("model name");
  if (model.empty()) model = "unknown CPU";
  std::string onednn = "none";
#ifdef DIFFLAB_HAVE_DNNL
  onednn = fmt::format("0x{:x}", static_cast<unsigned>(dnnl_get_effective_cpu_isa()));
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: onednn = "avx512_core_amx"; break;
    case dnnl_cpu_isa_avx512_core_bf16: onednn = "avx512_core_bf16"; break;
    case dnnl_cpu_isa_avx512_core: onednn = "avx512_core"; break;
    case dnnl_cpu_isa_avx2: onednn = "avx2"; break;
    case dnnl_cpu_isa_avx2_vnni: onednn = "avx2_vnni"; break;
    default: break;
  }
#endif
  return fmt::format("{}; bf16: {}; difflab kernels: {}; ATen: {}; oneDNN: {}; {} threads", model,
                     bf16_support_name(cpu_bf16_support()), kernel_isa_name(kernel_isa()), aten_cpu_capability(),
                     onednn, at::get_num_threads());
}

}  // namespace difflab
