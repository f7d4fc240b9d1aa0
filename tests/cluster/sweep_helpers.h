// What the cluster tests share: a tiny sweep in a temporary folder, and reading what difflab slurm,
// difflab k8s and their tasks leave behind.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <unistd.h>

#include "test_support.h"

namespace difflab::test::sweeps {

namespace fs = std::filesystem;
using difflab::test::read_text;  // test_support.h's, for the tests that use this namespace


// DIR/sweep.toml: the tiny experiment, one thread, with `sweep` as its [sweep] table (none when
// empty); returns "DIR/sweep.toml --set ..." with the database and the outputs inside DIR.
inline std::string tiny_sweep(const TempDir& dir, const std::string& sweep, const std::string& extra = "") {
  std::ofstream(dir / "sweep.toml") << read_text(difflab::test::tiny_experiment())
                                    << (sweep.empty() ? "" : "\n[sweep]\n" + sweep + "\n");
  return (dir / "sweep.toml").string() + " --set experiment.database=" + (dir / "results.sqlite").string() +
         " --set experiment.output_dir=" + (dir / "runs").string() + " --set experiment.threads=1" + extra;
}

// The sweep folder and the job id from difflab slurm's (or k8s's) output.
inline std::string folder_of(const std::string& output) {
  std::smatch match;
  return std::regex_search(output, match, std::regex("folder: (\\S+)")) ? match[1].str() : "";
}
inline std::string job_of(const std::string& output) {
  std::smatch match;
  return std::regex_search(output, match, std::regex("submitted job ([0-9]+)")) ? match[1].str() : "";
}

inline int64_t count(const fs::path& database, const std::string& sql) {
  SQLite::Database db(database.string());
  return db.execAndGet(sql).getInt64();
}

// Every task log of a sweep folder, concatenated.
inline std::string all_logs(const fs::path& folder) {
  std::string text;
  for (const auto& submission : fs::directory_iterator(folder))
    if (fs::is_directory(submission.path() / "logs"))
      for (const auto& log : fs::directory_iterator(submission.path() / "logs")) text += read_text(log.path());
  return text;
}

inline size_t occurrences(const std::string& text, const std::string& needle) {
  size_t found = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++found;
  return found;
}

// Waits for `path` to hold a full line; its text, or "" after `seconds`.
inline std::string wait_for_line(const fs::path& path, double seconds) {
  for (int i = 0; i < static_cast<int>(seconds * 10); ++i) {
    const std::string text = read_text(path);
    if (!text.empty() && text.back() == '\n') return text.substr(0, text.size() - 1);
    usleep(100000);
  }
  return "";
}

}  // namespace difflab::test::sweeps
