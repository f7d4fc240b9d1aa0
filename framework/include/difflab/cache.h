// Keys and folders for difflab's on-disk caches (decoded images, trained feature extractors).
#pragma once

#include "difflab/export.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace difflab {

constexpr uint64_t kFnvOffsetBasis = 1469598103934665603ull;

// FNV-1a 64 over bytes, continuing from `hash`: stable across machines and runs (unlike
// std::hash), so it can name cache files and identify configurations.
DIFFLAB_API uint64_t fnv1a(const void* bytes, size_t count, uint64_t hash = kFnvOffsetBasis);
DIFFLAB_API uint64_t fnv1a(const std::string& text, uint64_t hash = kFnvOffsetBasis);

// `configured` if not empty, else $XDG_CACHE_HOME/difflab, else ~/.cache/difflab.
DIFFLAB_API std::filesystem::path cache_root(const std::string& configured);

// An exclusive lock on `entry`.lock (flock; its folder is created) held for the guard's life:
// processes that need the same cache entry (sweep workers) wait while the first computes it,
// then read it instead of computing it again.
class DIFFLAB_API CacheLock {
 public:
  explicit CacheLock(const std::filesystem::path& entry);
  ~CacheLock();
  CacheLock(const CacheLock&) = delete;
  CacheLock& operator=(const CacheLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace difflab
