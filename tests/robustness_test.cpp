// The edges a cluster user meets: files that are not difflab's, read-only places, damaged and
// foreign checkpoints, full disks. Each case: a clear error, the right exit code, and nothing
// lost or changed that should not be.
#include <SQLiteCpp/SQLiteCpp.h>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "results/results_store.h"
#include "test_support.h"

namespace fs = std::filesystem;
using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::tiny_experiment;

namespace {

std::string bytes_of(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A quick run of the tiny experiment (one epoch of two steps, no KID) into `dir`.
std::string quick_run(const fs::path& dir, const std::string& more = "") {
  return "run " + tiny_experiment() + " --set experiment.database=" + (dir / "results.sqlite").string() +
         " --set experiment.output_dir=" + (dir / "runs").string() +
         " --set training.epochs=1 --set training.steps_per_epoch=2 --set evaluation.kid_protocol=none" + more;
}

// Whether this process may make a private mount namespace (root; CI runs as root).
bool in_mount_namespace_possible() { return std::system("unshare -m true > /dev/null 2>&1") == 0; }

}  // namespace

TEST(Databases, AnotherApplicationsSqliteFileIsRefusedAndLeftExactlyAsItWas) {
  difflab::test::TempDir dir;
  const fs::path foreign = dir / "notes.sqlite";
  {
    SQLite::Database db(foreign.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine')");
  }
  const std::string before = bytes_of(foreign);
  Outcome results = difflab_command("results " + foreign.string());
  EXPECT_EQ(results.exit_code, 2) << results.output;
  EXPECT_NE(results.output.find("an SQLite database that is not difflab's (tables: notes)"), std::string::npos)
      << results.output;
  Outcome run = difflab_command(quick_run(dir.path()) + " --set experiment.database=" + foreign.string());
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_EQ(bytes_of(foreign), before);  // not even switched to WAL
  EXPECT_FALSE(fs::exists(dir / "notes.sqlite-wal"));
  EXPECT_FALSE(fs::exists(dir / "runs"));
}

TEST(Databases, AFileThatIsNotSqliteIsAnInputError) {
  difflab::test::TempDir dir;
  std::ofstream(dir / "results.sqlite") << "these are my notes, not a database\n";
  const std::string before = bytes_of(dir / "results.sqlite");
  Outcome results = difflab_command("results " + (dir / "results.sqlite").string());
  EXPECT_EQ(results.exit_code, 2) << results.output;
  EXPECT_NE(results.output.find("not an SQLite database"), std::string::npos) << results.output;
  EXPECT_EQ(difflab_command(quick_run(dir.path())).exit_code, 2);
  EXPECT_EQ(bytes_of(dir / "results.sqlite"), before);
}

TEST(Databases, DifflabsDatabasesCarryTheApplicationIdAndOlderOnesAreRecognised) {
  difflab::test::TempDir dir;
  const fs::path database = dir / "results.sqlite";
  ASSERT_EQ(difflab_command(quick_run(dir.path())).exit_code, 0);
  {
    SQLite::Database db(database.string(), SQLite::OPEN_READWRITE);
    EXPECT_EQ(db.execAndGet("PRAGMA application_id").getInt64(), int64_t{difflab::kApplicationId});
    db.exec("PRAGMA application_id = 0");  // as a difflab before the id wrote it
  }
  Outcome results = difflab_command("results " + database.string());
  EXPECT_EQ(results.exit_code, 0) << results.output;
  EXPECT_EQ(difflab_command(quick_run(dir.path())).exit_code, 0);  // finished before: opened to write, id set
  SQLite::Database db(database.string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA application_id").getInt64(), int64_t{difflab::kApplicationId});
}

TEST(Databases, ResultsReadADatabaseOnAReadOnlyMount) {
  if (!in_mount_namespace_possible()) GTEST_SKIP() << "unshare -m is not permitted here (needs root)";
  difflab::test::TempDir dir;
  ASSERT_EQ(difflab_command(quick_run(dir.path())).exit_code, 0);
  fs::remove(dir / "results.sqlite-shm");  // as after a copy to a read-only share
  const std::string mount = "mount --bind " + dir.path().string() + " " + dir.path().string() +
                            " && mount -o remount,bind,ro " + dir.path().string();
  const std::string difflab = DIFFLAB_TEST_EXECUTABLE;
  Outcome outcome = difflab::test::shell_command("unshare -m sh -c '" + mount + " && touch " + dir.path().string() +
                                         "/probe 2>/dev/null; echo probe=$?; " + difflab + " results " +
                                         (dir / "results.sqlite").string() + " --format csv'");
  ASSERT_NE(outcome.output.find("probe=1"), std::string::npos) << "the mount is not read-only:\n" << outcome.output;
  EXPECT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("finished"), std::string::npos) << outcome.output;
}

TEST(Databases, ANegativeRunIdIsAnInputErrorNotEveryRun) {
  difflab::test::TempDir dir;
  ASSERT_EQ(difflab_command(quick_run(dir.path())).exit_code, 0);
  Outcome outcome = difflab_command("results " + (dir / "results.sqlite").string() + " --run -5");
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("--run must be at least 1"), std::string::npos) << outcome.output;
}
