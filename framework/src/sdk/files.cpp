#include "difflab/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>

#include "difflab/error.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& path, int error_number) {
  throw RuntimeError(what + ": " + std::strerror(error_number), ErrorContext::in_file(path.string()));
}

}  // namespace

void write_file_atomically(const fs::path& path, std::string_view bytes) {
  std::error_code error;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), error);
  if (error) throw RuntimeError("cannot create the folder: " + error.message(), ErrorContext::in_file(path.string()));
  if (fs::exists(path, error) && !fs::is_regular_file(path, error))
    throw RuntimeError("cannot write the file: something that is not a file is in the way",
                       ErrorContext::in_file(path.string(), "move it away and run again"));
  fs::path partial = path;
  partial += ".partial";
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create " + partial.filename().string(), path, errno);
  auto abandon = [&](const std::string& what) {
    const int saved = errno;
    ::close(fd);
    ::unlink(partial.c_str());
    fail(what, path, saved);
  };
  for (size_t written = 0; written < bytes.size();) {
    const ssize_t count = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) abandon("cannot write the file");
    if (count == 0) {
      errno = ENOSPC;
      abandon("cannot write the file");
    }
    written += static_cast<size_t>(count);
  }
  if (::fsync(fd) != 0) abandon("cannot flush the file to disk");
  if (::close(fd) != 0) {
    const int saved = errno;
    ::unlink(partial.c_str());
    fail("cannot close the file", path, saved);
  }
  if (::rename(partial.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(partial.c_str());
    fail("cannot move the file into place", path, saved);
  }
}

bool is_out_of_space(const std::exception& error) {
  const std::string message = error.what();
  for (int cause : {ENOSPC, EFBIG, EDQUOT}) {
    const std::string text = std::strerror(cause);
    if (message.find(": " + text) != std::string::npos) return true;
  }
  return false;
}

void copy_file_atomically(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw RuntimeError("cannot read the file", ErrorContext::in_file(from.string()));
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) throw RuntimeError("cannot read the file", ErrorContext::in_file(from.string()));
  write_file_atomically(to, bytes);
}

bool store_cache_entry(const fs::path& entry, std::string_view bytes) {
  try {
    write_file_atomically(entry, bytes);
    return true;
  } catch (const Error& error) {
    std::fprintf(stderr, "difflab: warning: cache entry not written (it is computed again next time): %s\n", error.what());
    return false;
  }
}

}  // namespace difflab
