// Shard databases merged into one results database (difflab results merge, difflab slurm
// collect), and the refusal to write a WAL database on a network filesystem.
#include <SQLiteCpp/SQLiteCpp.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/experiment.h"
#include "difflab/error.h"
#include "results/merge.h"
#include "results/results_store.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;

namespace {

Experiment experiment(const std::string& loss = "mse", int64_t seed = 1) {
  return parse_experiment("[experiment]\nname = \"merge-test\"\n", "exp.toml",
                          {"loss.plugin=" + loss, "experiment.seed=" + std::to_string(seed)},
                          difflab::test::registry());
}

int64_t count(ResultsStore& store, const std::string& sql) { return store.database().execAndGet(sql).getInt64(); }

// A run with `epochs` epochs of metrics (and KID from epoch 2), finished or not.
int64_t add_run(ResultsStore& store, const Experiment& run, int64_t epochs, bool finish) {
  const int64_t id = store.start_run(run, "{}", "variant");
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    std::optional<KidRecord> kid;
    if (epoch >= 2) kid = KidRecord{0.1 / static_cast<double>(epoch), 0.0, "per_batch", "pixels", "ddim", 5, 8, 8, 10};
    store.record_epoch(id, epoch, epoch * 10, {{"n_loss", 1.0 / static_cast<double>(epoch)}},
                       {{"checkpoint", "/runs/x/checkpoint.pt", epoch}}, kid);
  }
  if (finish) store.finish_run(id);
  return id;
}

}  // namespace

TEST(Merge, AddsEachAttemptOnceAndReplacesOneThatWentOn) {
  difflab::test::TempDir dir;
  ResultsStore main(dir / "main.sqlite");
  add_run(main, experiment("mae"), 3, true);  // a run of the main database's own
  ResultsStore shard(dir / "point-0.sqlite");
  const int64_t run = add_run(shard, experiment(), 1, false);
  shard.close_run(run, RunStatus::interrupted, "interrupted: by signal 12");
  snapshot_database(dir / "point-0.sqlite", dir / "copy.sqlite");

  MergeReport first = merge_shards(main, {dir / "copy.sqlite"});
  EXPECT_EQ(first.runs_added, 1);
  EXPECT_TRUE(first.skipped.empty());
  EXPECT_EQ(count(main, "SELECT COUNT(*) FROM runs"), 2);
  EXPECT_EQ(main.latest_run(experiment().config_hash())->error, "interrupted: by signal 12");

  // The same attempt, resumed in its shard and finished: replaced, not added.
  shard.mark_running(run);
  for (int64_t epoch = 2; epoch <= 3; ++epoch) shard.record_epoch(run, epoch, epoch * 10, {{"n_loss", 0.5}}, {});
  shard.finish_run(run);
  snapshot_database(dir / "point-0.sqlite", dir / "copy.sqlite");
  MergeReport second = merge_shards(main, {dir / "copy.sqlite"});
  EXPECT_EQ(second.runs_added, 0);
  EXPECT_EQ(second.runs_updated, 1);
  const RunRecord merged = *main.latest_run(experiment().config_hash());
  EXPECT_EQ(merged.status, RunStatus::finished);
  EXPECT_EQ(main.metrics(merged.id).size(), 3u);
  EXPECT_EQ(main.params(merged.id).size(), experiment().leaves().size());
  EXPECT_EQ(main.kid(merged.id).size(), 0u);

  // Merging again adds and changes nothing.
  const int64_t metrics_before = count(main, "SELECT COUNT(*) FROM metrics");
  MergeReport third = merge_shards(main, {dir / "copy.sqlite", dir / "copy.sqlite"});
  EXPECT_EQ(third.runs_added + third.runs_updated, 0);
  EXPECT_EQ(third.runs_unchanged, 2);
  EXPECT_EQ(count(main, "SELECT COUNT(*) FROM runs"), 2);
  EXPECT_EQ(count(main, "SELECT COUNT(*) FROM metrics"), metrics_before);
  EXPECT_EQ(main.database().execAndGet("PRAGMA integrity_check").getString(), "ok");
}

TEST(Merge, KeepsEveryAttemptOfAConfigurationAndItsKid) {
  difflab::test::TempDir dir;
  ResultsStore shard(dir / "shard.sqlite");
  const int64_t failed = add_run(shard, experiment(), 2, false);
  shard.close_run(failed, RunStatus::failed, "out of memory");
  add_run(shard, experiment(), 3, true);  // --retry-failed: a new attempt
  ResultsStore main(dir / "main.sqlite");
  EXPECT_EQ(merge_shards(main, {dir / "shard.sqlite"}).runs_added, 2);
  EXPECT_EQ(count(main, "SELECT COUNT(*) FROM runs WHERE status = 'failed' AND error = 'out of memory'"), 1);
  EXPECT_EQ(main.latest_run(experiment().config_hash())->status, RunStatus::finished);
  EXPECT_EQ(count(main, "SELECT COUNT(*) FROM kid"), 3);
  EXPECT_DOUBLE_EQ(main.database().execAndGet("SELECT MIN(best_kid) FROM run_summary").getDouble(), 0.1 / 3.0);
  EXPECT_EQ(count(main, "SELECT COUNT(DISTINCT attempt) FROM runs"), 2);
}

TEST(Merge, ARunThatReusedAnotherRunsNetworkNamesItsMergedId) {
  difflab::test::TempDir dir;
  ResultsStore main(dir / "main.sqlite");
  for (int seed = 10; seed < 13; ++seed) add_run(main, experiment("mae", seed), 1, true);  // ids 1-3 taken
  ResultsStore shard(dir / "shard.sqlite");
  const int64_t trainer = add_run(shard, experiment(), 2, true);
  const int64_t evaluator = add_run(shard, experiment("mse", 2), 1, true);
  shard.set_trained_by(evaluator, trainer);
  ASSERT_EQ(merge_shards(main, {dir / "shard.sqlite"}).runs_added, 2);
  const int64_t merged_trainer = main.latest_run(experiment().config_hash())->id;
  EXPECT_NE(merged_trainer, trainer);
  EXPECT_EQ(main.latest_run(experiment("mse", 2).config_hash())->trained_by, merged_trainer);
}

TEST(Merge, ReportsAndSkipsMissingForeignAndCorruptShardsLeavingTheDatabaseIntact) {
  difflab::test::TempDir dir;
  ResultsStore main(dir / "main.sqlite");
  add_run(main, experiment("mae"), 2, true);
  {
    ResultsStore good(dir / "good.sqlite");
    add_run(good, experiment(), 2, true);
    ResultsStore damaged(dir / "damaged.sqlite");
    for (int seed = 0; seed < 40; ++seed) add_run(damaged, experiment("mse", 100 + seed), 3, true);
  }
  snapshot_database(dir / "damaged.sqlite", dir / "corrupt.sqlite");
  {
    // Overwrite a page in the middle of the file, as a half-copied or damaged file has.
    std::fstream file(dir / "corrupt.sqlite", std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(fs::file_size(dir / "corrupt.sqlite") / 2));
    const std::string garbage(4096, '\x5a');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  snapshot_database(dir / "good.sqlite", dir / "partial.sqlite");
  fs::resize_file(dir / "partial.sqlite", fs::file_size(dir / "partial.sqlite") / 2);  // a copy cut short
  SQLite::Database(dir.path() / "other.sqlite", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE)
      .exec("CREATE TABLE t (x)");
  std::ofstream(dir / "text.sqlite") << "not a database\n";

  const MergeReport report = merge_shards(main, {dir / "missing.sqlite", dir / "corrupt.sqlite", dir / "partial.sqlite",
                                                 dir / "other.sqlite", dir / "text.sqlite", dir / "good.sqlite"});
  ASSERT_EQ(report.skipped.size(), 5u);
  EXPECT_EQ(report.skipped[0].message, "not found");
  for (size_t i : {1, 2})
    EXPECT_NE(report.skipped[i].message.find("malformed"), std::string::npos) << report.skipped[i].message;
  EXPECT_NE(report.skipped[3].message.find("not difflab's"), std::string::npos) << report.skipped[3].message;
  EXPECT_EQ(report.skipped[4].message, "not an SQLite database");
  EXPECT_EQ(report.shards_merged, 1);
  EXPECT_EQ(report.runs_added, 1);
  EXPECT_EQ(count(main, "SELECT COUNT(*) FROM runs"), 2);
  EXPECT_EQ(main.database().execAndGet("PRAGMA integrity_check").getString(), "ok");
}

TEST(Merge, ASnapshotOfALiveWalDatabaseHoldsEverythingCommittedInRollbackMode) {
  difflab::test::TempDir dir;
  ResultsStore live(dir / "live.sqlite");
  add_run(live, experiment(), 4, true);  // committed into the WAL, not yet checkpointed
  ASSERT_TRUE(fs::exists(dir.path() / "live.sqlite-wal"));
  snapshot_database(dir / "live.sqlite", dir / "copy" / "snapshot.sqlite");
  EXPECT_FALSE(fs::exists(dir.path() / "copy" / "snapshot.sqlite-wal"));
  ResultsStore copy(dir / "copy" / "snapshot.sqlite", OpenMode::read_only);
  EXPECT_EQ(copy.database().execAndGet("PRAGMA journal_mode").getString(), "delete");
  EXPECT_EQ(copy.metrics(1).size(), 4u);
  EXPECT_EQ(shard_problem(dir / "copy" / "snapshot.sqlite"), "");
  // Only the snapshot is left in the folder: no temporary file.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "copy"), fs::directory_iterator()), 1);
}

TEST(NetworkFilesystem, NamesTheFilesystemsWhereWalIsUnsafe) {
  EXPECT_EQ(network_filesystem_name(0x6969), "NFS");
  EXPECT_EQ(network_filesystem_name(0x0BD00BD0), "Lustre");
  EXPECT_EQ(network_filesystem_name(0x47504653), "GPFS");
  EXPECT_EQ(network_filesystem_name(static_cast<int64_t>(0xFF534D42u)), "CIFS");
  EXPECT_EQ(network_filesystem_name(0xEF53), "");      // ext4
  EXPECT_EQ(network_filesystem_name(0x01021994), "");  // tmpfs
}

TEST(NetworkFilesystem, RefusesToWriteADatabaseThereAndCreatesNothing) {
  difflab::test::TempDir dir;
  setenv("DIFFLAB_TEST_FILESYSTEM_TYPE", "0x6969", 1);
  try {
    ResultsStore store(dir / "results.sqlite");
    ADD_FAILURE() << "opened a WAL database on NFS";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_NE(std::string(error.what()).find("network filesystem (NFS)"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("difflab slurm"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find((dir / "results.sqlite").string()), std::string::npos) << error.what();
  }
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));
  setenv("DIFFLAB_TEST_FILESYSTEM_TYPE", "0xEF53", 1);  // ext4: fine
  EXPECT_NO_THROW(ResultsStore(dir / "results.sqlite"));
  unsetenv("DIFFLAB_TEST_FILESYSTEM_TYPE");
}
