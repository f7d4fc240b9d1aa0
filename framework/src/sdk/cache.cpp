#include "difflab/cache.h"

#include <cstdlib>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

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

CacheLock::CacheLock(const std::filesystem::path& entry) {
  std::filesystem::create_directories(entry.parent_path());
  std::filesystem::path lock = entry;
  lock += ".lock";
  fd_ = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  // Without a lock (e.g. a file system that refuses it) the caller still works, only uncoordinated.
  if (fd_ >= 0) flock(fd_, LOCK_EX);
}

CacheLock::~CacheLock() {
  if (fd_ >= 0) close(fd_);  // releases the lock
}

}  // namespace difflab
