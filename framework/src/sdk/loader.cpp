// Loading one plugin library: the ABI record first, then the plugin's metadata.
#include "difflab/loader.h"

#include "difflab/plugin.h"

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <fstream>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <mutex>

#include "difflab/plugin_test.h"
#include "difflab/version.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// Every library ever loaded, by canonical path. Never unloaded: objects and LibTorch operator
// registrations made by a plugin must not outlive its code.
struct LoadedLibrary {
  boost::dll::shared_library library;
  const PluginInfo* info;
};
std::map<fs::path, LoadedLibrary>& loaded_libraries() {
  static std::map<fs::path, LoadedLibrary> libraries;
  return libraries;
}
std::mutex loaded_libraries_mutex;

// Checks the record's fixed fields, then its layouts; throws naming what differs.
void check_abi_record(const AbiRecord& abi, const fs::path& file) {
  if (abi.magic != kAbiMagic)
    throw RuntimeError("corrupt ABI record (wrong magic number)", ErrorContext::in_file(file.string()));
  if (abi.abi_version != DIFFLAB_ABI_VERSION)
    throw RuntimeError(fmt::format("plugin ABI version {} does not match difflab's {}", abi.abi_version,
                                   DIFFLAB_ABI_VERSION),
                       ErrorContext::in_file(file.string(), "rebuild the plugin against this difflab"));
  if (abi.torch_major != DIFFLAB_TORCH_MAJOR || abi.torch_minor != DIFFLAB_TORCH_MINOR ||
      abi.cxx11_abi != DIFFLAB_CXX11_ABI)
    throw RuntimeError(fmt::format("plugin built against LibTorch {}.{} (cxx11 ABI {}), difflab uses {}.{} ({})",
                                   abi.torch_major, abi.torch_minor, abi.cxx11_abi, DIFFLAB_TORCH_MAJOR,
                                   DIFFLAB_TORCH_MINOR, DIFFLAB_CXX11_ABI),
                       ErrorContext::in_file(file.string(), "rebuild the plugin against the same LibTorch"));
  const std::vector<std::string> differences = layout_differences(abi);
  if (!differences.empty())
    throw RuntimeError(fmt::format("plugin built against other SDK headers: the layout of {} differs from "
                                   "difflab's", fmt::join(differences, ", ")),
                       ErrorContext::in_file(file.string(), "rebuild the plugin against this difflab's headers"));
}

// Why `file` cannot be mapped safely, or "" when its ELF headers fit in the file. dlopen maps a
// truncated library and faults (SIGBUS) when it touches a page past the end of the file, so the
// header, the program headers and every loaded segment are checked against the file's size first.
std::string elf_problem(const fs::path& file) {
  std::error_code error;
  const uintmax_t size = fs::file_size(file, error);
  if (error) return "cannot read its size: " + error.message();
  std::ifstream in(file, std::ios::binary);
  Elf64_Ehdr header{};
  if (!in.read(reinterpret_cast<char*>(&header), sizeof(header)) || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0)
    return "not an ELF shared library";
  if (header.e_ident[EI_CLASS] != ELFCLASS64) return "not a 64-bit ELF library";
  auto beyond = [&](uint64_t offset, uint64_t length) { return offset > size || length > size - offset; };
  if (beyond(header.e_phoff, uint64_t{header.e_phnum} * header.e_phentsize) ||
      (header.e_shoff != 0 && beyond(header.e_shoff, uint64_t{header.e_shnum} * header.e_shentsize)))
    return fmt::format("truncated: its headers reach past the end of the file ({} bytes)", size);
  if (header.e_phentsize != sizeof(Elf64_Phdr)) return "unexpected ELF program header size";
  in.seekg(static_cast<std::streamoff>(header.e_phoff));
  for (uint16_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment{};
    if (!in.read(reinterpret_cast<char*>(&segment), sizeof(segment))) return "unreadable program headers";
    if (segment.p_type == PT_LOAD && beyond(segment.p_offset, segment.p_filesz))
      return fmt::format("truncated: a segment ends at byte {}, the file has {}", segment.p_offset + segment.p_filesz,
                         size);
  }
  return "";
}

// What a plugin's own metadata gets wrong: an empty name, a parameter without a name or twice,
// a default of another type than its parameter or outside its own range.
std::string metadata_problem(const PluginInfo& info) {
  if (info.name.empty()) return "its plugin name is empty";
  if (info.create == nullptr) return "it has no factory";
  std::vector<std::string> names;
  for (const ParamSpec& spec : info.schema) {
    if (spec.name.empty()) return "a parameter of its schema has no name";
    if (std::find(names.begin(), names.end(), spec.name) != names.end())
      return fmt::format("its schema declares parameter \"{}\" twice", spec.name);
    names.push_back(spec.name);
    if (spec.default_value.index() != static_cast<size_t>(spec.type))
      return fmt::format("the default of parameter \"{}\" is not a {}", spec.name, to_string(spec.type));
    if (const std::string problem = spec.check(spec.default_value); !problem.empty())
      return fmt::format("the default of parameter \"{}\" breaks its own schema: {}", spec.name, problem);
  }
  return "";
}

}  // namespace

std::vector<std::string> layout_differences(const AbiRecord& record) {
  std::vector<std::string> differences;
  std::vector<bool> matched(record.layout_count, false);
  for (const LayoutFingerprint& ours : abi::kLayouts) {
    bool same = false, found = false;
    for (uint32_t i = 0; i < record.layout_count && !found; ++i) {
      if (std::strcmp(record.layouts[i].name, ours.name) != 0) continue;
      found = true;
      matched[i] = true;
      same = record.layouts[i].fingerprint == ours.fingerprint;
    }
    if (!same) differences.emplace_back(found ? ours.name : std::string(ours.name) + " (absent in the plugin)");
  }
  for (uint32_t i = 0; i < record.layout_count; ++i)
    if (!matched[i]) differences.push_back(std::string(record.layouts[i].name) + " (unknown to difflab)");
  return differences;
}

const PluginInfo& load_plugin_library(const fs::path& file) {
  std::lock_guard<std::mutex> lock(loaded_libraries_mutex);
  const fs::path canonical = fs::weakly_canonical(file);
  auto& libraries = loaded_libraries();
  if (auto it = libraries.find(canonical); it != libraries.end()) return *it->second.info;

  if (const std::string problem = elf_problem(canonical); !problem.empty())
    throw RuntimeError("cannot load library: " + problem, ErrorContext::in_file(file.string()));
  boost::dll::shared_library library;
  boost::dll::fs::error_code error;
  library.load(canonical.string(), boost::dll::load_mode::default_mode, error);
  if (error) {
    // Boost.DLL reports every dlopen failure as one errno; dlerror() says which (a missing
    // dependency, an undefined symbol, ...). Asking dlopen again reproduces the failure.
    std::string reason = error.message();
    dlerror();
    if (void* handle = dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL); handle != nullptr) {
      dlclose(handle);
    } else if (const char* message = dlerror()) {
      reason = message;
    }
    throw RuntimeError("cannot load library: " + reason, ErrorContext::in_file(file.string()));
  }
  if (!library.has("difflab_abi_record"))
    throw RuntimeError("not a difflab plugin (no difflab_abi_record symbol)", ErrorContext::in_file(file.string()));
  // The ABI record is plain data: reading it calls no code of the library.
  check_abi_record(library.get<const AbiRecord>("difflab_abi_record"), file);
  if (!library.has("difflab_plugin_info"))
    throw RuntimeError("plugin has an ABI record but no difflab_plugin_info", ErrorContext::in_file(file.string()));

  const PluginInfo* info = library.get<const PluginInfo*()>("difflab_plugin_info")();
  if (info == nullptr)
    throw RuntimeError("difflab_plugin_info() returned no metadata", ErrorContext::in_file(file.string()));
  if (const std::string problem = metadata_problem(*info); !problem.empty())
    throw RuntimeError(fmt::format("plugin {} ({}) refused: {}", info->name, to_string(info->family), problem),
                       ErrorContext::in_file(file.string(), "fix the plugin's schema() and rebuild it"));
  libraries.emplace(canonical, LoadedLibrary{std::move(library), info});
  return *info;
}

fs::path sdk_library_file() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&sdk_library_file), &info) == 0 || info.dli_fname == nullptr) return {};
  return fs::path(info.dli_fname);
}

Params plugin_test::with_defaults(const PluginInfo& info, const Params& given) {
  Params params;
  for (const auto& spec : info.schema) params.set(spec.name, given.has(spec.name) ? given.get(spec.name) : spec.default_value);
  for (const auto& [name, value] : given.items())
    if (!params.has(name))
      throw RuntimeError(fmt::format("plugin {} has no parameter \"{}\"", info.name, name));
  if (info.validate) {
    const ParamIssue issue = info.validate(params);
    if (!issue.key.empty()) throw RuntimeError(issue.message, ErrorContext::for_key({}, issue.key));
  }
  return params;
}

}  // namespace difflab
