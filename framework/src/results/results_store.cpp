#include "results/results_store.h"

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/SQLiteCpp.h>
#include <SQLiteCpp/Transaction.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mutex>
#include <sqlite3.h>
#include <sstream>
#include <thread>
#include <sys/vfs.h>
#include <unistd.h>

#include "config/experiment.h"
#include "difflab/error.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// Each schema version is a migration from the one before; an old database is migrated in place
// (in one transaction), never rebuilt. schema_info holds one row per applied version.
constexpr const char* kSchemaV1 = R"SQL(
CREATE TABLE IF NOT EXISTS schema_info (
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  name            TEXT NOT NULL,
  config_hash     TEXT NOT NULL,
  config_toml     TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('pending', 'running', 'finished', 'failed', 'diverged')),
  error           TEXT,
  created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  started_at      TEXT,
  finished_at     TEXT,
  host            TEXT,           -- the machine running it
  pid             INTEGER,        -- its process, to tell a live run from a killed one
  heartbeat_at    TEXT,           -- refreshed while running (kHeartbeatSeconds)
  versions        TEXT            -- JSON: difflab, libtorch and each plugin's version
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (config_hash);
CREATE TABLE IF NOT EXISTS params (
  run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  key      TEXT NOT NULL,         -- dotted: "schedule.min_signal_rate"
  value    TEXT NOT NULL,         -- TOML text of the value: 0.02, "mae", [32, 64]
  number   REAL,                  -- the value as a number when it is one (for sorting, grouping)
  type     TEXT NOT NULL,         -- boolean | integer | float | string | array
  PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS metrics (
  run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  key        TEXT NOT NULL,       -- n_loss, i_loss, val_n_loss, val_i_loss, images_per_second
  epoch      INTEGER NOT NULL,
  step       INTEGER NOT NULL,    -- optimiser steps so far
  value      REAL NOT NULL,
  wall_time  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (run_id, key, epoch)
);
CREATE TABLE IF NOT EXISTS artifacts (
  run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  kind        TEXT NOT NULL,      -- checkpoint | sample_grid
  path        TEXT NOT NULL,
  epoch       INTEGER NOT NULL,
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (run_id, kind, epoch)
);
)SQL";

// Version 2: KID estimates, with everything needed to compare them fairly.
constexpr const char* kSchemaV2 = R"SQL(
CREATE TABLE IF NOT EXISTS kid (
  run_id           INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  epoch            INTEGER NOT NULL,
  mean             REAL NOT NULL,
  std              REAL NOT NULL,     -- over subsets; 0 for per_batch
  protocol         TEXT NOT NULL,     -- per_batch (the seed's) | subsets (clean-fid's)
  features         TEXT NOT NULL,     -- feature-extractor plugin
  sampler          TEXT NOT NULL,
  diffusion_steps  INTEGER NOT NULL,
  real_count       INTEGER NOT NULL,
  generated_count  INTEGER NOT NULL,
  created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (run_id, epoch, protocol, features)
);
)SQL";

// Version 3: a view with one row per run — its status, latest losses and best KID — for the
// sqlite3 shell, pandas and `difflab results` (made again by version 8).
constexpr const char* kRunSummaryView = R"SQL(
CREATE VIEW IF NOT EXISTS run_summary AS
SELECT r.id AS run_id, r.name, r.status, r.config_hash, r.started_at, r.finished_at, r.error,
  (SELECT MAX(epoch) FROM metrics m WHERE m.run_id = r.id) AS epochs,
  (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.key = 'n_loss' ORDER BY epoch DESC LIMIT 1) AS n_loss,
  (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.key = 'i_loss' ORDER BY epoch DESC LIMIT 1) AS i_loss,
  (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.key = 'val_n_loss' ORDER BY epoch DESC LIMIT 1) AS val_n_loss,
  (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.key = 'val_i_loss' ORDER BY epoch DESC LIMIT 1) AS val_i_loss,
  (SELECT MIN(mean) FROM kid k WHERE k.run_id = r.id) AS best_kid,
  (SELECT epoch FROM kid k WHERE k.run_id = r.id ORDER BY mean, epoch LIMIT 1) AS best_kid_epoch
FROM runs r;
)SQL";

// The ablation view of version 4 (made again by version 8).
constexpr const char* kAblationView = R"SQL(
CREATE VIEW IF NOT EXISTS ablation AS
SELECT r.name, COALESCE(r.variant_hash, r.config_hash) AS variant_hash, MAX(r.variant) AS variant,
  COUNT(*) AS runs,
  group_concat((SELECT p.value FROM params p WHERE p.run_id = r.id AND p.key = 'experiment.seed'), ' ') AS seeds,
  AVG(s.best_kid) AS best_kid_mean,
  CASE WHEN COUNT(s.best_kid) > 1 THEN sqrt(MAX(0.0, (SUM(s.best_kid * s.best_kid)
    - SUM(s.best_kid) * SUM(s.best_kid) / COUNT(s.best_kid)) / (COUNT(s.best_kid) - 1))) END AS best_kid_std,
  AVG(s.val_n_loss) AS val_n_loss_mean,
  CASE WHEN COUNT(s.val_n_loss) > 1 THEN sqrt(MAX(0.0, (SUM(s.val_n_loss * s.val_n_loss)
    - SUM(s.val_n_loss) * SUM(s.val_n_loss) / COUNT(s.val_n_loss)) / (COUNT(s.val_n_loss) - 1))) END AS val_n_loss_std,
  AVG(s.val_i_loss) AS val_i_loss_mean,
  CASE WHEN COUNT(s.val_i_loss) > 1 THEN sqrt(MAX(0.0, (SUM(s.val_i_loss * s.val_i_loss)
    - SUM(s.val_i_loss) * SUM(s.val_i_loss) / COUNT(s.val_i_loss)) / (COUNT(s.val_i_loss) - 1))) END AS val_i_loss_std
FROM runs r JOIN run_summary s ON s.run_id = r.id
WHERE r.status = 'finished'
GROUP BY r.name, COALESCE(r.variant_hash, r.config_hash);
)SQL";

// Version 4: a run's variant (its configuration without the seed) and the ablation view: one row
// per variant with mean, sample standard deviation and count over its finished runs (the seeds).
constexpr const char* kSchemaV4 = R"SQL(
ALTER TABLE runs ADD COLUMN variant_hash TEXT;  -- config hash with experiment.seed left out
ALTER TABLE runs ADD COLUMN variant TEXT;       -- the sweep point without its seed, e.g. loss.plugin='mse'
)SQL";  // then kAblationView

// Version 5: the network evaluations (NFE) each KID estimate's sampler spent per batch.
constexpr const char* kSchemaV5 = R"SQL(
ALTER TABLE kid ADD COLUMN nfe INTEGER;
)SQL";

// Version 6: runs that differ only in sampling or evaluation share one trained network.
constexpr const char* kSchemaV6 = R"SQL(
ALTER TABLE runs ADD COLUMN training_hash TEXT;    -- config hash without [sampler] and [evaluation]
ALTER TABLE runs ADD COLUMN trained_by INTEGER;  -- runs.id of the run whose trained network it evaluates
)SQL";

// Version 7: every run row carries a random attempt id, so that rows made in shard databases
// (difflab slurm) merge into one database exactly once, whatever their ids were there; and the
// processes that trained it (data-parallel: their number and c10d backend).
constexpr const char* kSchemaV7 = R"SQL(
ALTER TABLE runs ADD COLUMN world_size INTEGER;  -- processes that trained it (1: one)
ALTER TABLE runs ADD COLUMN backend TEXT;        -- their c10d backend (gloo, nccl); NULL for one
ALTER TABLE runs ADD COLUMN attempt TEXT;  -- 32 random hex digits, unique across databases
UPDATE runs SET attempt = lower(hex(randomblob(16))) WHERE attempt IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS runs_by_attempt ON runs (attempt);
)SQL";

// Version 8: the statuses "interrupted" (until now "failed" with an error text beginning with
// "interrupted") and "pruned" (adaptive sweeps). A CHECK constraint cannot be altered in SQLite,
// so the runs table is rebuilt, the documented way (sqlite.org/lang_altertable.html, "Making Other
// Kinds Of Table Schema Changes"): with foreign keys off (migrate()), the views dropped and made
// again, every row and its id copied, the AUTOINCREMENT counter kept. The messages stay.
constexpr const char* kSchemaV8 = R"SQL(
DROP VIEW IF EXISTS ablation;
DROP VIEW IF EXISTS run_summary;
CREATE TABLE runs_v8 (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  name            TEXT NOT NULL,
  config_hash     TEXT NOT NULL,
  config_toml     TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'diverged', 'interrupted',
                                                  'pruned')),
  error           TEXT,
  created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  started_at      TEXT,
  finished_at     TEXT,
  host            TEXT,
  pid             INTEGER,
  heartbeat_at    TEXT,
  versions        TEXT,
  variant_hash    TEXT,
  variant         TEXT,
  training_hash   TEXT,
  trained_by      INTEGER,
  world_size      INTEGER,
  backend         TEXT,
  attempt         TEXT
);
INSERT INTO runs_v8 (id, name, config_hash, config_toml, status, error, created_at, started_at, finished_at, host,
                     pid, heartbeat_at, versions, variant_hash, variant, training_hash, trained_by, world_size,
                     backend, attempt)
  SELECT id, name, config_hash, config_toml,
         CASE WHEN status = 'failed' AND error LIKE 'interrupted%' THEN 'interrupted' ELSE status END,
         error, created_at, started_at, finished_at, host, pid, heartbeat_at, versions, variant_hash, variant,
         training_hash, trained_by, world_size, backend, attempt
  FROM runs;
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0))
  WHERE name = 'runs_v8';
DROP TABLE runs;
ALTER TABLE runs_v8 RENAME TO runs;
CREATE INDEX runs_by_hash ON runs (config_hash);
CREATE UNIQUE INDEX runs_by_attempt ON runs (attempt);
)SQL";  // then both views again

// Version 9: adaptive sweeps' decisions (strategy/pruning.h), one row per run and rung.
constexpr const char* kSchemaV9 = R"SQL(
CREATE TABLE IF NOT EXISTS decisions (
  run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  rung        INTEGER NOT NULL,  -- the rung's index (the median rule: the epoch)
  epoch       INTEGER NOT NULL,  -- decided after this epoch
  method      TEXT NOT NULL,     -- asha | hyperband | successive_halving | median
  bracket     INTEGER NOT NULL,
  metric      TEXT NOT NULL,
  value       REAL,              -- the run's value (median: its best so far)
  cutoff      REAL,              -- the k-th best at the rung, or the median
  rank        INTEGER NOT NULL,  -- 1 = best; 0 where the rule ranks nothing
  of          INTEGER NOT NULL,  -- values at the rung, the run's own included
  peers       TEXT NOT NULL,     -- JSON array of the attempts (runs.attempt) compared with
  decision    TEXT NOT NULL CHECK (decision IN ('continue', 'prune')),
  decided_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (run_id, rung)
);
-- The training losses within epochs (training.log_every_steps): the epoch's running means.
CREATE TABLE IF NOT EXISTS step_metrics (
  run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  key     TEXT NOT NULL,     -- n_loss, i_loss, loss
  step    INTEGER NOT NULL,  -- optimiser steps so far
  epoch   INTEGER NOT NULL,
  value   REAL NOT NULL,
  PRIMARY KEY (run_id, key, step)
);
)SQL";

// Version 10: the sweep each run belongs to, with the settings its decisions follow, so that a
// decision can be explained and replayed from the database alone (the run's config_toml is the
// experiment without its [sweep] table).
constexpr const char* kSchemaV10 = R"SQL(
CREATE TABLE IF NOT EXISTS sweeps (
  sweep             TEXT PRIMARY KEY,  -- the sweep's hash (of its points' config hashes, in order)
  name              TEXT NOT NULL,     -- experiment.name
  trials            INTEGER NOT NULL,  -- its points, in the order they were expanded
  method            TEXT NOT NULL,     -- [sweep] method: grid | random | asha | hyperband | successive_halving
  settings          TEXT NOT NULL,     -- the [sweep] table, as TOML
  rule              TEXT,              -- the adaptive rule: asha | hyperband | successive_halving | median; NULL: none
  metric            TEXT,
  direction         TEXT CHECK (direction IN ('minimize', 'maximize')),
  min_epochs        INTEGER,           -- r, the first rung (NULL: not a key of the rule)
  max_epochs        INTEGER,           -- R, training.epochs
  reduction_factor  INTEGER,           -- eta
  brackets          INTEGER,           -- hyperband's, resolved (1 for the other rules)
  startup_trials    INTEGER,           -- median
  warmup_epochs     INTEGER            -- median
);
CREATE TABLE IF NOT EXISTS sweep_trials (
  run_id   INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  sweep    TEXT NOT NULL REFERENCES sweeps (sweep),
  trial    INTEGER NOT NULL,  -- its position in the sweep, from 0 (hyperband: bracket = trial mod brackets)
  bracket  INTEGER NOT NULL   -- 0 but in hyperband
);
)SQL";

// Version 11: a model-based sweep's proposals (sampler = "tpe"), each with what it was computed
// from, so that `difflab sweep replay` recomputes it from the database alone.
constexpr const char* kSchemaV11 = R"SQL(
CREATE TABLE IF NOT EXISTS proposals (
  sweep        TEXT NOT NULL,     -- the sweep's hash (sweeps.sweep)
  trial        INTEGER NOT NULL,  -- from 0, in the order proposed
  sampler      TEXT NOT NULL,     -- tpe
  seed         INTEGER NOT NULL,  -- the generator's seed (from sweep.seed, the trial and the draw)
  draw         INTEGER NOT NULL,  -- 0, or how many draws repeated an earlier trial or hit sweep.exclude
  random       INTEGER NOT NULL,  -- 1: drawn from the space (fewer than random_trials trials to learn from)
  conditioned  TEXT NOT NULL,     -- the trials it saw, a line each: trial attempt state step value v1 .. vD
  assignments  TEXT NOT NULL,     -- the proposed point, a "key=value" line each
  point_values TEXT NOT NULL,     -- its values, one per dimension (a choice: the alternative's index)
  score        REAL,              -- log l(x) - log g(x) of the chosen candidate; NULL when random
  proposed_at  TEXT NOT NULL,
  PRIMARY KEY (sweep, trial)
);
)SQL";

// Version 12: the sample metrics besides KID (evaluation.metrics: fid, precision, recall, density,
// coverage), each with what it compared, as the kid table records KID.
constexpr const char* kSchemaV12 = R"SQL(
CREATE TABLE IF NOT EXISTS sample_metrics (
  run_id           INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  epoch            INTEGER NOT NULL,
  metric           TEXT NOT NULL,     -- fid | precision | recall | density | coverage
  value            REAL NOT NULL,
  features         TEXT NOT NULL,     -- feature-extractor plugin (inception: FID as the papers report it)
  sampler          TEXT NOT NULL,
  diffusion_steps  INTEGER NOT NULL,
  nfe              INTEGER NOT NULL,
  real_count       INTEGER NOT NULL,
  generated_count  INTEGER NOT NULL,
  k                INTEGER,           -- nearest neighbours (precision, recall: pr_k; density, coverage: dc_k)
  source           TEXT NOT NULL DEFAULT 'epoch',  -- epoch: the run's own evaluation; evaluate: difflab evaluate
  created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (run_id, epoch, metric, features, source, real_count)
);
)SQL";

// sample_metrics rows of a run's epoch (record_epoch's and record_evaluation's), in the caller's
// transaction.
void insert_sample_metrics(SQLite::Database& db, int64_t run_id, int64_t epoch,
                           const std::vector<SampleMetricRecord>& samples) {
  for (const SampleMetricRecord& sample : samples) {
    SQLite::Statement insert(db,
                             "INSERT OR REPLACE INTO sample_metrics (run_id, epoch, metric, value, features, sampler, "
                             "diffusion_steps, nfe, real_count, generated_count, k, source) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert.bind(1, run_id);
    insert.bind(2, epoch);
    insert.bind(3, sample.metric);
    insert.bind(4, sample.value);
    insert.bind(5, sample.features);
    insert.bind(6, sample.sampler);
    insert.bind(7, sample.diffusion_steps);
    insert.bind(8, sample.nfe);
    insert.bind(9, sample.real_count);
    insert.bind(10, sample.generated_count);
    if (sample.k > 0) insert.bind(11, sample.k);
    insert.bind(12, sample.source);
    insert.exec();
  }
}

std::string param_type(const ParamValue& value) {
  switch (value.index()) {
    case 0: return "boolean";
    case 1: return "integer";
    case 2: return "float";
    case 3: return "string";
    default: return "array";
  }
}

// One epoch's (or step's) values into a metrics table, replacing a row recorded before for the
// same key and epoch (step_metrics: step): a replayed epoch writes the same values again.
void write_metric_rows(SQLite::Database& db, const std::string& table, int64_t run_id, int64_t epoch, int64_t step,
                       const std::vector<std::pair<std::string, double>>& values) {
  SQLite::Statement insert(db, "INSERT OR REPLACE INTO " + table + " (run_id, key, epoch, step, value) VALUES (?, ?, ?, ?, ?)");
  for (const auto& [key, value] : values) {
    insert.bind(1, run_id);
    insert.bind(2, key);
    insert.bind(3, epoch);
    insert.bind(4, step);
    insert.bind(5, value);
    insert.exec();
    insert.reset();
  }
}

RunRecord read_run(SQLite::Statement& query) {
  RunRecord run;
  run.id = query.getColumn(0).getInt64();
  run.name = query.getColumn(1).getString();
  run.config_hash = query.getColumn(2).getString();
  run.config_toml = query.getColumn(3).getString();
  run.status = run_status_from_database(query.getColumn(4).getString());
  run.error = query.getColumn(5).getString();
  run.started_at = query.getColumn(6).getString();
  run.finished_at = query.getColumn(7).getString();
  run.host = query.getColumn(8).getString();
  run.pid = query.getColumn(9).getInt64();
  run.heartbeat_age_seconds = query.getColumn(10).isNull() ? -1.0 : query.getColumn(10).getDouble();
  run.trained_by = query.getColumn(11).isNull() ? 0 : query.getColumn(11).getInt64();
  run.attempt = query.getColumn(12).getString();
  return run;
}

constexpr const char* kRunColumns =
    "SELECT id, name, config_hash, config_toml, status, error, started_at, finished_at, host, pid, "
    "(julianday('now') - julianday(heartbeat_at)) * 86400.0, trained_by, attempt FROM runs";

}  // namespace

std::string host_name() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof(buffer) - 1) != 0) return "";
  return buffer;
}

bool run_process_alive(const RunRecord& run) {
  if (run.status != RunStatus::running) return false;
  if (run.heartbeat_age_seconds < 0 || run.heartbeat_age_seconds > kLeaseSeconds) return false;
  if (run.host != host_name()) return true;
  return run.pid > 0 && (kill(static_cast<pid_t>(run.pid), 0) == 0 || errno == EPERM);
}

ClaimOutcome claim_decision(const std::optional<RunRecord>& previous, const ClaimPolicy& policy) {
  if (!previous || policy.new_run) return ClaimOutcome::started;
  if (previous->status == RunStatus::finished) return ClaimOutcome::finished_before;
  if (previous->status == RunStatus::pruned) return ClaimOutcome::pruned_before;
  if (run_process_alive(*previous)) return ClaimOutcome::busy;
  if (resumable(previous->status)) return ClaimOutcome::resumed;  // killed or interrupted
  return policy.retry_failed ? ClaimOutcome::started : ClaimOutcome::failed_before;
}

namespace {

// What the file at `path` is, read from its header bytes alone (nothing is opened by SQLite).
// Throws a config Error for a file that must not be touched.
// What check_is_difflabs needs of a database: its application id and its tables.
struct DatabaseHeader {
  uint32_t application_id = 0;
  std::vector<std::string> tables;
};

DatabaseHeader read_header(SQLite::Database& db) {
  DatabaseHeader header;
  header.application_id = static_cast<uint32_t>(db.execAndGet("PRAGMA application_id").getInt64());
  SQLite::Statement tables(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
  while (tables.executeStep()) header.tables.push_back(tables.getColumn(0).getString());
  return header;
}

// Refuses a file that is not a difflab database, before anything writes it. The header is read
// through SQLite, never with a plain read of the file: closing such a descriptor would drop the
// POSIX locks that this process's own connections hold on the database
// (sqlite.org/howtocorrupt.html §2.2.1), e.g. a report opened beside the run that writes it.
void check_is_difflabs(const fs::path& path) {
  std::error_code error;
  if (!fs::exists(path, error)) return;
  if (!fs::is_regular_file(path, error))
    throw ConfigError("not a results database (a folder or a device)", ErrorContext::in_file(path.string()));
  if (fs::file_size(path, error) == 0) return;  // an empty file is an empty database
  DatabaseHeader header;
  try {
    try {
      SQLite::Database db(path.string(), SQLite::OPEN_READONLY);
      header = read_header(db);
    } catch (const SQLite::Exception& first) {
      if (first.getErrorCode() == SQLITE_NOTADB) throw;
      // A WAL database without its -shm file in a folder this process cannot write: immutable.
      SQLite::Database db("file:" + fs::absolute(path).string() + "?immutable=1",
                          SQLite::OPEN_READONLY | SQLite::OPEN_URI);
      header = read_header(db);
    }
  } catch (const SQLite::Exception& failed) {
    if (failed.getErrorCode() == SQLITE_NOTADB)
      throw ConfigError("not an SQLite database",
                        ErrorContext::in_file(path.string(), "give the path of a difflab results database"));
    throw;
  }
  if (header.application_id == kApplicationId) return;
  if (header.application_id != 0)
    throw ConfigError(fmt::format("an SQLite database of another application (application_id 0x{:08x})",
                                  header.application_id),
                      ErrorContext::in_file(path.string(), "difflab leaves it as it is; give another database path"));
  // No application id: an empty database, or one made by a difflab older than the id.
  const std::vector<std::string>& names = header.tables;
  const bool difflabs = std::find(names.begin(), names.end(), "schema_info") != names.end() &&
                        std::find(names.begin(), names.end(), "runs") != names.end();
  if (!names.empty() && !difflabs)
    throw ConfigError(fmt::format("an SQLite database that is not difflab's (tables: {})", fmt::join(names, ", ")),
                      ErrorContext::in_file(path.string(), "difflab leaves it as it is; give another database path"));
}

}  // namespace

// SQLite's WAL needs shared memory between every process that opens the file, which a network
// filesystem does not give: two hosts writing one WAL database corrupt it. The f_type values of
// statfs(2) for the filesystems clusters use.
std::string network_filesystem_name(int64_t magic) {
  switch (static_cast<uint32_t>(magic)) {
    case 0x6969u: return "NFS";
    case 0x0BD00BD0u: return "Lustre";
    case 0x47504653u: return "GPFS";
    case 0xFF534D42u: return "CIFS";
    case 0xFE534D42u: return "SMB2";
    case 0x517Bu: return "SMB";
    case 0x00C36400u: return "CephFS";
    case 0x5346414Fu: return "AFS";
    case 0x013111A8u: return "IBRIX";
    case 0x19830326u: return "BeeGFS";
    default: return "";
  }
}

namespace {

void refuse_network_filesystem(const fs::path& database) {
  const fs::path folder = database.has_parent_path() ? database.parent_path() : fs::path(".");
  int64_t magic = 0;
  if (const char* injected = std::getenv("DIFFLAB_TEST_FILESYSTEM_TYPE")) {
    magic = static_cast<int64_t>(std::strtoull(injected, nullptr, 0));  // the tests' seam
  } else {
    struct statfs info {};
    if (statfs(folder.c_str(), &info) != 0) return;
    magic = static_cast<int64_t>(info.f_type);
  }
  const std::string name = network_filesystem_name(magic);
  if (name.empty()) return;
  throw ConfigError(fmt::format("the results database is on a network filesystem ({}), where SQLite's WAL mode "
                                "corrupts a database that several hosts write", name),
                    ErrorContext::in_file(database.string(),
                                          "give a local path (e.g. under /tmp or the node's scratch), or run the "
                                          "sweep with difflab slurm, whose tasks write shard databases on local "
                                          "disks and merge them with difflab slurm collect"));
}

}  // namespace

ResultsStore::ResultsStore(const fs::path& path, OpenMode mode) : path_(path) {
  try {
    check_is_difflabs(path);
    if (mode == OpenMode::read_only) {
      open_read_only();
      return;
    }
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    refuse_network_filesystem(path);
    db_ = std::make_unique<SQLite::Database>(path.string(),
                                             SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db_->setBusyTimeout(30000);
    db_->exec("PRAGMA journal_mode = WAL");
    migrate();  // foreign keys on after it
  } catch (const SQLite::Exception& error) {
    throw RuntimeError(std::string("cannot open results database: ") + error.what(),
                       ErrorContext::in_file(path.string()));
  } catch (const fs::filesystem_error& error) {
    throw RuntimeError(std::string("cannot create the database folder: ") + error.what(),
                       ErrorContext::in_file(path.string()));
  }
}

// A WAL database needs its -shm file to be read; in a read-only folder or mount without one,
// SQLite can still read it as immutable (nobody can be writing it there).
void ResultsStore::open_read_only() {
  if (!fs::is_regular_file(path_)) throw ConfigError("results database not found", ErrorContext::in_file(path_.string()));
  int version = 0;
  try {
    db_ = std::make_unique<SQLite::Database>(path_.string(), SQLite::OPEN_READONLY);
    db_->setBusyTimeout(30000);
    version = schema_version();
  } catch (const SQLite::Exception&) {
    const std::string uri = "file:" + fs::absolute(path_).string() + "?immutable=1";
    db_ = std::make_unique<SQLite::Database>(uri, SQLite::OPEN_READONLY | SQLite::OPEN_URI);
    version = schema_version();
  }
  if (version > kSchemaVersion)
    throw RuntimeError(fmt::format("results database has schema version {}, newer than this difflab's {}; upgrade difflab",
                                   version, kSchemaVersion), ErrorContext::in_file(path_.string()));
  if (version < kSchemaVersion) {
    // An older database is read through a migrated copy in memory: the file is not written.
    auto memory = std::make_unique<SQLite::Database>(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    SQLite::Backup(*memory, *db_).executeStep();
    db_ = std::move(memory);
    migrate();
  }
}

ResultsStore::~ResultsStore() = default;

void ResultsStore::migrate() {
  auto newer = [&](int version) {
    return RuntimeError("results database has schema version " + std::to_string(version) + ", newer than this difflab's " +
                        std::to_string(kSchemaVersion) + "; upgrade difflab");
  };
  // Read first, outside a write transaction: every open of an up-to-date database (parallel
  // workers, the ranks of a data-parallel run) stays a reader.
  const int seen = schema_version();
  if (seen > kSchemaVersion) throw newer(seen);
  const bool application_id_set =
      db_->execAndGet("PRAGMA application_id").getInt64() == static_cast<int32_t>(kApplicationId);
  if (seen == kSchemaVersion && application_id_set) {
    db_->exec("PRAGMA foreign_keys = ON");
    return;
  }
  // Off while migrating: version 8 rebuilds the runs table, and dropping the old one with foreign
  // keys on would delete every run's params, metrics and artifacts (ON DELETE CASCADE). The pragma
  // is a no-op inside a transaction, so it is set around it; foreign_key_check below verifies.
  db_->exec("PRAGMA foreign_keys = OFF");
  struct ForeignKeysBackOn {
    SQLite::Database& db;
    ~ForeignKeysBackOn() {
      try {
        db.exec("PRAGMA foreign_keys = ON");
      } catch (...) {  // a destructor does not throw; the connection is then unusable anyway
      }
    }
  } back_on{*db_};
  // IMMEDIATE: the write lock first, waiting for another process's migration (busy timeout)
  // rather than failing on upgrading a read lock; then the version again, which it may have done.
  SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  const int version = schema_version();
  if (version > kSchemaVersion) throw newer(version);
  const std::string migrations[] = {kSchemaV1, kSchemaV2, kRunSummaryView, std::string(kSchemaV4) + kAblationView,
                                    kSchemaV5, kSchemaV6, kSchemaV7,
                                    std::string(kSchemaV8) + kRunSummaryView + kAblationView, kSchemaV9,
                                    kSchemaV10, kSchemaV11, kSchemaV12};
  for (int next = version + 1; next <= kSchemaVersion; ++next) {
    db_->exec(migrations[next - 1]);
    db_->exec("INSERT INTO schema_info (version) VALUES (" + std::to_string(next) + ")");
  }
  if (version < kSchemaVersion) {
    SQLite::Statement violations(*db_, "PRAGMA foreign_key_check");
    if (violations.executeStep())
      throw RuntimeError(fmt::format("migrating to schema {} left a row of {} without its run", kSchemaVersion,
                                     violations.getColumn(0).getString()));
  }
  if (db_->execAndGet("PRAGMA application_id").getInt64() != static_cast<int32_t>(kApplicationId))
    db_->exec(fmt::format("PRAGMA application_id = {}", static_cast<int32_t>(kApplicationId)));
  transaction.commit();
}

bool ResultsStore::is_database_error(const std::exception& error) {
  return dynamic_cast<const SQLite::Exception*>(&error) != nullptr;
}

int ResultsStore::schema_version() const {
  if (!db_->tableExists("schema_info")) return 0;  // a new, empty database
  SQLite::Statement query(*db_, "SELECT MAX(version) FROM schema_info");
  return query.executeStep() && !query.getColumn(0).isNull() ? query.getColumn(0).getInt() : 0;
}

Claim ResultsStore::claim_run(const Experiment& experiment, const std::string& versions_json,
                              const ClaimPolicy& policy, const std::string& variant) {
  // IMMEDIATE takes the write lock first: two workers cannot both see "no run" and both start.
  SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  Claim claim;
  claim.previous = latest_run(experiment.config_hash());
  claim.outcome = claim_decision(claim.previous, policy);
  if (claim.previous) claim.run_id = claim.previous->id;
  if (claim.outcome == ClaimOutcome::resumed) mark_running(claim.run_id);
  if (claim.outcome == ClaimOutcome::started && !policy.new_run && !trained_network(experiment)) {
    // Another live process training this training configuration: wait for its network (and
    // reuse it) rather than train the same network twice.
    SQLite::Statement training(*db_, std::string(kRunColumns) +
                                         " WHERE training_hash = ? AND config_hash != ? AND status = 'running' "
                                         "AND trained_by IS NULL");
    training.bind(1, experiment.training_hash());
    training.bind(2, experiment.config_hash());
    while (training.executeStep()) {
      RunRecord other = read_run(training);
      if (!run_process_alive(other)) continue;
      claim.outcome = ClaimOutcome::busy;
      claim.previous = other;
      claim.run_id = other.id;
      break;
    }
  }
  if (claim.outcome == ClaimOutcome::started) claim.run_id = insert_run(experiment, versions_json, variant);
  transaction.commit();
  return claim;
}

int64_t ResultsStore::start_run(const Experiment& experiment, const std::string& versions_json,
                                const std::string& variant) {
  SQLite::Transaction transaction(*db_);
  const int64_t run_id = insert_run(experiment, versions_json, variant);
  transaction.commit();
  return run_id;
}

int64_t ResultsStore::insert_run(const Experiment& experiment, const std::string& versions_json,
                                 const std::string& variant) {
  SQLite::Statement insert(*db_,
                           "INSERT INTO runs (name, config_hash, config_toml, status, started_at, "
                           "heartbeat_at, host, pid, versions, variant_hash, variant, training_hash, attempt) "
                           "VALUES (?, ?, ?, 'running', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), "
                           "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?, ?, ?, ?, ?, lower(hex(randomblob(16))))");
  insert.bind(1, experiment.settings().experiment.name);
  insert.bind(2, experiment.config_hash());
  insert.bind(3, experiment.to_toml());
  insert.bind(4, host_name());
  insert.bind(5, static_cast<int64_t>(getpid()));
  insert.bind(6, versions_json);
  insert.bind(7, experiment.variant_hash());
  insert.bind(8, variant);
  insert.bind(9, experiment.training_hash());
  insert.exec();
  int64_t run_id = db_->getLastInsertRowid();

  SQLite::Statement param(*db_,
                          "INSERT INTO params (run_id, key, value, number, type) "
                          "VALUES (?, ?, ?, ?, ?)");
  for (const auto& [key, value] : experiment.leaves()) {
    param.bind(1, run_id);
    param.bind(2, key);
    param.bind(3, format_value(value));
    if (const auto* i = std::get_if<int64_t>(&value)) param.bind(4, *i);
    else if (const auto* d = std::get_if<double>(&value)) param.bind(4, *d);
    else if (const auto* b = std::get_if<bool>(&value)) param.bind(4, *b ? 1 : 0);
    else param.bind(4);
    param.bind(5, param_type(value));
    param.exec();
    param.reset();
  }
  return run_id;
}

void ResultsStore::mark_running(int64_t run_id) {
  SQLite::Statement update(*db_,
                           "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, "
                           "host = ?, pid = ?, heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                           "WHERE id = ?");
  update.bind(1, host_name());
  update.bind(2, static_cast<int64_t>(getpid()));
  update.bind(3, run_id);
  update.exec();
}

std::optional<RunRecord> ResultsStore::latest_run(const std::string& config_hash) const {
  SQLite::Statement query(*db_, std::string(kRunColumns) +
                                    " WHERE config_hash = ? ORDER BY id DESC LIMIT 1");
  query.bind(1, config_hash);
  if (!query.executeStep()) return std::nullopt;
  return read_run(query);
}

void ResultsStore::heartbeat(int64_t run_id) {
  SQLite::Statement update(*db_, "UPDATE runs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                                 "WHERE id = ? AND host = ? AND pid = ?");
  update.bind(1, run_id);
  update.bind(2, host_name());
  update.bind(3, static_cast<int64_t>(getpid()));
  update.exec();
}

std::optional<TrainedNetwork> ResultsStore::trained_network(const Experiment& experiment) const {
  SQLite::Statement query(*db_,
                          "SELECT r.id, a.path FROM runs r JOIN artifacts a ON a.run_id = r.id AND a.kind = 'checkpoint' "
                          "WHERE r.training_hash = ? AND r.config_hash != ? AND r.status = 'finished' "
                          "AND r.trained_by IS NULL ORDER BY r.id DESC, a.epoch DESC");
  query.bind(1, experiment.training_hash());
  query.bind(2, experiment.config_hash());
  while (query.executeStep()) {
    TrainedNetwork network{query.getColumn(0).getInt64(), query.getColumn(1).getString()};
    if (fs::is_regular_file(network.checkpoint)) return network;
  }
  return std::nullopt;
}

void ResultsStore::set_trained_by(int64_t run_id, int64_t source_run_id) {
  SQLite::Statement update(*db_, "UPDATE runs SET trained_by = ? WHERE id = ?");
  update.bind(1, source_run_id);
  update.bind(2, run_id);
  update.exec();
}

void ResultsStore::finish_run(int64_t run_id) {
  SQLite::Statement update(*db_,
                           "UPDATE runs SET status = 'finished', "
                           "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                           "WHERE id = ? AND host = ? AND pid = ?");
  update.bind(1, run_id);
  update.bind(2, host_name());
  update.bind(3, static_cast<int64_t>(getpid()));
  update.exec();
}

void ResultsStore::close_run(int64_t run_id, RunStatus status, const std::string& message) {
  if (status == RunStatus::running || status == RunStatus::finished)
    throw std::logic_error("difflab: close_run takes an ending status other than finished (finish_run)");
  SQLite::Statement update(*db_,
                           "UPDATE runs SET status = ?, error = ?, "
                           "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                           "WHERE id = ? AND host = ? AND pid = ?");
  update.bind(1, to_string(status));
  update.bind(2, message);
  update.bind(3, run_id);
  update.bind(4, host_name());
  update.bind(5, static_cast<int64_t>(getpid()));
  update.exec();
}

void ResultsStore::set_processes(int64_t run_id, int64_t world_size, const std::string& backend) {
  SQLite::Statement update(*db_, "UPDATE runs SET world_size = ?, backend = ? WHERE id = ?");
  update.bind(1, world_size);
  if (world_size > 1) update.bind(2, backend);
  else update.bind(2);
  update.bind(3, run_id);
  update.exec();
}

int64_t ResultsStore::abandon_running(const std::string& config_hash, const std::string& reason) {
  SQLite::Statement update(*db_,
                           "UPDATE runs SET status = 'interrupted', error = ?, "
                           "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                           "WHERE config_hash = ? AND status = 'running'");
  update.bind(1, reason);
  update.bind(2, config_hash);
  return update.exec();
}

struct RunHeartbeat::State {
  fs::path database;
  int64_t run_id = 0;
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::atomic<bool> lost{false};
  std::thread thread;
};

RunHeartbeat::RunHeartbeat(const fs::path& database, int64_t run_id, double interval_seconds)
    : state_(std::make_unique<State>()) {
  state_->database = database;
  state_->run_id = run_id;
  State* state = state_.get();
  state->thread = std::thread([state, interval_seconds] {
    std::unique_ptr<SQLite::Database> db;
    const auto interval = std::chrono::duration<double>(interval_seconds);
    std::unique_lock<std::mutex> lock(state->mutex);
    while (!state->wake.wait_for(lock, interval, [state] { return state->stop; })) {
      try {
        if (!db) {
          db = std::make_unique<SQLite::Database>(state->database.string(), SQLite::OPEN_READWRITE);
          db->setBusyTimeout(30000);
        }
        SQLite::Statement update(*db, "UPDATE runs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                                      "WHERE id = ? AND status = 'running' AND host = ? AND pid = ?");
        update.bind(1, state->run_id);
        update.bind(2, host_name());
        update.bind(3, static_cast<int64_t>(getpid()));
        if (update.exec() == 0) state->lost = true;
      } catch (const std::exception& error) {
        std::fprintf(stderr, "difflab: heartbeat of run %ld not written: %s\n", static_cast<long>(state->run_id),
                     error.what());
      }
    }
  });
}

RunHeartbeat::~RunHeartbeat() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->wake.notify_all();
  state_->thread.join();
}

bool RunHeartbeat::lost() const { return state_->lost; }

void ResultsStore::record_epoch(int64_t run_id, int64_t epoch, int64_t step,
                                const std::vector<std::pair<std::string, double>>& metrics,
                                const std::vector<ArtifactRecord>& artifacts,
                                const std::optional<KidRecord>& kid,
                                const std::vector<SampleMetricRecord>& samples) {
  SQLite::Transaction transaction(*db_);
  heartbeat(run_id);
  write_metric_rows(*db_, "metrics", run_id, epoch, step, metrics);
  SQLite::Statement artifact(*db_,
                             "INSERT OR REPLACE INTO artifacts (run_id, kind, path, epoch) "
                             "VALUES (?, ?, ?, ?)");
  for (const auto& record : artifacts) {
    artifact.bind(1, run_id);
    artifact.bind(2, record.kind);
    artifact.bind(3, record.path);
    artifact.bind(4, record.epoch);
    artifact.exec();
    artifact.reset();
  }
  if (kid) {
    SQLite::Statement insert(*db_,
                             "INSERT OR REPLACE INTO kid (run_id, epoch, mean, std, protocol, "
                             "features, sampler, diffusion_steps, real_count, generated_count, nfe) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert.bind(1, run_id);
    insert.bind(2, epoch);
    insert.bind(3, kid->mean);
    insert.bind(4, kid->std);
    insert.bind(5, kid->protocol);
    insert.bind(6, kid->features);
    insert.bind(7, kid->sampler);
    insert.bind(8, kid->diffusion_steps);
    insert.bind(9, kid->real_count);
    insert.bind(10, kid->generated_count);
    insert.bind(11, kid->nfe);
    insert.exec();
  }
  insert_sample_metrics(*db_, run_id, epoch, samples);
  transaction.commit();
}

void ResultsStore::record_evaluation(int64_t run_id, int64_t epoch, const std::vector<SampleMetricRecord>& samples) {
  SQLite::Transaction transaction(*db_);
  insert_sample_metrics(*db_, run_id, epoch, samples);
  transaction.commit();
}

std::vector<std::pair<int64_t, SampleMetricRecord>> ResultsStore::sample_metrics(int64_t run_id) const {
  std::vector<std::pair<int64_t, SampleMetricRecord>> rows;
  if (!db_->tableExists("sample_metrics")) return rows;  // a read-only database of an older schema
  SQLite::Statement query(*db_,
                          "SELECT epoch, metric, value, features, sampler, diffusion_steps, nfe, real_count, "
                          "generated_count, COALESCE(k, 0), source FROM sample_metrics WHERE run_id = ? "
                          "ORDER BY epoch, source, metric");
  query.bind(1, run_id);
  while (query.executeStep()) {
    SampleMetricRecord record;
    record.metric = query.getColumn(1).getString();
    record.value = query.getColumn(2).getDouble();
    record.features = query.getColumn(3).getString();
    record.sampler = query.getColumn(4).getString();
    record.diffusion_steps = query.getColumn(5).getInt64();
    record.nfe = query.getColumn(6).getInt64();
    record.real_count = query.getColumn(7).getInt64();
    record.generated_count = query.getColumn(8).getInt64();
    record.k = query.getColumn(9).getInt64();
    record.source = query.getColumn(10).getString();
    rows.emplace_back(query.getColumn(0).getInt64(), std::move(record));
  }
  return rows;
}

std::vector<std::pair<int64_t, KidRecord>> ResultsStore::kid(int64_t run_id) const {
  SQLite::Statement query(*db_,
                          "SELECT epoch, mean, std, protocol, features, sampler, diffusion_steps, "
                          "real_count, generated_count, nfe FROM kid WHERE run_id = ? ORDER BY epoch");
  query.bind(1, run_id);
  std::vector<std::pair<int64_t, KidRecord>> result;
  while (query.executeStep()) {
    KidRecord record{query.getColumn(1).getDouble(), query.getColumn(2).getDouble(),
                     query.getColumn(3).getString(), query.getColumn(4).getString(),
                     query.getColumn(5).getString(), query.getColumn(6).getInt64(),
                     query.getColumn(7).getInt64(),  query.getColumn(8).getInt64(),
                     query.getColumn(9).getInt64()};
    result.emplace_back(query.getColumn(0).getInt64(), record);
  }
  return result;
}

std::optional<RunRecord> ResultsStore::run(int64_t run_id) const {
  SQLite::Statement query(*db_, std::string(kRunColumns) + " WHERE id = ?");
  query.bind(1, run_id);
  if (!query.executeStep()) return std::nullopt;
  return read_run(query);
}

std::optional<ResultsStore::BestKid> ResultsStore::best_kid(int64_t run_id) const {
  SQLite::Statement query(*db_, "SELECT best_kid, best_kid_epoch FROM run_summary WHERE run_id = ?");
  query.bind(1, run_id);
  if (!query.executeStep() || query.getColumn(0).isNull()) return std::nullopt;
  return BestKid{query.getColumn(0).getDouble(), query.getColumn(1).getInt64()};
}

std::vector<RunRecord> ResultsStore::runs() const {
  SQLite::Statement query(*db_, std::string(kRunColumns) + " ORDER BY id");
  std::vector<RunRecord> result;
  while (query.executeStep()) result.push_back(read_run(query));
  return result;
}

std::vector<std::pair<std::string, std::string>> ResultsStore::params(int64_t run_id) const {
  SQLite::Statement query(*db_, "SELECT key, value FROM params WHERE run_id = ? ORDER BY rowid");
  query.bind(1, run_id);
  std::vector<std::pair<std::string, std::string>> result;
  while (query.executeStep())
    result.emplace_back(query.getColumn(0).getString(), query.getColumn(1).getString());
  return result;
}

namespace {

// A run's rows of a metrics table (key, epoch, step, value), in the query's order.
std::vector<MetricRecord> metric_rows(SQLite::Database& db, const std::string& sql, int64_t run_id) {
  SQLite::Statement query(db, sql);
  query.bind(1, run_id);
  std::vector<MetricRecord> result;
  while (query.executeStep())
    result.push_back({query.getColumn(0).getString(), query.getColumn(1).getInt64(),
                      query.getColumn(2).getInt64(), query.getColumn(3).getDouble()});
  return result;
}

}  // namespace

std::vector<MetricRecord> ResultsStore::metrics(int64_t run_id) const {
  return metric_rows(*db_, "SELECT key, epoch, step, value FROM metrics WHERE run_id = ? ORDER BY epoch, key", run_id);
}

void ResultsStore::record_steps(int64_t run_id, int64_t epoch, int64_t step,
                                const std::vector<std::pair<std::string, double>>& values) {
  SQLite::Transaction transaction(*db_);
  write_metric_rows(*db_, "step_metrics", run_id, epoch, step, values);
  transaction.commit();
}

std::vector<MetricRecord> ResultsStore::step_metrics(int64_t run_id) const {
  return metric_rows(*db_, "SELECT key, epoch, step, value FROM step_metrics WHERE run_id = ? ORDER BY step, key",
                     run_id);
}

std::vector<ArtifactRecord> ResultsStore::artifacts(int64_t run_id) const {
  SQLite::Statement query(
      *db_, "SELECT kind, path, epoch FROM artifacts WHERE run_id = ? ORDER BY epoch, kind");
  query.bind(1, run_id);
  std::vector<ArtifactRecord> result;
  while (query.executeStep())
    result.push_back({query.getColumn(0).getString(), query.getColumn(1).getString(),
                      query.getColumn(2).getInt64()});
  return result;
}

namespace {

DecisionRecord read_decision(SQLite::Statement& query) {
  DecisionRecord record;
  record.run_id = query.getColumn(0).getInt64();
  record.rung = query.getColumn(1).getInt64();
  record.epoch = query.getColumn(2).getInt64();
  record.method = query.getColumn(3).getString();
  record.bracket = query.getColumn(4).getInt64();
  record.metric = query.getColumn(5).getString();
  record.value = query.getColumn(6).isNull() ? std::nan("") : query.getColumn(6).getDouble();
  record.cutoff = query.getColumn(7).isNull() ? std::nan("") : query.getColumn(7).getDouble();
  record.rank = query.getColumn(8).getInt64();
  record.of = query.getColumn(9).getInt64();
  std::string peers = query.getColumn(10).getString();
  for (char& c : peers)
    if (c == '[' || c == ']' || c == ',' || c == '"') c = ' ';
  std::istringstream attempts(peers);
  for (std::string attempt; attempts >> attempt;) record.peers.push_back(attempt);
  record.prune = query.getColumn(11).getString() == "prune";
  record.decided_at = query.getColumn(12).getString();
  return record;
}

constexpr const char* kDecisionColumns =
    "SELECT run_id, rung, epoch, method, bracket, metric, value, cutoff, rank, of, peers, decision, decided_at "
    "FROM decisions";

void bind_real(SQLite::Statement& statement, int index, double value) {
  if (std::isnan(value)) statement.bind(index);
  else statement.bind(index, value);
}

}  // namespace

std::optional<double> ResultsStore::metric_at(int64_t run_id, const std::string& metric, int64_t epoch) const {
  SQLite::Statement query(*db_, "SELECT value FROM metrics WHERE run_id = ? AND key = ? AND epoch = ?");
  query.bind(1, run_id);
  query.bind(2, metric);
  query.bind(3, epoch);
  if (!query.executeStep()) return std::nullopt;
  return query.getColumn(0).getDouble();
}

std::optional<DecisionRecord> ResultsStore::decide(
    int64_t run_id, int64_t rung, int64_t epoch, const std::string& metric,
    const std::function<std::vector<RungPeer>()>& peers,
    const std::function<std::optional<DecisionRecord>(const RungView&)>& decide) {
  SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  {
    SQLite::Statement recorded(*db_, std::string(kDecisionColumns) + " WHERE run_id = ? AND rung = ?");
    recorded.bind(1, run_id);
    recorded.bind(2, rung);
    if (recorded.executeStep()) return read_decision(recorded);
  }
  RungView view;
  const std::optional<double> own = metric_at(run_id, metric, epoch);
  if (!own) return std::nullopt;  // not recorded at this epoch: nothing to decide
  view.value = *own;
  SQLite::Statement history(*db_, "SELECT value FROM metrics WHERE run_id = ? AND key = ? AND epoch <= ? ORDER BY epoch");
  history.bind(1, run_id);
  history.bind(2, metric);
  history.bind(3, epoch);
  while (history.executeStep()) view.history.push_back(history.getColumn(0).getDouble());
  view.peers = peers();
  std::optional<DecisionRecord> record = decide(view);
  if (!record) return std::nullopt;
  record->run_id = run_id;
  record->rung = rung;
  record->epoch = epoch;
  record->metric = metric;
  SQLite::Statement insert(*db_, "INSERT INTO decisions (run_id, rung, epoch, method, bracket, metric, value, cutoff, "
                                 "rank, of, peers, decision, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                                 "COALESCE(?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))");
  insert.bind(1, run_id);
  insert.bind(2, rung);
  insert.bind(3, epoch);
  insert.bind(4, record->method);
  insert.bind(5, record->bracket);
  insert.bind(6, metric);
  bind_real(insert, 7, record->value);
  bind_real(insert, 8, record->cutoff);
  insert.bind(9, record->rank);
  insert.bind(10, record->of);
  std::vector<std::string> quoted;
  for (const std::string& attempt : record->peers) quoted.push_back("\"" + attempt + "\"");
  insert.bind(11, fmt::format("[{}]", fmt::join(quoted, ", ")));
  insert.bind(12, record->prune ? "prune" : "continue");
  if (!record->decided_at.empty()) insert.bind(13, record->decided_at);  // restored: when it was taken
  insert.exec();
  if (record->prune) {
    SQLite::Statement prune(*db_, "UPDATE runs SET status = 'pruned', error = ? WHERE id = ? AND status = 'interrupted'");
    prune.bind(1, fmt::format("pruned at rung {} (epoch {}): {} {:.6g}, cutoff {:.6g}", rung, epoch, metric,
                              record->value, record->cutoff));
    prune.bind(2, run_id);
    prune.exec();
  }
  transaction.commit();
  return record;
}

std::vector<DecisionRecord> ResultsStore::decisions(int64_t run_id) const {
  SQLite::Statement query(*db_, std::string(kDecisionColumns) + (run_id > 0 ? " WHERE run_id = ?" : "") +
                                    " ORDER BY rung, decided_at, run_id");
  if (run_id > 0) query.bind(1, run_id);
  std::vector<DecisionRecord> all;
  while (query.executeStep()) all.push_back(read_decision(query));
  return all;
}

void ResultsStore::record_sweep_trial(int64_t run_id, const SweepTrialRecord& record) {
  SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  insert_sweep(record);
  SQLite::Statement trial(*db_, "INSERT OR REPLACE INTO sweep_trials (run_id, sweep, trial, bracket) VALUES (?, ?, ?, ?)");
  trial.bind(1, run_id);
  trial.bind(2, record.sweep);
  trial.bind(3, record.trial);
  trial.bind(4, record.bracket);
  trial.exec();
  transaction.commit();
}

void ResultsStore::record_sweep(const SweepTrialRecord& record) { insert_sweep(record); }

void ResultsStore::insert_sweep(const SweepTrialRecord& record) {
  SQLite::Statement sweep(*db_,
                          "INSERT OR IGNORE INTO sweeps (sweep, name, trials, method, settings, rule, metric, direction, "
                          "min_epochs, max_epochs, reduction_factor, brackets, startup_trials, warmup_epochs) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  sweep.bind(1, record.sweep);
  sweep.bind(2, record.name);
  sweep.bind(3, record.trials);
  sweep.bind(4, record.method);
  sweep.bind(5, record.settings);
  if (!record.rule.empty()) {
    sweep.bind(6, record.rule);
    sweep.bind(7, record.metric);
    sweep.bind(8, record.maximize ? "maximize" : "minimize");
    if (record.min_epochs) sweep.bind(9, *record.min_epochs);
    sweep.bind(10, record.max_epochs);
    if (record.reduction_factor) sweep.bind(11, *record.reduction_factor);
    sweep.bind(12, record.brackets);
    if (record.startup_trials) sweep.bind(13, *record.startup_trials);
    if (record.warmup_epochs) sweep.bind(14, *record.warmup_epochs);
  }
  sweep.exec();
}

std::optional<RunRecord> ResultsStore::trial_run(const std::string& sweep, int64_t trial) const {
  SQLite::Statement query(*db_, std::string(kRunColumns) +
                                    " WHERE id = (SELECT MAX(run_id) FROM sweep_trials WHERE sweep = ? AND trial = ?)");
  query.bind(1, sweep);
  query.bind(2, trial);
  if (!query.executeStep()) return std::nullopt;
  return read_run(query);
}

std::optional<RunRecord> ResultsStore::newest_run() const {
  SQLite::Statement query(*db_, std::string(kRunColumns) + " ORDER BY id DESC LIMIT 1");
  if (!query.executeStep()) return std::nullopt;
  return read_run(query);
}

void ResultsStore::write_transaction(const std::function<void()>& body) {
  SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  body();
  transaction.commit();
}

void ResultsStore::record_proposal(const ProposalRecord& record) {
  SQLite::Statement insert(*db_,
                           "INSERT OR IGNORE INTO proposals (sweep, trial, sampler, seed, draw, random, conditioned, "
                           "assignments, point_values, score, proposed_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))");
  insert.bind(1, record.sweep);
  insert.bind(2, record.trial);
  insert.bind(3, record.sampler);
  insert.bind(4, static_cast<int64_t>(record.seed));  // the 64 bits, as SQLite's signed integer
  insert.bind(5, record.draw);
  insert.bind(6, record.random ? 1 : 0);
  insert.bind(7, record.conditioned);
  insert.bind(8, record.assignments);
  insert.bind(9, record.values);
  if (record.score) insert.bind(10, *record.score);
  insert.exec();
}

std::vector<ProposalRecord> ResultsStore::proposals(const std::string& sweep) const {
  SQLite::Statement query(*db_,
                          "SELECT sweep, trial, sampler, seed, draw, random, conditioned, assignments, point_values, "
                          "score FROM proposals WHERE ? = '' OR sweep = ? ORDER BY sweep, trial");
  query.bind(1, sweep);
  query.bind(2, sweep);
  std::vector<ProposalRecord> records;
  while (query.executeStep()) {
    ProposalRecord record;
    record.sweep = query.getColumn(0).getString();
    record.trial = query.getColumn(1).getInt64();
    record.sampler = query.getColumn(2).getString();
    record.seed = static_cast<uint64_t>(query.getColumn(3).getInt64());
    record.draw = query.getColumn(4).getInt64();
    record.random = query.getColumn(5).getInt() != 0;
    record.conditioned = query.getColumn(6).getString();
    record.assignments = query.getColumn(7).getString();
    record.values = query.getColumn(8).getString();
    if (!query.getColumn(9).isNull()) record.score = query.getColumn(9).getDouble();
    records.push_back(std::move(record));
  }
  return records;
}

std::optional<double> ResultsStore::attempt_metric_at(const std::string& attempt, const std::string& metric,
                                                      int64_t epoch) const {
  SQLite::Statement query(*db_, "SELECT id FROM runs WHERE attempt = ?");
  query.bind(1, attempt);
  if (!query.executeStep()) return std::nullopt;
  return metric_at(query.getColumn(0).getInt64(), metric, epoch);
}

std::optional<std::string> ResultsStore::sweep_settings(const std::string& sweep) const {
  SQLite::Statement query(*db_, "SELECT settings FROM sweeps WHERE sweep = ?");
  query.bind(1, sweep);
  if (!query.executeStep()) return std::nullopt;
  return query.getColumn(0).getString();
}

std::optional<SweepTrialRecord> ResultsStore::sweep_trial(int64_t run_id) const {
  SQLite::Statement query(*db_,
                          "SELECT s.sweep, s.name, s.trials, t.trial, t.bracket, s.method, s.settings, "
                          "COALESCE(s.rule, ''), COALESCE(s.metric, ''), COALESCE(s.direction, 'minimize'), "
                          "s.min_epochs, COALESCE(s.max_epochs, 0), s.reduction_factor, "
                          "COALESCE(s.brackets, 0), s.startup_trials, s.warmup_epochs "
                          "FROM sweep_trials t JOIN sweeps s ON s.sweep = t.sweep WHERE t.run_id = ?");
  query.bind(1, run_id);
  if (!query.executeStep()) return std::nullopt;
  SweepTrialRecord record;
  record.sweep = query.getColumn(0).getString();
  record.name = query.getColumn(1).getString();
  record.trials = query.getColumn(2).getInt64();
  record.trial = query.getColumn(3).getInt64();
  record.bracket = query.getColumn(4).getInt64();
  record.method = query.getColumn(5).getString();
  record.settings = query.getColumn(6).getString();
  record.rule = query.getColumn(7).getString();
  record.metric = query.getColumn(8).getString();
  record.maximize = query.getColumn(9).getString() == "maximize";
  if (!query.getColumn(10).isNull()) record.min_epochs = query.getColumn(10).getInt64();
  record.max_epochs = query.getColumn(11).getInt64();
  if (!query.getColumn(12).isNull()) record.reduction_factor = query.getColumn(12).getInt64();
  record.brackets = query.getColumn(13).getInt64();
  if (!query.getColumn(14).isNull()) record.startup_trials = query.getColumn(14).getInt64();
  if (!query.getColumn(15).isNull()) record.warmup_epochs = query.getColumn(15).getInt64();
  return record;
}

}  // namespace difflab
