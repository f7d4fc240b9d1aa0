// The SQLite results store on real database files.
#include <SQLiteCpp/SQLiteCpp.h>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "config/experiment.h"
#include "results/results_report.h"
#include "results/results_store.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;

namespace {
Experiment experiment() {
  return parse_experiment("[experiment]\nname = \"store-test\"\n[loss]\nplugin = \"mse\"\n",
                          "exp.toml", {}, difflab::test::registry());
}
}  // namespace

TEST(ResultsStore, CreatesSchemaInWalMode) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "sub" / "results.sqlite");
  EXPECT_EQ(store.schema_version(), kSchemaVersion);
  EXPECT_EQ(store.database().execAndGet("PRAGMA journal_mode").getString(), "wal");
  for (const char* table : {"runs", "params", "metrics", "artifacts", "kid", "schema_info"})
    EXPECT_TRUE(store.database().tableExists(table)) << table;
}

// A second connection opened and closed by the process that writes the database (a report beside
// its run) leaves the writer's locks alone. Another process that closes its own connection then
// does not take itself for the last one, and leaves the WAL in place. Were the header read with a
// plain read of the file, closing that descriptor would drop this process's POSIX locks, and the
// other process would checkpoint and delete the WAL under the writer
// (sqlite.org/howtocorrupt.html §2.2.1: "database disk image is malformed").
TEST(ResultsStore, ASecondConnectionInTheWritingProcessLeavesItsLocksAlone) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 is not installed: no second process";
  difflab::test::TempDir dir;
  const fs::path path = dir / "results.sqlite";
  ResultsStore writer(path);
  writer.start_run(experiment(), "{}");
  { ResultsStore reader(path, OpenMode::read_only); EXPECT_EQ(reader.runs().size(), 1u); }
  ASSERT_TRUE(fs::exists(path.string() + "-wal"));
  const difflab::test::Outcome other = difflab::test::shell_command(
      "/usr/bin/python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
      "print(c.execute(\"SELECT COUNT(*) FROM runs\").fetchone()[0]); c.close()' " + path.string());
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_EQ(other.output, "1\n");
  EXPECT_TRUE(fs::exists(path.string() + "-wal")) << "the other process took itself for the last connection";
  EXPECT_EQ(writer.runs().size(), 1u);
}

TEST(ResultsStore, RecordsARunWithOneParamRowPerLeaf) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  Experiment exp = experiment();
  int64_t run_id = store.start_run(exp, R"({"difflab": "test"})");
  auto run = store.run(run_id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::running);
  EXPECT_EQ(run->name, "store-test");
  EXPECT_EQ(run->config_hash, exp.config_hash());
  EXPECT_EQ(run->config_toml, exp.to_toml());

  auto params = store.params(run_id);
  EXPECT_EQ(params.size(), exp.leaves().size());
  EXPECT_NE(std::find(params.begin(), params.end(),
                      std::make_pair(std::string("loss.plugin"), std::string("\"mse\""))),
            params.end());
  // Numeric values are queryable as numbers.
  SQLite::Statement query(store.database(),
                          "SELECT number FROM params WHERE run_id = ? AND key = 'schedule.min_signal_rate'");
  query.bind(1, run_id);
  ASSERT_TRUE(query.executeStep());
  EXPECT_DOUBLE_EQ(query.getColumn(0).getDouble(), 0.02);
}

TEST(ResultsStore, KeepsTheFullMetricHistoryAndArtifacts) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  int64_t run_id = store.start_run(experiment(), "{}");
  store.record_epoch(run_id, 1, 10, {{"n_loss", 0.5}, {"i_loss", 0.9}},
                     {{"sample_grid", "a/epoch-001.png", 1}});
  store.record_epoch(run_id, 2, 20, {{"n_loss", 0.25}, {"i_loss", 0.7}},
                     {{"sample_grid", "a/epoch-002.png", 2}, {"checkpoint", "a/checkpoint.pt", 2}});
  store.finish_run(run_id);

  auto metrics = store.metrics(run_id);
  ASSERT_EQ(metrics.size(), 4u);
  EXPECT_EQ(metrics[3].key, "n_loss");
  EXPECT_EQ(metrics[3].epoch, 2);
  EXPECT_EQ(metrics[3].step, 20);
  EXPECT_DOUBLE_EQ(metrics[3].value, 0.25);
  EXPECT_EQ(store.artifacts(run_id).size(), 3u);
  EXPECT_EQ(store.run(run_id)->status, RunStatus::finished);
  EXPECT_FALSE(store.run(run_id)->finished_at.empty());
}

TEST(ResultsStore, FailedRunKeepsItsMessageAndOtherRunsSurviveReopening) {
  difflab::test::TempDir dir;
  int64_t finished = 0, failed = 0;
  {
    ResultsStore store(dir / "results.sqlite");
    finished = store.start_run(experiment(), "{}");
    store.finish_run(finished);
    failed = store.start_run(experiment(), "{}");
    store.close_run(failed, RunStatus::failed, "out of memory");
  }
  ResultsStore reopened(dir / "results.sqlite");
  EXPECT_EQ(reopened.runs().size(), 2u);
  EXPECT_EQ(reopened.run(finished)->status, RunStatus::finished);
  EXPECT_EQ(reopened.run(failed)->status, RunStatus::failed);
  EXPECT_EQ(reopened.run(failed)->error, "out of memory");
  EXPECT_EQ(reopened.database().execAndGet("PRAGMA integrity_check").getString(), "ok");
}

TEST(ResultsStore, RefusesADatabaseFromANewerDifflab) {
  difflab::test::TempDir dir;
  {
    ResultsStore store(dir / "results.sqlite");
    store.database().exec("INSERT INTO schema_info (version) VALUES (99)");
  }
  EXPECT_THROW(ResultsStore(dir / "results.sqlite"), Error);
}

TEST(ResultsStore, MigratesAVersion1DatabaseKeepingItsRuns) {
  difflab::test::TempDir dir;
  int64_t run_id = 0;
  {
    ResultsStore store(dir / "results.sqlite");
    run_id = store.start_run(experiment(), "{}");
    store.finish_run(run_id);
    // Turn it back into a version-1 database (before the kid table existed).
    store.database().exec(
        "DROP VIEW ablation; DROP VIEW run_summary; DROP TABLE kid; ALTER TABLE runs DROP COLUMN variant; "
        "ALTER TABLE runs DROP COLUMN variant_hash; ALTER TABLE runs DROP COLUMN training_hash; "
        "ALTER TABLE runs DROP COLUMN trained_by; DROP INDEX runs_by_attempt; ALTER TABLE runs DROP COLUMN attempt; "
        "ALTER TABLE runs DROP COLUMN world_size; ALTER TABLE runs DROP COLUMN backend; "
        "DELETE FROM schema_info WHERE version > 1");
  }
  ResultsStore migrated(dir / "results.sqlite");
  EXPECT_EQ(migrated.schema_version(), kSchemaVersion);
  EXPECT_TRUE(migrated.database().tableExists("kid"));
  EXPECT_EQ(migrated.database().execAndGet("SELECT status FROM run_summary").getString(), "finished");
  EXPECT_EQ(migrated.run(run_id)->status, RunStatus::finished);
  EXPECT_EQ(migrated.params(run_id).size(), experiment().leaves().size());
  // A run from before variants is its own group in the ablation view.
  EXPECT_EQ(migrated.database().execAndGet("SELECT variant_hash FROM ablation").getString(),
            experiment().config_hash());
}

// Version 8 rebuilds the runs table (a CHECK constraint cannot be altered): a database as
// difflab wrote it up to version 7, with its interrupted runs as "failed" + "interrupted..." and
// no 'interrupted' or 'pruned' in its CHECK, keeps every row, id and child row, and its
// interrupted runs become status interrupted with their messages.
TEST(ResultsStore, MigratesVersion7InterruptedRunsToTheirOwnStatusKeepingEveryRow) {
  difflab::test::TempDir dir;
  const fs::path path = dir / "results.sqlite";
  const Experiment exp = experiment();
  int64_t interrupted = 0, failed = 0, finished = 0;
  {
    ResultsStore store(path);
    interrupted = store.start_run(exp, "{}");
    store.record_epoch(interrupted, 1, 10, {{"n_loss", 0.5}}, {{"checkpoint", "c.pt", 1}});
    store.close_run(interrupted, RunStatus::failed, "interrupted by signal 15");
    failed = store.start_run(exp, "{}");
    store.close_run(failed, RunStatus::failed, "out of memory");
    finished = store.start_run(exp, "{}");
    store.finish_run(finished);
    store.database().exec("DELETE FROM runs WHERE id = " + std::to_string(finished));  // the counter stays ahead
    finished = store.start_run(exp, "{}");
    store.finish_run(finished);
    // Back to version 7's runs table: its CHECK without 'interrupted' and 'pruned'.
    SQLite::Database& db = store.database();
    const std::string columns =
        "id, name, config_hash, config_toml, status, error, created_at, started_at, finished_at, host, pid, "
        "heartbeat_at, versions, variant_hash, variant, training_hash, trained_by, world_size, backend, attempt";
    db.exec("PRAGMA foreign_keys = OFF");
    db.exec("BEGIN; DROP VIEW ablation; DROP VIEW run_summary;"
            "CREATE TABLE runs_v7 (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, config_hash TEXT NOT "
            "NULL, config_toml TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('pending', 'running', "
            "'finished', 'failed', 'diverged')), error TEXT, created_at TEXT NOT NULL DEFAULT (strftime('%Y', "
            "'now')), started_at TEXT, finished_at TEXT, host TEXT, pid INTEGER, heartbeat_at TEXT, versions TEXT, "
            "variant_hash TEXT, variant TEXT, training_hash TEXT, trained_by INTEGER, world_size INTEGER, backend "
            "TEXT, attempt TEXT);"
            "INSERT INTO runs_v7 (" + columns + ") SELECT " + columns + " FROM runs; DROP TABLE runs;"
            "ALTER TABLE runs_v7 RENAME TO runs; CREATE INDEX runs_by_hash ON runs (config_hash);"
            "CREATE UNIQUE INDEX runs_by_attempt ON runs (attempt); DELETE FROM schema_info WHERE version > 7; COMMIT");
    EXPECT_THROW(db.exec("UPDATE runs SET status = 'pruned' WHERE id = " + std::to_string(failed)), SQLite::Exception);
  }
  // Read-only, the migration happens in a copy in memory and the file stays at version 7.
  {
    ResultsStore reader(path, OpenMode::read_only);
    EXPECT_EQ(reader.run(interrupted)->status, RunStatus::interrupted);
  }
  EXPECT_EQ(SQLite::Database(path.string()).execAndGet("SELECT MAX(version) FROM schema_info").getInt(), 7);

  ResultsStore migrated(path);
  EXPECT_EQ(migrated.schema_version(), kSchemaVersion);
  const RunRecord was_interrupted = *migrated.run(interrupted);
  EXPECT_EQ(was_interrupted.status, RunStatus::interrupted);
  EXPECT_EQ(was_interrupted.error, "interrupted by signal 15");
  EXPECT_EQ(migrated.run(failed)->status, RunStatus::failed);
  EXPECT_EQ(migrated.run(failed)->error, "out of memory");
  EXPECT_EQ(migrated.run(finished)->status, RunStatus::finished);
  // Nothing lost to ON DELETE CASCADE when the old table was dropped.
  EXPECT_EQ(migrated.metrics(interrupted).size(), 1u);
  EXPECT_EQ(migrated.artifacts(interrupted).size(), 1u);
  EXPECT_EQ(migrated.params(interrupted).size(), exp.leaves().size());
  SQLite::Statement violations(migrated.database(), "PRAGMA foreign_key_check");
  EXPECT_FALSE(violations.executeStep());
  EXPECT_EQ(migrated.database().execAndGet("PRAGMA foreign_keys").getInt(), 1);
  // The AUTOINCREMENT counter kept: a deleted newest id is not given again.
  EXPECT_GT(migrated.start_run(exp, "{}"), finished);
  // The views are back, and a status is a filter like any other column.
  EXPECT_EQ(migrated.database().execAndGet("SELECT COUNT(*) FROM run_summary WHERE status = 'interrupted'").getInt(), 1);
  RunsQuery query;
  query.where = "status = \"interrupted\"";
  const Table table = runs_table(migrated, query);
  ASSERT_EQ(table.rows.size(), 1u);
  EXPECT_EQ(table.rows[0][0], std::optional<std::string>(std::to_string(interrupted)));
  // The new statuses are allowed now.
  migrated.close_run(failed, RunStatus::pruned, "pruned at rung 1");
  EXPECT_EQ(migrated.run(failed)->status, RunStatus::pruned);
}

TEST(ResultsStore, RunStatusesRoundTripThroughTheirDatabaseText) {
  for (RunStatus status : {RunStatus::running, RunStatus::finished, RunStatus::failed, RunStatus::diverged,
                           RunStatus::interrupted, RunStatus::pruned})
    EXPECT_EQ(parse_run_status(to_string(status)), status) << to_string(status);
  EXPECT_EQ(parse_run_status("Finished"), std::nullopt);
  EXPECT_EQ(parse_run_status("pending"), std::nullopt);
  EXPECT_THROW(run_status_from_database("pending"), Error);
}

TEST(ResultsStore, RecordsKidWithItsProtocolAtomicallyWithTheEpoch) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  int64_t run_id = store.start_run(experiment(), "{}");
  store.record_epoch(run_id, 3, 30, {{"val_kid", 0.12}}, {},
                     KidRecord{0.12, 0.01, "subsets", "pixels", "ddim", 5, 640, 640, 9});
  auto kid = store.kid(run_id);
  ASSERT_EQ(kid.size(), 1u);
  EXPECT_EQ(kid[0].first, 3);
  EXPECT_DOUBLE_EQ(kid[0].second.mean, 0.12);
  EXPECT_EQ(kid[0].second.protocol, "subsets");
  EXPECT_EQ(kid[0].second.features, "pixels");
  EXPECT_EQ(kid[0].second.diffusion_steps, 5);
  EXPECT_EQ(kid[0].second.generated_count, 640);
  EXPECT_EQ(kid[0].second.nfe, 9);
}

namespace {
// A pid that no process has: a child that has exited and been reaped.
int64_t dead_pid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  return child;
}

void set_owner(ResultsStore& store, int64_t run_id, const std::string& host, int64_t pid, double age_seconds) {
  SQLite::Statement update(store.database(),
                           "UPDATE runs SET host = ?, pid = ?, "
                           "heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) WHERE id = ?");
  update.bind(1, host);
  update.bind(2, pid);
  update.bind(3, fmt::format("-{} seconds", age_seconds));
  update.bind(4, run_id);
  update.exec();
}
}  // namespace

TEST(ResultsStore, ClaimsEachConfigurationOnceAndReclaimsRunsOfDeadProcesses) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  const Experiment exp = experiment();
  const Claim first = store.claim_run(exp, "{}", {}, "loss.plugin='mse'");
  EXPECT_EQ(first.outcome, ClaimOutcome::started);
  EXPECT_FALSE(first.previous);
  EXPECT_EQ(store.database().execAndGet("SELECT variant FROM runs").getString(), "loss.plugin='mse'");
  // Running in this live process (fresh heartbeat): another claim leaves it alone.
  EXPECT_EQ(store.claim_run(exp, "{}").outcome, ClaimOutcome::busy);
  // Another host, heartbeat within the lease: alive. Past the lease: its run is taken back.
  set_owner(store, first.run_id, "elsewhere", 1, kLeaseSeconds / 2);
  EXPECT_EQ(store.claim_run(exp, "{}").outcome, ClaimOutcome::busy);
  set_owner(store, first.run_id, "elsewhere", 1, kLeaseSeconds * 2);
  Claim reclaimed = store.claim_run(exp, "{}");
  EXPECT_EQ(reclaimed.outcome, ClaimOutcome::resumed);
  EXPECT_EQ(reclaimed.run_id, first.run_id);
  EXPECT_EQ(store.run(first.run_id)->host, host_name());
  EXPECT_EQ(store.run(first.run_id)->pid, static_cast<int64_t>(getpid()));
  // This host, a process that is gone: taken back at once, whatever the heartbeat says.
  set_owner(store, first.run_id, host_name(), dead_pid(), 0);
  EXPECT_EQ(store.claim_run(exp, "{}").outcome, ClaimOutcome::resumed);
  // A row that is no longer ours is not closed by us.
  set_owner(store, first.run_id, "elsewhere", 1, 0);
  store.finish_run(first.run_id);
  EXPECT_EQ(store.run(first.run_id)->status, RunStatus::running);
  set_owner(store, first.run_id, host_name(), getpid(), 0);
  store.finish_run(first.run_id);
  EXPECT_EQ(store.claim_run(exp, "{}").outcome, ClaimOutcome::finished_before);
  EXPECT_EQ(store.claim_run(exp, "{}", {true, false}).outcome, ClaimOutcome::started);  // --new
  EXPECT_EQ(store.database().execAndGet("SELECT COUNT(*) FROM runs").getInt(), 2);
}

TEST(ResultsStore, FailedRunsAreRetriedOnlyWhenAskedAndInterruptedOnesResume) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  const Experiment exp = experiment();
  const int64_t run_id = store.claim_run(exp, "{}").run_id;
  store.close_run(run_id, RunStatus::interrupted, "interrupted by signal 2");
  EXPECT_EQ(store.claim_run(exp, "{}").outcome, ClaimOutcome::resumed);
  store.close_run(run_id, RunStatus::diverged, "noise loss is nan at epoch 1, step 3");
  EXPECT_EQ(store.claim_run(exp, "{}").outcome, ClaimOutcome::failed_before);
  const Claim retry = store.claim_run(exp, "{}", {false, true});
  EXPECT_EQ(retry.outcome, ClaimOutcome::started);
  EXPECT_NE(retry.run_id, run_id);
  EXPECT_EQ(store.run(run_id)->status, RunStatus::diverged);  // the failed run stays, as history
}

TEST(ResultsStore, VariantHashIgnoresOnlyTheSeed) {
  Experiment a = experiment(), b = experiment();
  b.section("experiment").params.set("seed", int64_t{3});
  EXPECT_NE(a.config_hash(), b.config_hash());
  EXPECT_EQ(a.variant_hash(), b.variant_hash());
  b.section("training").params.set("batch_size", int64_t{8});
  EXPECT_NE(a.variant_hash(), b.variant_hash());
}

TEST(ResultsStore, HeartbeatThreadKeepsTheLeaseAndNoticesALostRun) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  const int64_t run_id = store.claim_run(experiment(), "{}").run_id;
  set_owner(store, run_id, host_name(), getpid(), 30);
  {
    RunHeartbeat heartbeat(dir / "results.sqlite", run_id, 0.2);
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    EXPECT_LT(store.run(run_id)->heartbeat_age_seconds, 5.0);
    EXPECT_FALSE(heartbeat.lost());
    set_owner(store, run_id, "elsewhere", 1, 0);  // claimed by another host meanwhile
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    EXPECT_TRUE(heartbeat.lost());
  }
}

TEST(ResultsStore, ConfigurationsThatDifferOnlyInSamplingShareOneTrainedNetwork) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  Experiment trained = experiment(), sampled = experiment(), retrained = experiment();
  sampled.section("sampler").plugin = "ddpm";
  sampled.section("evaluation").params.set("kid_diffusion_steps", int64_t{17});
  retrained.section("training").params.set("batch_size", int64_t{8});
  EXPECT_EQ(trained.training_hash(), sampled.training_hash());
  EXPECT_NE(trained.config_hash(), sampled.config_hash());
  EXPECT_NE(trained.training_hash(), retrained.training_hash());

  const int64_t trainer = store.claim_run(trained, "{}").run_id;
  // While it trains (a live process: this one), the sampling variant waits for its network.
  EXPECT_EQ(store.claim_run(sampled, "{}").outcome, ClaimOutcome::busy);
  EXPECT_EQ(store.claim_run(retrained, "{}").outcome, ClaimOutcome::started);  // another network
  EXPECT_FALSE(store.trained_network(sampled));
  const fs::path checkpoint = dir / "checkpoint.pt";
  std::ofstream(checkpoint) << "weights";
  store.record_epoch(trainer, 1, 10, {{"n_loss", 0.5}}, {{"checkpoint", checkpoint.string(), 1}});
  store.finish_run(trainer);
  const std::optional<TrainedNetwork> network = store.trained_network(sampled);
  ASSERT_TRUE(network);
  EXPECT_EQ(network->run_id, trainer);
  EXPECT_EQ(network->checkpoint, checkpoint);
  const Claim claim = store.claim_run(sampled, "{}");
  EXPECT_EQ(claim.outcome, ClaimOutcome::started);
  store.set_trained_by(claim.run_id, trainer);
  EXPECT_EQ(store.run(claim.run_id)->trained_by, trainer);
  fs::remove(checkpoint);  // a network whose checkpoint is gone cannot be reused
  EXPECT_FALSE(store.trained_network(sampled));
}
