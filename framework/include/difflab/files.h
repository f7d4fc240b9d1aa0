// Checked, atomic file writes for everything difflab and its plugins leave on disk (checkpoints,
// sample grids, cache entries): a file is either the old one or the complete new one, and a full
// disk, a file-size limit or a read-only folder is an error naming the path and the cause, never
// a crash or a partial file.
#pragma once

#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "difflab/export.h"

namespace difflab {

// Writes `bytes` to `path` through a temporary file beside it (write, fsync, rename). Throws a
// runtime Error naming the path and the cause (e.g. "No space left on device"); the temporary
// file is removed and an existing `path` is left as it was.
DIFFLAB_API void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Whether `error` is a write that failed for want of space (a full disk, a quota, a file-size
// limit): a run stopped by it resumes when run again, like an interrupted one.
DIFFLAB_API bool is_out_of_space(const std::exception& error);

// Copies `from` to `to` the same way.
DIFFLAB_API void copy_file_atomically(const std::filesystem::path& from, const std::filesystem::path& to);

// A cache entry (decoded images, a trained feature model) written with write_file_atomically.
// A cache is an optimisation: when the entry cannot be written (a full disk, a read-only cache
// folder) this warns, naming the path and the cause, and returns false; the caller goes on with
// what it computed.
DIFFLAB_API bool store_cache_entry(const std::filesystem::path& entry, std::string_view bytes);

}  // namespace difflab
