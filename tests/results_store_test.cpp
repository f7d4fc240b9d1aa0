// The SQLite results store on real database files.
#include <SQLiteCpp/SQLiteCpp.h>

#include "difflab/experiment.h"
#include "difflab/results_store.h"
#include "test_support.h"

using namespace difflab;

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

TEST(ResultsStore, RecordsARunWithOneParamRowPerLeaf) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  Experiment exp = experiment();
  int64_t run_id = store.start_run(exp, R"({"difflab": "test"})");
  auto run = store.run(run_id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, "running");
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
  EXPECT_EQ(store.run(run_id)->status, "finished");
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
    store.fail_run(failed, "failed", "out of memory");
  }
  ResultsStore reopened(dir / "results.sqlite");
  EXPECT_EQ(reopened.runs().size(), 2u);
  EXPECT_EQ(reopened.run(finished)->status, "finished");
  EXPECT_EQ(reopened.run(failed)->status, "failed");
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
    store.database().exec("DROP VIEW run_summary; DROP TABLE kid; DELETE FROM schema_info WHERE version > 1");
  }
  ResultsStore migrated(dir / "results.sqlite");
  EXPECT_EQ(migrated.schema_version(), kSchemaVersion);
  EXPECT_TRUE(migrated.database().tableExists("kid"));
  EXPECT_EQ(migrated.database().execAndGet("SELECT status FROM run_summary").getString(), "finished");
  EXPECT_EQ(migrated.run(run_id)->status, "finished");
  EXPECT_EQ(migrated.params(run_id).size(), experiment().leaves().size());
}

TEST(ResultsStore, RecordsKidWithItsProtocolAtomicallyWithTheEpoch) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  int64_t run_id = store.start_run(experiment(), "{}");
  store.record_epoch(run_id, 3, 30, {{"val_kid", 0.12}}, {},
                     KidRecord{0.12, 0.01, "subsets", "pixels", "ddim", 5, 640, 640});
  auto kid = store.kid(run_id);
  ASSERT_EQ(kid.size(), 1u);
  EXPECT_EQ(kid[0].first, 3);
  EXPECT_DOUBLE_EQ(kid[0].second.mean, 0.12);
  EXPECT_EQ(kid[0].second.protocol, "subsets");
  EXPECT_EQ(kid[0].second.features, "pixels");
  EXPECT_EQ(kid[0].second.diffusion_steps, 5);
  EXPECT_EQ(kid[0].second.generated_count, 640);
}
