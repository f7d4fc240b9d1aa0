// The difflab executable end to end, as a user runs it: a tiny training run on `synthetic`
// (database rows, PNG on disk), and configuration errors (exit code 2, nothing written).
#include <SQLiteCpp/SQLiteCpp.h>
#include <array>
#include <cmath>
#include <cstdio>
#include <fmt/format.h>
#include <fstream>
#include <regex>
#include <sys/wait.h>

#include "test_support.h"
#include "training/image_io.h"

namespace fs = std::filesystem;

namespace {

using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::metric_history;
using difflab::test::tiny_experiment;



// Width and height from a PNG's IHDR chunk, after checking the signature.
std::pair<uint32_t, uint32_t> png_size(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  unsigned char header[24] = {};
  file.read(reinterpret_cast<char*>(header), sizeof(header));
  const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!file || !std::equal(signature, signature + 8, header)) return {0, 0};
  auto be32 = [&](int at) {
    return (uint32_t{header[at]} << 24) | (uint32_t{header[at + 1]} << 16) |
           (uint32_t{header[at + 2]} << 8) | header[at + 3];
  };
  return {be32(16), be32(20)};
}

// Writes DIR/sweep.toml (the tiny experiment plus `sweep`, a [sweep] table's text) and returns
// "run DIR/sweep.toml" with the database and outputs inside DIR.
std::string tiny_sweep(const fs::path& dir, const std::string& sweep) {
  std::ifstream tiny(tiny_experiment());
  std::ofstream(dir / "sweep.toml") << std::string(std::istreambuf_iterator<char>(tiny), {}) << "\n[sweep]\n" << sweep;
  return "run " + (dir / "sweep.toml").string() + " --set experiment.database=" + (dir / "results.sqlite").string() +
         " --set experiment.output_dir=" + (dir / "runs").string();
}

// How many times `needle` occurs in `text`.
size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

}  // namespace

TEST(Cli, TrainsATinyRunAndRecordsItInTheDatabase) {
  difflab::test::TempDir dir;
  const fs::path database = dir / "results.sqlite";
  Outcome outcome = difflab_command("run " + tiny_experiment() + " --set experiment.database=" +
                                    database.string() + " --set experiment.output_dir=" +
                                    (dir / "runs").string());
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("epoch 2/2: n_loss"), std::string::npos) << outcome.output;

  SQLite::Database db(database.string());
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 1);
  EXPECT_EQ(db.execAndGet("SELECT status FROM runs").getString(), "finished");
  EXPECT_EQ(db.execAndGet("SELECT value FROM params WHERE key = 'data.plugin'").getString(),
            "\"synthetic\"");
  EXPECT_EQ(db.execAndGet("SELECT value FROM params WHERE key = 'network.widths'").getString(), "[8, 16]");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(DISTINCT epoch) FROM metrics WHERE key = 'n_loss'").getInt(), 2);
  EXPECT_EQ(db.execAndGet("SELECT MAX(step) FROM metrics").getInt(), 8);  // 2 epochs x 4 steps
  for (const char* key : {"n_loss", "i_loss", "val_n_loss", "val_i_loss"}) {
    SQLite::Statement query(db, "SELECT value FROM metrics WHERE key = ? AND epoch = 2");
    query.bind(1, key);
    ASSERT_TRUE(query.executeStep()) << key;
    const double value = query.getColumn(0).getDouble();
    EXPECT_TRUE(std::isfinite(value) && value > 0.0) << key << " = " << value;
  }

  SQLite::Statement grids(db, "SELECT path FROM artifacts WHERE kind = 'sample_grid' ORDER BY epoch");
  int count = 0;
  while (grids.executeStep()) {
    ++count;
    // 2 x 3 tiles of 16 px scaled 2x, 2 px gaps: 3·32 + 4·2 = 104 wide, 2·32 + 3·2 = 70 high.
    EXPECT_EQ(png_size(grids.getColumn(0).getString()), std::make_pair(104u, 70u));
  }
  EXPECT_EQ(count, 2);
  EXPECT_TRUE(fs::exists(db.execAndGet("SELECT path FROM artifacts WHERE kind = 'checkpoint' AND epoch = 2")
                             .getString()));

  // KID after every epoch, the seed's protocol, with everything needed to compare it.
  SQLite::Statement kid(db, "SELECT epoch, mean, protocol, features, sampler, diffusion_steps, "
                            "real_count, generated_count, nfe FROM kid ORDER BY epoch");
  int kid_rows = 0;
  while (kid.executeStep()) {
    ++kid_rows;
    EXPECT_EQ(kid.getColumn(0).getInt(), kid_rows);
    EXPECT_TRUE(std::isfinite(kid.getColumn(1).getDouble()));
    EXPECT_EQ(kid.getColumn(2).getString(), "per_batch");
    EXPECT_EQ(kid.getColumn(3).getString(), "pixels");
    EXPECT_EQ(kid.getColumn(4).getString(), "ddim");
    EXPECT_EQ(kid.getColumn(5).getInt(), 5);
    EXPECT_EQ(kid.getColumn(6).getInt(), 32);  // 2 validation batches of 16
    EXPECT_EQ(kid.getColumn(7).getInt(), 32);
    EXPECT_EQ(kid.getColumn(8).getInt(), 5);  // DDIM: one network evaluation per step
  }
  EXPECT_EQ(kid_rows, 2);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM metrics WHERE key = 'val_kid'").getInt(), 2);
  EXPECT_TRUE(fs::exists(db.execAndGet("SELECT path FROM artifacts WHERE kind = 'best_checkpoint' "
                                       "ORDER BY epoch DESC LIMIT 1").getString()));
}

namespace {

std::string tiny_run(const difflab::test::TempDir& dir, const std::string& extra = "") {
  return "run " + tiny_experiment() + " --set training.epochs=3 --set experiment.database=" +
         (dir / "results.sqlite").string() + " --set experiment.output_dir=" +
         (dir / "runs").string() + extra;
}

}  // namespace

TEST(Cli, KilledRunResumesFromItsCheckpointWithIdenticalLosses) {
  difflab::test::TempDir uninterrupted, killed;
  ASSERT_EQ(difflab_command(tiny_run(uninterrupted)).exit_code, 0);

  // SIGKILL right after epoch 1's checkpoint, like a power cut.
  Outcome dead = difflab_command(tiny_run(killed), "DIFFLAB_TEST_SIGNAL_AFTER_EPOCH='1 9'");
  EXPECT_NE(dead.exit_code, 0) << dead.output;
  {
    SQLite::Database db((killed / "results.sqlite").string());
    EXPECT_EQ(db.execAndGet("SELECT status FROM runs").getString(), "running");
    EXPECT_EQ(db.execAndGet("SELECT MAX(epoch) FROM metrics").getInt(), 1);
  }

  Outcome resumed = difflab_command(tiny_run(killed));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming run 1 after epoch 1"), std::string::npos) << resumed.output;

  SQLite::Database db((killed / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 1);
  EXPECT_EQ(db.execAndGet("SELECT status FROM runs").getString(), "finished");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM metrics WHERE key = 'n_loss'").getInt(), 3);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM kid").getInt(), 3);
  // Same thread count on the CPU: the resumed run's numbers equal the uninterrupted run's.
  for (const char* key : {"n_loss", "i_loss", "val_n_loss", "val_i_loss", "val_kid"}) {
    std::vector<double> expected = metric_history(uninterrupted / "results.sqlite", key);
    ASSERT_EQ(expected.size(), 3u) << key;
    EXPECT_EQ(metric_history(killed / "results.sqlite", key), expected) << key;
  }
}

TEST(Cli, InterruptedInsideAnEpochResumesThereWithIdenticalLosses) {
  difflab::test::TempDir uninterrupted, stopped;
  ASSERT_EQ(difflab_command(tiny_run(uninterrupted)).exit_code, 0);

  // SIGTERM after step 6: two of epoch 2's four batches are done. The run stops after that step
  // with a checkpoint of how far the epoch got.
  Outcome interrupted = difflab_command(tiny_run(stopped), "DIFFLAB_TEST_SIGNAL_AFTER_STEP='6 15'");
  EXPECT_EQ(interrupted.exit_code, 130) << interrupted.output;
  EXPECT_NE(interrupted.output.find("stopped by signal 15 at step 6 (2 of epoch 2's 4 batches)"), std::string::npos)
      << interrupted.output;
  {
    SQLite::Database db((stopped / "results.sqlite").string());
    EXPECT_EQ(db.execAndGet("SELECT status FROM runs").getString(), "interrupted");
    EXPECT_EQ(db.execAndGet("SELECT error FROM runs").getString(), "interrupted by signal 15");
    EXPECT_EQ(db.execAndGet("SELECT MAX(epoch) FROM metrics").getInt(), 1);
  }

  Outcome resumed = difflab_command(tiny_run(stopped));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming run 1 after epoch 1 and 2 batches of epoch 2 (step 6)"), std::string::npos)
      << resumed.output;
  for (const char* key : {"n_loss", "i_loss", "val_n_loss", "val_i_loss", "val_kid"}) {
    std::vector<double> expected = metric_history(uninterrupted / "results.sqlite", key);
    ASSERT_EQ(expected.size(), 3u) << key;
    EXPECT_EQ(metric_history(stopped / "results.sqlite", key), expected) << key;
  }
}

TEST(Cli, ADatabaseOnANetworkFilesystemIsRefusedBeforeAnythingIsWritten) {
  difflab::test::TempDir dir;
  Outcome outcome = difflab_command(tiny_run(dir), "DIFFLAB_TEST_FILESYSTEM_TYPE=0x6969");
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find((dir / "results.sqlite").string() + ": the results database is on a network "
                                "filesystem (NFS)"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("difflab slurm"), std::string::npos) << outcome.output;
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));
}

TEST(Cli, FinishedRunIsNotRunAgainUnlessAskedFor) {
  difflab::test::TempDir dir;
  ASSERT_EQ(difflab_command(tiny_run(dir)).exit_code, 0);
  Outcome again = difflab_command(tiny_run(dir));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("already finished as run 1"), std::string::npos) << again.output;
  Outcome fresh = difflab_command(tiny_run(dir, " --new"));
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE status = 'finished'").getInt(), 2);
}

TEST(Cli, SweepRunsEveryPointIsolatesADivergedRunAndSkipsFinishedOnes) {
  difflab::test::TempDir dir;
  const std::string run =
      tiny_sweep(dir.path(), "\"loss.plugin\" = [\"mae\", \"mse\"]\n\"training.learning_rate\" = [1e-3, 1e30]\n") +
      " --set training.epochs=1";
  Outcome check = difflab_command("check " + (dir / "sweep.toml").string());
  ASSERT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("the sweep expands to 4 runs"), std::string::npos) << check.output;

  Outcome first = difflab_command(run);
  EXPECT_EQ(first.exit_code, 1) << first.output;  // the diverged runs
  EXPECT_NE(first.output.find("sweep: 4 runs — 2 finished, 0 skipped (finished before), 0 failed, 2 diverged, 0 not done"),
            std::string::npos)
      << first.output;
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE status = 'finished'").getInt(), 2);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE status = 'diverged'").getInt(), 2);
  EXPECT_NE(db.execAndGet("SELECT error FROM runs WHERE status = 'diverged'").getString().find("at epoch 1, step"),
            std::string::npos);

  // Again: finished points are skipped, diverged ones too (not retried without --retry-failed).
  Outcome again = difflab_command(run);
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("0 finished, 2 skipped (finished before), 0 failed, 2 diverged"), std::string::npos)
      << again.output;
  EXPECT_NE(again.output.find("diverged before: noise loss"), std::string::npos) << again.output;
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 4);
  EXPECT_NE(again.output.find("best so far: run "), std::string::npos) << again.output;

  // --retry-failed runs the diverged points again, as new runs; the finished ones stay skipped.
  Outcome retried = difflab_command(run + " --retry-failed");
  EXPECT_EQ(retried.exit_code, 1) << retried.output;
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE status = 'finished'").getInt(), 2);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE status = 'diverged'").getInt(), 4);
}

TEST(Cli, AFailedRunIsRecordedWithItsMessageAndTheSweepGoesOn) {
  // The first point's output folder cannot be made (a file is in its way): that run fails once it
  // is claimed, and the second point still runs.
  difflab::test::TempDir dir;
  std::ofstream(dir / "blocker") << "a file where a folder should be";
  std::ifstream tiny(tiny_experiment());
  std::ofstream(dir / "sweep.toml") << std::string(std::istreambuf_iterator<char>(tiny), {}) << "\n[sweep]\n"
                                    << "\"experiment.output_dir\" = [\"" << (dir / "blocker" / "runs").string()
                                    << "\", \"" << (dir / "runs").string() << "\"]\n";
  Outcome outcome = difflab_command("run " + (dir / "sweep.toml").string() + " --set experiment.database=" +
                                    (dir / "results.sqlite").string() + " --set training.epochs=1");
  EXPECT_EQ(outcome.exit_code, 1) << outcome.output;
  EXPECT_NE(outcome.output.find("sweep: 2 runs — 1 finished, 0 skipped (finished before), 1 failed, 0 diverged"),
            std::string::npos)
      << outcome.output;
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("SELECT status FROM runs WHERE id = 1").getString(), "failed");
  EXPECT_NE(db.execAndGet("SELECT error FROM runs WHERE id = 1").getString().find("Not a directory"), std::string::npos)
      << db.execAndGet("SELECT error FROM runs WHERE id = 1").getString();
  EXPECT_EQ(db.execAndGet("SELECT status FROM runs WHERE id = 2").getString(), "finished");
}

TEST(Cli, ASweepPointWithTooLittleDataIsAnInputErrorBeforeAnyPointRuns) {
  // 8 validation images cannot fill one KID batch of 16: found before the first point trains.
  difflab::test::TempDir dir;
  Outcome outcome = difflab_command(tiny_sweep(dir.path(), "\"data.validation_count\" = [32, 8]\n"));
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("the validation split has 8"), std::string::npos) << outcome.output;
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));
}

TEST(Cli, InterruptStopsTheSweepAndTheNextRunResumesIt) {
  difflab::test::TempDir dir;
  const std::string run = tiny_sweep(dir.path(), "\"loss.plugin\" = [\"mae\", \"mse\"]\n");
  Outcome interrupted = difflab_command(run, "DIFFLAB_TEST_SIGNAL_AFTER_EPOCH='1 15'");  // SIGTERM
  EXPECT_EQ(interrupted.exit_code, 130) << interrupted.output;
  EXPECT_EQ(interrupted.output.find("sweep run 2/2"), std::string::npos) << interrupted.output;
  {
    SQLite::Database db((dir / "results.sqlite").string());
    EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 1);
    EXPECT_EQ(db.execAndGet("SELECT error FROM runs").getString(), "interrupted by signal 15");
  }
  Outcome resumed = difflab_command(run);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming run 1 after epoch 1"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("sweep: 2 runs — 2 finished, 0 skipped"), std::string::npos) << resumed.output;
}

TEST(Cli, FourWorkersRunEveryPointExactlyOnce) {
  difflab::test::TempDir dir;
  const std::string run = tiny_sweep(dir.path(), "\"loss.plugin\" = [\"mae\", \"mse\"]\n"
                                          "\"training.learning_rate\" = [1e-3, 2e-3]\nseeds = [1, 2]\n") +
                          " --set training.epochs=1 --set training.steps_per_epoch=2 --workers 4";
  Outcome outcome = difflab_command(run);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("8 runs, 4 workers with"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("sweep: 8 runs — 8 finished, 0 skipped"), std::string::npos) << outcome.output;
  EXPECT_EQ(outcome.output.find("locked"), std::string::npos) << outcome.output;
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 8);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(DISTINCT config_hash) FROM runs WHERE status = 'finished'").getInt(), 8);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM metrics WHERE key = 'n_loss'").getInt(), 8);  // one epoch each
  for (int run_id = 1; run_id <= 8; ++run_id)  // each trained once, by one worker
    EXPECT_EQ(occurrences(outcome.output, fmt::format("] difflab: run {} of", run_id)), 1u) << outcome.output;
  // Seeds of one point form one group of the ablation view.
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM ablation").getInt(), 4);
  EXPECT_EQ(db.execAndGet("SELECT MIN(runs) FROM ablation").getInt(), 2);

  Outcome again = difflab_command(run);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("sweep: 8 runs — 0 finished, 8 skipped"), std::string::npos) << again.output;
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 8);

  // The ablation table from the command line, in each format; filters that are no filters fail.
  const std::string results = "results " + (dir / "results.sqlite").string();
  Outcome grouped = difflab_command(results + " --group-by loss.plugin,training.learning_rate --format csv");
  ASSERT_EQ(grouped.exit_code, 0) << grouped.output;
  EXPECT_EQ(grouped.output.rfind("loss.plugin,training.learning_rate,runs,best_kid_mean,best_kid_std,", 0), 0u)
      << grouped.output;
  EXPECT_EQ(occurrences(grouped.output, "\n"), 5u) << grouped.output;  // header + 4 groups
  Outcome markdown = difflab_command(results + " --group-by loss.plugin --format markdown --sort best_kid");
  EXPECT_EQ(occurrences(markdown.output, " ± "), 10u) << markdown.output;  // 2 groups x 5 metrics
  Outcome json = difflab_command(results + " --where 'loss.plugin = \"mse\" and experiment.seed = 2' --format json");
  EXPECT_EQ(occurrences(json.output, "\"run_id\": "), 2u) << json.output;
  for (const std::string hostile : {"loss.plugin = \"mae\"; DROP TABLE runs", "1 = 1 or loss.plugin = ''",
                                    "loss.plugin = \"\" or \"\"=\"\"", "status = 'x') OR 1=1 --"}) {
    Outcome refused = difflab_command(results + " --where '" + hostile + "'");
    EXPECT_EQ(refused.exit_code, 2) << refused.output;
    EXPECT_NE(refused.output.find("--where:1:"), std::string::npos) << refused.output;
  }
  Outcome nothing = difflab_command(results + " --where \"loss.plugin = 'x'' OR ''1''=''1'\" --format csv");
  EXPECT_EQ(nothing.exit_code, 2) << nothing.output;
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 8);
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
}

TEST(Cli, AKilledWorkersRunIsClaimedAgainAndResumed) {
  difflab::test::TempDir dir;
  const std::string run = tiny_sweep(dir.path(), "\"loss.plugin\" = [\"mae\", \"mse\"]\nseeds = [1, 2]\n") + " --workers 2";
  // The first worker to finish an epoch is killed (SIGKILL: no chance to close its run).
  Outcome outcome = difflab_command(run, "DIFFLAB_TEST_SIGNAL_AFTER_EPOCH='1 9 " + (dir / "once").string() + "'");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("was killed by signal 9; starting a replacement"), std::string::npos) << outcome.output;
  EXPECT_EQ(occurrences(outcome.output, "] difflab: resuming run "), 1u) << outcome.output;
  EXPECT_NE(outcome.output.find("sweep: 4 runs — 4 finished"), std::string::npos) << outcome.output;
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs").getInt(), 4);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE status = 'finished'").getInt(), 4);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM metrics WHERE key = 'n_loss'").getInt(), 8);  // 2 epochs each
}

TEST(Cli, RunsThatDifferOnlyInSamplingReuseOneTrainedNetwork) {
  difflab::test::TempDir dir;
  const std::string run = tiny_sweep(dir.path(), "\"sampler.plugin\" = [\"ddim\", \"dpm_solver_pp\", \"heun\"]\n"
                                                 "\"evaluation.kid_diffusion_steps\" = [2, 4]\n");
  Outcome outcome = difflab_command(run);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_EQ(occurrences(outcome.output, "evaluates the network trained by run 1"), 5u) << outcome.output;
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE status = 'finished'").getInt(), 6);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE trained_by IS NULL").getInt(), 1);  // one training
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM runs WHERE trained_by = 1").getInt(), 5);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM metrics WHERE key = 'n_loss'").getInt(), 2);   // its 2 epochs
  // Every run has its KID after the last epoch, with the NFE its sampler spent.
  SQLite::Statement kid(db, "SELECT p.value, s.value, k.nfe FROM kid k "
                            "JOIN params p ON p.run_id = k.run_id AND p.key = 'sampler.plugin' "
                            "JOIN params s ON s.run_id = k.run_id AND s.key = 'evaluation.kid_diffusion_steps' "
                            "WHERE k.epoch = 2 ORDER BY k.run_id");
  int rows = 0;
  while (kid.executeStep()) {
    ++rows;
    const std::string sampler = kid.getColumn(0).getString();
    const int steps = std::stoi(kid.getColumn(1).getString());
    EXPECT_EQ(kid.getColumn(2).getInt(), sampler == "\"heun\"" ? 2 * steps - 1 : steps) << sampler;
  }
  EXPECT_EQ(rows, 6);
  // The reused runs' grids exist; their networks are the trainer's.
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM artifacts WHERE kind = 'sample_grid'").getInt(), 2 + 5);
  for (int run_id = 2; run_id <= 6; ++run_id)
    EXPECT_TRUE(fs::exists(dir / "runs" / fmt::format("tiny-run{}", run_id) / "epoch-002.png")) << run_id;
}

TEST(Cli, TrainsANetworkExportedFromPythonAsTorchScriptAndResumesIt) {
  if (std::system("/usr/bin/python3 -c 'import torch' 2> /dev/null") != 0) GTEST_SKIP() << "no python3-torch";
  difflab::test::TempDir dir;
  const std::string exported = (dir / "network.pt").string();
  ASSERT_EQ(std::system(("/usr/bin/python3 " + std::string(DIFFLAB_TEST_SOURCE_DIR) +
                         "/tools/export_network.py --width 8 --out " + exported + " > /dev/null")
                            .c_str()),
            0);
  const std::string run = tiny_run(dir, " --set network.plugin=torchscript --set network.model=" + exported);
  Outcome killed = difflab_command(run, "DIFFLAB_TEST_SIGNAL_AFTER_EPOCH='1 9'");
  EXPECT_NE(killed.exit_code, 0);
  Outcome resumed = difflab_command(run);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming run 1 after epoch 1"), std::string::npos) << resumed.output;
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("SELECT status FROM runs").getString(), "finished");
  EXPECT_EQ(db.execAndGet("SELECT value FROM params WHERE key = 'network.plugin'").getString(), "\"torchscript\"");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM metrics WHERE key = 'val_kid'").getInt(), 3);  // 3 epochs
}

std::string file_bytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

TEST(Cli, SamplesFromATrainedRunWithAnySampler) {
  difflab::test::TempDir dir;
  ASSERT_EQ(difflab_command(tiny_run(dir)).exit_code, 0);
  const std::string from_run = "sample --database " + (dir / "results.sqlite").string() + " --run 1";

  Outcome ddpm = difflab_command(from_run + " --num-images 5 --steps 3 --seed 1 --out " +
                                 (dir / "a").string() + " --grid " + (dir / "a.png").string() +
                                 " --set sampler.plugin=ddpm");
  ASSERT_EQ(ddpm.exit_code, 0) << ddpm.output;
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(png_size(dir / "a" / ("image-000" + std::to_string(i) + ".png")), std::make_pair(16u, 16u));
  EXPECT_FALSE(fs::exists(dir / "a" / "image-0005.png"));
  // 5 images -> 2 rows x 3 columns of 16 px scaled 2x, 2 px gaps.
  EXPECT_EQ(png_size(dir / "a.png"), std::make_pair(104u, 70u));

  // Same seed, same images; another seed or sampler, other images.
  ASSERT_EQ(difflab_command(from_run + " --num-images 5 --steps 3 --seed 1 --out " + (dir / "b").string() +
                            " --set sampler.plugin=ddpm").exit_code, 0);
  ASSERT_EQ(difflab_command(from_run + " --num-images 5 --steps 3 --seed 2 --out " + (dir / "c").string() +
                            " --set sampler.plugin=ddpm").exit_code, 0);
  ASSERT_EQ(difflab_command(from_run + " --num-images 5 --steps 3 --seed 1 --out " + (dir / "d").string())
                .exit_code, 0);  // the run's own ddim
  EXPECT_EQ(file_bytes(dir / "a" / "image-0000.png"), file_bytes(dir / "b" / "image-0000.png"));
  EXPECT_NE(file_bytes(dir / "a" / "image-0000.png"), file_bytes(dir / "c" / "image-0000.png"));
  EXPECT_NE(file_bytes(dir / "a" / "image-0000.png"), file_bytes(dir / "d" / "image-0000.png"));

  // From the best checkpoint file itself: the seed's interpolation and steps figures.
  const std::string best = (dir / "runs" / "tiny-run1" / "best.pt").string();
  ASSERT_EQ(difflab_command("sample --checkpoint " + best + " --interpolate --num-images 6 --grid " +
                            (dir / "interpolation.png").string()).exit_code, 0);
  EXPECT_EQ(png_size(dir / "interpolation.png"), std::make_pair(206u, 36u));  // 1 x 6
  ASSERT_EQ(difflab_command("sample --checkpoint " + best + " --steps-strip --grid " +
                            (dir / "strip.png").string()).exit_code, 0);
  EXPECT_EQ(png_size(dir / "strip.png"), std::make_pair(682u, 36u));  // 1 x 20

  Outcome missing = difflab_command(from_run.substr(0, from_run.size() - 1) + "99 --grid x.png");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("no run 99"), std::string::npos) << missing.output;
}

namespace {
// Writes `images` [N, C, H, W] as one PNG each (a 1x1 grid: the image in a 2-pixel black frame).
void write_folder(const fs::path& folder, const torch::Tensor& images) {
  for (int64_t i = 0; i < images.size(0); ++i)
    difflab::write_image_grid(folder / ("image-" + std::to_string(i) + ".png"), images.slice(0, i, i + 1), 1, 1);
}

double value_after(const std::string& output, const std::string& key) {
  size_t at = output.find(key);
  return at == std::string::npos ? NAN : std::stod(output.substr(at + key.size()));
}
}  // namespace

TEST(Cli, KidBetweenImageFoldersSeparatesDistributions) {
  difflab::test::TempDir dir;
  torch::manual_seed(0);
  torch::Tensor dark = torch::rand({40, 1, 8, 8}) * 0.5;
  write_folder(dir / "a", dark);
  write_folder(dir / "same", dark);
  write_folder(dir / "bright", torch::rand({40, 1, 8, 8}) * 0.5 + 0.5);

  Outcome same = difflab_command("kid " + (dir / "a").string() + " " + (dir / "same").string() +
                                 " --features pixels --subsets 10 --subset-size 30");
  ASSERT_EQ(same.exit_code, 0) << same.output;
  Outcome bright = difflab_command("kid " + (dir / "a").string() + " " + (dir / "bright").string() +
                                   " --subsets 10 --subset-size 30");
  ASSERT_EQ(bright.exit_code, 0) << bright.output;
  EXPECT_NE(bright.output.find("40 images of 1x12x12"), std::string::npos) << bright.output;
  const double kid_same = value_after(same.output, "kid_mean: ");
  const double kid_bright = value_after(bright.output, "kid_mean: ");
  EXPECT_LT(std::abs(kid_same), 0.05) << same.output;
  EXPECT_GT(kid_bright, 10 * std::abs(kid_same) + 0.01) << bright.output;
  EXPECT_GT(value_after(bright.output, "kid_std: "), 0.0);
}

// difflab fid and difflab prdc between image folders: a folder against a copy of itself is FID 0 —
// to rounding: 40 images give a rank-deficient 144-d covariance, whose ~105 zero eigenvalues each
// contribute up to √δ, δ = d·ε·‖Σ‖₂² (tests/training/fid_test.cpp's analysis; ‖Σ‖₂ ≤ tr Σ ≤ 64/48
// for 64 pixels uniform on [0, 0.5]): 4 · 105 · √(144 · 1.1e-16 · 1.8) ≈ 2e-5 — with precision, recall and coverage 1; against brighter images of disjoint pixel values the two
// sets' k-NN balls do not reach each other (pixel distances ≈ 2.4 within a set, ≈ 6.5 across).
TEST(Cli, FidAndPrdcBetweenImageFolders) {
  difflab::test::TempDir dir;
  torch::manual_seed(0);
  torch::Tensor dark = torch::rand({40, 1, 8, 8}) * 0.5;
  write_folder(dir / "a", dark);
  write_folder(dir / "same", dark);
  write_folder(dir / "bright", torch::rand({40, 1, 8, 8}) * 0.5 + 0.5);
  const Outcome same = difflab_command("fid " + (dir / "a").string() + " " + (dir / "same").string());
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_NE(same.output.find("features: pixels (144 dimensions)"), std::string::npos) << same.output;
  EXPECT_NE(same.output.find("a covariance of fewer samples than dimensions"), std::string::npos) << same.output;
  EXPECT_NEAR(value_after(same.output, "fid: "), 0.0, 2e-5) << same.output;
  const Outcome bright = difflab_command("fid " + (dir / "a").string() + " " + (dir / "bright").string());
  ASSERT_EQ(bright.exit_code, 0) << bright.output;
  // Each pixel's mean moves by 0.5 (the frame's pixels are 0 in both): |Δμ|² ≈ 64 · 0.25 = 16.
  EXPECT_NEAR(value_after(bright.output, "fid: "), 16.0, 3.0) << bright.output;

  const Outcome itself = difflab_command("prdc " + (dir / "a").string() + " " + (dir / "same").string());
  ASSERT_EQ(itself.exit_code, 0) << itself.output;
  EXPECT_EQ(value_after(itself.output, "precision: "), 1.0) << itself.output;
  EXPECT_EQ(value_after(itself.output, "recall: "), 1.0) << itself.output;
  EXPECT_EQ(value_after(itself.output, "coverage: "), 1.0) << itself.output;
  const Outcome apart = difflab_command("prdc " + (dir / "a").string() + " " + (dir / "bright").string());
  ASSERT_EQ(apart.exit_code, 0) << apart.output;
  EXPECT_EQ(value_after(apart.output, "precision: "), 0.0) << apart.output;
  EXPECT_EQ(value_after(apart.output, "recall: "), 0.0) << apart.output;
  EXPECT_EQ(value_after(apart.output, "coverage: "), 0.0) << apart.output;
  // k at least the number of images: exit 2, the option named.
  const Outcome too_many = difflab_command("prdc " + (dir / "a").string() + " " + (dir / "same").string() + " --pr-k 40");
  EXPECT_EQ(too_many.exit_code, 2) << too_many.output;
  EXPECT_NE(too_many.output.find("--pr-k"), std::string::npos) << too_many.output;
}

TEST(Cli, KidOfAnEmptyFolderIsAnInputError) {
  difflab::test::TempDir dir;
  fs::create_directories(dir / "empty");
  write_folder(dir / "full", torch::rand({4, 1, 8, 8}));
  Outcome outcome = difflab_command("kid " + (dir / "empty").string() + " " + (dir / "full").string());
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.output.find("no PNG or JPEG images"), std::string::npos) << outcome.output;
}

TEST(Cli, ConfigErrorExitsWithTwoAndWritesNothing) {
  difflab::test::TempDir dir;
  std::ofstream(dir / "bad.toml") << "[experiment]\ndatabase = \"" << (dir / "r.sqlite").string()
                                  << "\"\n[schedule]\nmin_signal_rate = 0.0\n";
  Outcome outcome = difflab_command("run " + (dir / "bad.toml").string());
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.output.find("bad.toml:4:"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("schedule.min_signal_rate"), std::string::npos) << outcome.output;
  EXPECT_FALSE(fs::exists(dir / "r.sqlite"));
}

TEST(Cli, MissingDatasetExitsWithTwoBeforeTheDatabaseExists) {
  difflab::test::TempDir dir;
  Outcome outcome = difflab_command(
      "run " + std::string(DIFFLAB_TEST_SOURCE_DIR) + "/experiments/quickstart.toml" +
      " --set data.path=/nonexistent/fashion --set experiment.database=" + (dir / "r.sqlite").string());
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("/nonexistent/fashion/train-images-idx3-ubyte.gz"), std::string::npos);
  EXPECT_NE(outcome.output.find("dataset-fashion-mnist"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "r.sqlite"));
}

TEST(Cli, CheckReportsTheMissingDataPath) {
  Outcome outcome = difflab_command("check " + std::string(DIFFLAB_TEST_SOURCE_DIR) +
                                    "/experiments/quickstart.toml --set data.path=/nonexistent/x");
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.output.find("/nonexistent/x"), std::string::npos) << outcome.output;
}

TEST(Cli, CheckOfTheSeedsExperimentReportsOnlyTheMissingFlowers) {
  difflab::test::TempDir dir;  // a working directory without data/flowers102
  Outcome outcome = difflab_command("check " + std::string(DIFFLAB_TEST_SOURCE_DIR) +
                                    "/experiments/flowers_ddim.toml --set data.path=" +
                                    (dir / "data/flowers102/jpg").string());
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.output.find("image folder not found: " + (dir / "data/flowers102/jpg").string()),
            std::string::npos)
      << outcome.output;
  EXPECT_EQ(outcome.output.find("error:"), outcome.output.rfind("error:")) << outcome.output;
}

TEST(Cli, CheckPrintsTheResolvedExperimentWithOverrides) {
  Outcome outcome = difflab_command("check " + tiny_experiment() + " --set loss.plugin=mse");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("[loss]\nplugin = \"mse\""), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("min_signal_rate = 0.02"), std::string::npos);
}

TEST(Cli, BenchPrintsThroughputAndMemory) {
  Outcome outcome = difflab_command("bench " + tiny_experiment() + " --steps 2");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  // Each figure is a positive number; the batch is the experiment's.
  for (const char* key : {"train_images_per_second", "optimizer_share", "sample_images_per_second",
                          "kid_sample_images_per_second", "forward_sample_images_per_second", "metrics_share",
                          "peak_rss_mb"}) {
    std::smatch value;
    ASSERT_TRUE(std::regex_search(outcome.output, value, std::regex(std::string("\n") + key + ": ([0-9.]+)[ \n]")))
        << key << "\n" << outcome.output;
    EXPECT_GT(std::stod(value[1].str()), 0.0) << key;
    if (std::string(key) == "optimizer_share" || std::string(key) == "metrics_share") {
      EXPECT_LT(std::stod(value[1].str()), 1.0);
    }
  }
  // Sampling says with how many steps it was timed: the experiment's plot and KID steps.
  EXPECT_NE(outcome.output.find("(3 steps, plot_diffusion_steps, batches of 8"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("(5 steps, kid_diffusion_steps)"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("batch_shape: 16x1x16x16"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("threads: "), std::string::npos) << outcome.output;
  // The sample metrics' share: kid_batches 8 x batch 16 would be 128 images, the split has 2 batches.
  EXPECT_NE(outcome.output.find("sample metrics [kid] every 1 epoch(s)"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("generating 32 images"), std::string::npos) << outcome.output;
}

TEST(Cli, BenchProfileListsTheOperatorsOfATrainingStep) {
  Outcome outcome = difflab_command("bench " + tiny_experiment() + " --steps 2 --profile");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  const size_t table = outcome.output.find("profile of 2 training steps: ");
  ASSERT_NE(table, std::string::npos) << outcome.output;
  // Every step runs the network's convolutions forward and backward, 2 steps' worth per step.
  std::smatch row;
  const size_t sampling = outcome.output.find("profile of sampling 16 images with 3 steps (per network evaluation): ");
  ASSERT_NE(sampling, std::string::npos) << outcome.output;
  const std::string rest = outcome.output.substr(table, sampling - table);
  ASSERT_TRUE(std::regex_search(rest, row, std::regex(R"(([0-9.]+) +([0-9.]+) +([0-9.]+)  aten::convolution_backward)")))
      << rest;
  EXPECT_GT(std::stod(row[1].str()), 0.0);
  EXPECT_GT(std::stod(row[3].str()), 1.0);  // calls per step: one per convolution
  const size_t rows = static_cast<size_t>(std::count(rest.begin(), rest.end(), '\n'));
  EXPECT_GE(rows, 10u);
  EXPECT_LE(rows, 28u);  // header lines + at most 25 operators
  // The sampling table: the network's convolutions, once per evaluation, and no backward pass.
  const std::string sampling_table = outcome.output.substr(sampling);
  EXPECT_EQ(sampling_table.find("backward"), std::string::npos) << sampling_table;
  EXPECT_TRUE(std::regex_search(sampling_table, row, std::regex(R"(([0-9.]+) +([0-9.]+) +([0-9.]+)  \S*conv)")))
      << sampling_table;
}
