#include "difflab/cache.h"

#include <cstdlib>

namespace difflab {

uint64_t fnv1a(const void* bytes, size_t count, uint64_t hash) {
  const auto* data = static_cast<const unsigned char*>(bytes);
  for (size_t i = 0; i < count; ++i) {
    hash ^= data[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

uint64_t fnv1a(const std::string& text, uint64_t hash) { return fnv1a(text.data(), text.size(), hash); }

std::filesystem::path cache_root(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0')
    return std::filesystem::path(xdg) / "difflab";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr ? home : "/tmp") / ".cache" / "difflab";
}

}  // namespace difflab
