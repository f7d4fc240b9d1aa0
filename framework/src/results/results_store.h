// ResultsStore: the SQLite results database (runs, params, metrics, artifacts), committed as
// results happen, in WAL mode so that readers never block a running experiment.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "difflab/params.h"
#include "results/run_status.h"

namespace SQLite {
class Database;
}

namespace difflab {

class Experiment;

// This machine's host name, as recorded on run rows.
std::string host_name();

constexpr int kSchemaVersion = 12;

// A running run's process refreshes its row's heartbeat every kHeartbeatSeconds; a "running" row
// whose heartbeat is older than kLeaseSeconds (or, on this host, whose process is gone) belongs
// to a killed process and may be claimed again.
constexpr double kHeartbeatSeconds = 10.0;
constexpr double kLeaseSeconds = 60.0;

struct RunRecord {
  int64_t id = 0;
  std::string name;
  std::string config_hash;
  std::string config_toml;
  RunStatus status = RunStatus::running;
  std::string error;
  std::string started_at;
  std::string finished_at;
  std::string host;
  int64_t pid = 0;
  double heartbeat_age_seconds = -1.0;  // -1 when never
  int64_t trained_by = 0;  // the run whose trained network this run evaluates; 0: trained itself
  std::string attempt;     // unique across databases (shards merge by it)
};

// A finished run's trained network that another configuration can reuse.
struct TrainedNetwork {
  int64_t run_id = 0;
  std::filesystem::path checkpoint;  // its final checkpoint
};

// Whether the process that owns a "running" row is still there (see kLeaseSeconds).
bool run_process_alive(const RunRecord& run);

// What claim_run did with a configuration.
enum class ClaimOutcome {
  started,          // a new run row, status running, owned by this process
  resumed,          // a killed or interrupted run taken back (continue from its checkpoint)
  finished_before,  // finished already: nothing to do
  failed_before,    // failed or diverged before, and retry_failed is off
  pruned_before,    // an adaptive sweep pruned it: its decision stands
  busy,             // running in another live process
};

struct ClaimPolicy {
  bool new_run = false;       // always start a new run row
  bool retry_failed = false;  // start a new run for a configuration that failed or diverged
};

struct Claim {
  ClaimOutcome outcome = ClaimOutcome::started;
  int64_t run_id = 0;              // the claimed run, or the one that made us skip
  std::optional<RunRecord> previous;  // the configuration's newest run before the claim
};

// What a claim does, given the configuration's newest run (the rule, without the database).
ClaimOutcome claim_decision(const std::optional<RunRecord>& previous, const ClaimPolicy& policy);

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
  int64_t nfe = 0;              // network evaluations the sampler spent per generated image batch
};

// A sample metric besides KID (the sample_metrics table, schema 12): FID, precision, recall,
// density or coverage at an epoch, with what it compared (KID's columns: the kid table).
struct SampleMetricRecord {
  std::string metric;  // fid | precision | recall | density | coverage
  double value = 0.0;
  std::string features, sampler;
  int64_t diffusion_steps = 0, nfe = 0;
  int64_t real_count = 0, generated_count = 0;
  int64_t k = 0;  // the k-NN metrics' neighbours; 0 for fid
  std::string source = "epoch";  // epoch: the run's own evaluation; evaluate: difflab evaluate
};

// One decision of an adaptive sweep about a run at a rung (the decisions table): what it saw and
// what it decided, so that it can be explained and replayed from the database alone.
struct DecisionRecord {
  int64_t run_id = 0;
  int64_t rung = 0;    // the rung's index (the median rule: the epoch)
  int64_t epoch = 0;   // the epoch it was taken after
  std::string method;  // asha | hyperband | successive_halving | median
  int64_t bracket = 0;
  std::string metric;
  double value = 0.0;   // the run's value of the metric (median: its best so far)
  double cutoff = 0.0;  // the value it had to match: the k-th best, or the median
  int64_t rank = 0;     // its rank at the rung (1 = best), 0 where the rule ranks nothing
  int64_t of = 0;       // how many values the rung had, its own included
  std::vector<std::string> peers;  // the attempts (runs.attempt) of the runs it was compared with
  bool prune = false;          // else it goes on (is promoted)
  std::string decided_at;
};

// A row of the proposals table (schema 11): a model-based sweep's proposal for one trial.
struct ProposalRecord {
  std::string sweep;
  int64_t trial = 0;
  std::string sampler;
  uint64_t seed = 0;
  int64_t draw = 0;
  bool random = false;
  std::string conditioned;  // the trials it saw: "trial attempt state step value v1 .. vD" lines
  std::string assignments;  // "key=value" lines
  std::string values;       // one per dimension, space-separated
  std::optional<double> score;
};

// The sweep a run belongs to and its place in it (the sweeps and sweep_trials tables): what a
// decision needs besides the rows, so that it can be replayed from the database alone.
struct SweepTrialRecord {
  std::string sweep;     // the sweep's hash
  std::string name;      // experiment.name
  int64_t trials = 0;    // points in the sweep
  int64_t trial = 0;     // this run's position, from 0
  int64_t bracket = 0;   // hyperband's bracket of the trial; 0 otherwise
  std::string method;    // [sweep] method
  std::string settings;  // the [sweep] table as TOML
  // An adaptive sweep's rule and settings; rule empty: none (the columns are NULL).
  std::string rule;
  std::string metric;
  bool maximize = false;
  int64_t max_epochs = 0, brackets = 0;
  // The rule's own keys where it takes them (the successive-halving family: min_epochs,
  // reduction_factor; median: startup_trials, warmup_epochs); NULL where it does not. Every
  // strategy's keys, these and any other, are in `settings`.
  std::optional<int64_t> min_epochs, reduction_factor, startup_trials, warmup_epochs;
};

// What a run at a rung is compared with: its own value and history, and each other trial's
// latest run with its status and its value at that epoch.
struct RungPeer {
  int64_t run_id = 0;   // in the database it was read from
  std::string attempt;  // unique across databases
  RunStatus status = RunStatus::running;
  std::optional<double> value;  // none: it has not recorded the epoch
};
struct RungView {
  double value = 0.0;
  std::vector<double> history;  // the run's values of the metric at every epoch up to this one
  std::vector<RungPeer> peers;
};

// PRAGMA application_id of difflab's databases ("DFLB"): a file is recognised as difflab's by it
// (or, for databases made before it was set, by its schema_info table) before anything writes.
constexpr uint32_t kApplicationId = 0x44464C42u;

enum class OpenMode {
  read_write,  // create it if absent, migrate it forward, switch to WAL
  read_only,   // readers (results, sample, report): never write, work in read-only folders and mounts;
               // a database of an older schema is read through a copy migrated in memory
};

// The name of a network filesystem from its statfs(2) f_type ("NFS", "Lustre", "GPFS", "CIFS",
// ...), or "" for a local one. A results database is not opened for writing on one (WAL).
std::string network_filesystem_name(int64_t magic);

class ResultsStore {
 public:
  // Opens (or, read_write, creates) the database and its folder. A file that is not difflab's
  // (not SQLite, or another application's SQLite database) is refused with a config Error
  // before anything is written, and left exactly as it was. Writing a database on a network
  // filesystem is refused (a config Error naming it; DIFFLAB_TEST_FILESYSTEM_TYPE=0xMAGIC
  // stands in for statfs in tests).
  explicit ResultsStore(const std::filesystem::path& path, OpenMode mode = OpenMode::read_write);
  ~ResultsStore();
  ResultsStore(const ResultsStore&) = delete;
  ResultsStore& operator=(const ResultsStore&) = delete;

  int schema_version() const;
  // Whether `error` came from SQLite (it then names no file).
  static bool is_database_error(const std::exception& error);

  // Decides, atomically (BEGIN IMMEDIATE: one claimer at a time across processes), what this
  // process does with the experiment's configuration, and takes the run if it is to be done.
  Claim claim_run(const Experiment& experiment, const std::string& versions_json,
                  const ClaimPolicy& policy = {}, const std::string& variant = "");
  // Creates the run row (status running) with its params, in one transaction. `variant` is the
  // sweep point without its seed (shown by the ablation view).
  int64_t start_run(const Experiment& experiment, const std::string& versions_json,
                    const std::string& variant = "");
  // Takes an interrupted run back (status running, this host and process).
  void mark_running(int64_t run_id);
  void heartbeat(int64_t run_id);
  // The newest finished run that trained a network under `experiment`'s training configuration
  // (Experiment::training_hash) with other sampling or evaluation settings, if its final
  // checkpoint is still on disk.
  std::optional<TrainedNetwork> trained_network(const Experiment& experiment) const;
  void set_trained_by(int64_t run_id, int64_t source_run_id);
  // Close a run; only a row this process owns (host and pid) is changed.
  void finish_run(int64_t run_id);
  // Ends a run as failed, diverged, interrupted or pruned, with its message.
  void close_run(int64_t run_id, RunStatus status, const std::string& message);
  // Records how many processes train the run (data parallel) and their backend; set again on
  // every resume, which may use another number.
  void set_processes(int64_t run_id, int64_t world_size, const std::string& backend);
  // Closes as interrupted every "running" row of a configuration, whoever owned it: for a caller
  // that alone owns the configuration (a Slurm task: its runs' other processes are dead, on
  // whatever host). Returns how many rows it closed.
  int64_t abandon_running(const std::string& config_hash, const std::string& reason);

  // Records one epoch's metrics and artifacts atomically.
  void record_epoch(int64_t run_id, int64_t epoch, int64_t step,
                    const std::vector<std::pair<std::string, double>>& metrics,
                    const std::vector<ArtifactRecord>& artifacts,
                    const std::optional<KidRecord>& kid = std::nullopt,
                    const std::vector<SampleMetricRecord>& samples = {});
  // `difflab evaluate`'s measurement of a run's checkpoint (of `epoch`): sample_metrics rows with
  // source "evaluate", one set per sample count (a second measurement with the same count replaces it).
  void record_evaluation(int64_t run_id, int64_t epoch, const std::vector<SampleMetricRecord>& samples);
  // A run's sample metrics (sample_metrics), by epoch and metric.
  std::vector<std::pair<int64_t, SampleMetricRecord>> sample_metrics(int64_t run_id) const;

  // An adaptive sweep's decision for a run at a rung, in one IMMEDIATE transaction (two trials
  // reaching a rung at once see each other in turn): the decision recorded before, if there is
  // one (it stands); else `decide` sees the run's value and its peers (what `peers` reads: the
  // other trials' latest runs, from this database or from shards) and returns the decision to
  // record, or nothing where its rule does not apply. A pruning decision closes a run that waits
  // (interrupted) as pruned.
  std::optional<DecisionRecord> decide(int64_t run_id, int64_t rung, int64_t epoch, const std::string& metric,
                                       const std::function<std::vector<RungPeer>()>& peers,
                                       const std::function<std::optional<DecisionRecord>(const RungView&)>& decide);
  std::vector<DecisionRecord> decisions(int64_t run_id = 0) const;  // 0: every run's, in order
  // Records the sweep a run belongs to (the sweep's row once, the run's place every time).
  void record_sweep_trial(int64_t run_id, const SweepTrialRecord& record);
  // The sweep's row alone (a model-based sweep records it with its first proposal, before any run).
  void record_sweep(const SweepTrialRecord& record);
  // The newest run recorded as trial `trial` of `sweep` (sweep_trials), or nullopt.
  std::optional<RunRecord> trial_run(const std::string& sweep, int64_t trial) const;
  // The newest run of the database (a cluster point's shard holds that point's runs only).
  std::optional<RunRecord> newest_run() const;
  // Runs `body` in one IMMEDIATE transaction (the write lock first: one writer at a time across
  // processes), committed when it returns; `body` may read and write through this store but not
  // open another transaction.
  void write_transaction(const std::function<void()>& body);
  // A model-based sweep's proposal for a trial (the proposals table); one recorded before stands.
  void record_proposal(const ProposalRecord& record);
  // Every proposal of `sweep` (every sweep's when empty), by sweep and trial.
  std::vector<ProposalRecord> proposals(const std::string& sweep = "") const;
  // The sweep's [sweep] table as TOML (sweeps.settings), or nullopt.
  std::optional<std::string> sweep_settings(const std::string& sweep) const;
  std::optional<SweepTrialRecord> sweep_trial(int64_t run_id) const;
  // The value of a metric a run recorded at an epoch.
  std::optional<double> metric_at(int64_t run_id, const std::string& metric, int64_t epoch) const;
  // The same, for the run of an attempt (runs.attempt, as decisions.peers name them).
  std::optional<double> attempt_metric_at(const std::string& attempt, const std::string& metric, int64_t epoch) const;

  std::optional<RunRecord> run(int64_t run_id) const;
  // The newest run of a configuration (see Experiment::config_hash).
  std::optional<RunRecord> latest_run(const std::string& config_hash) const;
  std::vector<RunRecord> runs() const;
  std::vector<std::pair<std::string, std::string>> params(int64_t run_id) const;
  std::vector<MetricRecord> metrics(int64_t run_id) const;
  // The training losses within epochs (training.log_every_steps): one row per key and step,
  // replaced when a resumed run records the same step again.
  void record_steps(int64_t run_id, int64_t epoch, int64_t step, const std::vector<std::pair<std::string, double>>& values);
  std::vector<MetricRecord> step_metrics(int64_t run_id) const;
  std::vector<ArtifactRecord> artifacts(int64_t run_id) const;
  std::vector<std::pair<int64_t, KidRecord>> kid(int64_t run_id) const;  // (epoch, record)
  // The run's best KID and its epoch (run_summary), if it has one.
  struct BestKid {
    double kid = 0.0;
    int64_t epoch = 0;
  };
  std::optional<BestKid> best_kid(int64_t run_id) const;

  SQLite::Database& database() { return *db_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void insert_sweep(const SweepTrialRecord& record);
  void migrate();
  void open_read_only();
  int64_t insert_run(const Experiment& experiment, const std::string& versions_json,
                     const std::string& variant);
  std::filesystem::path path_;
  std::unique_ptr<SQLite::Database> db_;
};

// Refreshes a run's heartbeat every kHeartbeatSeconds from a thread of its own (with its own
// connection) for as long as it lives, so that a long epoch never looks like a dead process.
class RunHeartbeat {
 public:
  RunHeartbeat(const std::filesystem::path& database, int64_t run_id,
               double interval_seconds = kHeartbeatSeconds);
  ~RunHeartbeat();
  RunHeartbeat(const RunHeartbeat&) = delete;
  RunHeartbeat& operator=(const RunHeartbeat&) = delete;
  // True once the row is no longer this process's (another process claimed it after this one's
  // lease ran out, e.g. after a suspend): the run must stop without touching the row.
  bool lost() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace difflab
