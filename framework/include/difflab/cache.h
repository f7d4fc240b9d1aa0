// Keys and folders for difflab's on-disk caches (decoded images, trained feature extractors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace difflab {

constexpr uint64_t kFnvOffsetBasis = 1469598103934665603ull;

// FNV-1a 64 over bytes, continuing from `hash`: stable across machines and runs (unlike
// std::hash), so it can name cache files and identify configurations.
uint64_t fnv1a(const void* bytes, size_t count, uint64_t hash = kFnvOffsetBasis);
uint64_t fnv1a(const std::string& text, uint64_t hash = kFnvOffsetBasis);

// `configured` if not empty, else $XDG_CACHE_HOME/difflab, else ~/.cache/difflab.
std::filesystem::path cache_root(const std::string& configured);

}  // namespace difflab
