// Bringing shard databases (one per point of a Slurm sweep, written on a task's local disk) into
// one results database: every run attempt exactly once, whatever the ids were in its shard.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace difflab {

class ResultsStore;

struct ShardProblem {
  std::filesystem::path shard;
  std::string message;
};

struct MergeReport {
  int64_t shards_merged = 0;
  int64_t runs_added = 0;      // attempts the database did not have
  int64_t runs_updated = 0;    // attempts it had in an older state (a run that resumed and went on)
  int64_t runs_unchanged = 0;  // attempts it had exactly as the shard has them
  std::vector<ShardProblem> skipped;  // missing, partial, corrupt or foreign shards, with the reason
};

// Checks every shard first (a difflab database of this schema version, PRAGMA integrity_check
// ok), then merges the good ones into `main` in one transaction. A run is keyed by its attempt id
// (runs.attempt): an attempt merged before is replaced by the shard's rows when they differ and
// left alone when they do not, so merging twice adds nothing; every attempt of a configuration
// (a failed one and its retry) is kept, as --retry-failed keeps them. A bad shard is reported in
// `skipped` and nothing of it is written; `main` is never left half-merged.
MergeReport merge_shards(ResultsStore& main, const std::vector<std::filesystem::path>& shards);

// Why `shard` cannot be merged, or "" when it can.
std::string shard_problem(const std::filesystem::path& shard);

// Copies a live database (its WAL included) into `to` as one consistent snapshot, in rollback
// journal mode so that it can be read where WAL cannot (a network filesystem), through a
// temporary file renamed over `to`.
void snapshot_database(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace difflab
