// ResultsStore: the SQLite results database (runs, params, metrics, artifacts), committed as
// results happen, in WAL mode so that readers never block a running experiment.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "difflab/params.h"

namespace SQLite {
class Database;
}

namespace difflab {

class Experiment;

// This machine's host name, as recorded on run rows.
std::string host_name();

constexpr int kSchemaVersion = 3;

struct RunRecord {
  int64_t id = 0;
  std::string name;
  std::string config_hash;
  std::string config_toml;
  std::string status;  // running | finished | failed | diverged
  std::string error;
  std::string started_at;
  std::string finished_at;
  std::string host;
  int64_t pid = 0;
  double heartbeat_age_seconds = -1.0;  // -1 when never
};

struct MetricRecord {
  std::string key;
  int64_t epoch = 0;
  int64_t step = 0;
  double value = 0.0;
};

struct ArtifactRecord {
  std::string kind;  // checkpoint | sample_grid
  std::string path;
  int64_t epoch = 0;
};

struct KidRecord {
  double mean = 0.0;
  double std = 0.0;
  std::string protocol;   // per_batch | subsets
  std::string features;   // feature-extractor plugin
  std::string sampler;    // sampler plugin
  int64_t diffusion_steps = 0;
  int64_t real_count = 0;       // real images compared
  int64_t generated_count = 0;  // generated images compared
};

class ResultsStore {
 public:
  // Opens or creates the database (and its folder); migrates an older schema forward.
  explicit ResultsStore(const std::filesystem::path& path);
  ~ResultsStore();
  ResultsStore(const ResultsStore&) = delete;
  ResultsStore& operator=(const ResultsStore&) = delete;

  int schema_version() const;

  // Creates the run row (status running) with its params, in one transaction.
  int64_t start_run(const Experiment& experiment, const std::string& versions_json);
  // Takes an interrupted run back (status running, this host and process).
  void mark_running(int64_t run_id);
  void finish_run(int64_t run_id);
  void fail_run(int64_t run_id, const std::string& status, const std::string& message);

  // Records one epoch's metrics and artifacts atomically.
  void record_epoch(int64_t run_id, int64_t epoch, int64_t step,
                    const std::vector<std::pair<std::string, double>>& metrics,
                    const std::vector<ArtifactRecord>& artifacts,
                    const std::optional<KidRecord>& kid = std::nullopt);

  std::optional<RunRecord> run(int64_t run_id) const;
  // The newest run of a configuration (see Experiment::config_hash).
  std::optional<RunRecord> latest_run(const std::string& config_hash) const;
  std::vector<RunRecord> runs() const;
  std::vector<std::pair<std::string, std::string>> params(int64_t run_id) const;
  std::vector<MetricRecord> metrics(int64_t run_id) const;
  std::vector<ArtifactRecord> artifacts(int64_t run_id) const;
  std::vector<std::pair<int64_t, KidRecord>> kid(int64_t run_id) const;  // (epoch, record)

  SQLite::Database& database() { return *db_; }

 private:
  void migrate();
  std::unique_ptr<SQLite::Database> db_;
};

}  // namespace difflab
