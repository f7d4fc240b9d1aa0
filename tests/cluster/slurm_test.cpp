// Sweeps on Slurm, end to end: difflab slurm submits a real job array to a real single-node
// Slurm started for the test (slurm_cluster.h); preemption, requeue, cancel and resubmit; shards
// collected into one database. The submission's files and the task contract are tested without
// Slurm.
#include <SQLiteCpp/SQLiteCpp.h>
#include <algorithm>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include "cluster/slurm_cluster.h"
#include "cluster/sweep_helpers.h"
#include "results/results_store.h"
#include "strategy/pruning.h"
#include "sweep/sweep_folder.h"

namespace fs = std::filesystem;
using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::SlurmCluster;
using difflab::test::TempDir;
using namespace difflab::test::sweeps;

TEST(SlurmSubmit, DryRunWritesTheManifestAndTheScriptAndSubmitsNothing) {
  TempDir dir;
  const Outcome outcome = difflab_command(
      "slurm " + tiny_sweep(dir, "\"loss.plugin\" = [\"mae\", \"mse\"]\nseeds = [1, 2, 3]",
                            " --array-parallelism 2 --cpus-per-task 1 --partition gpu --time 01:00:00"
                            " --sbatch-arg=--account=abc --dry-run"));
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  const fs::path folder = folder_of(outcome.output);
  ASSERT_TRUE(fs::is_directory(folder)) << outcome.output;
  EXPECT_EQ(folder.parent_path(), dir.path() / "runs" / "slurm");
  const std::string script = read_text(folder / "submit-001" / "job.sbatch");
  for (const std::string& line : std::vector<std::string>
       {"#SBATCH --array=0-5%2\n", "#SBATCH --requeue\n", "#SBATCH --signal=B:USR2@120\n", "#SBATCH --open-mode=append\n",
        "#SBATCH --cpus-per-task=1\n", "#SBATCH --partition=gpu\n", "#SBATCH --time=01:00:00\n",
        "#SBATCH --account=abc\n", "#SBATCH --output=" + (folder / "submit-001" / "logs").string() + "/task-%a.log\n",
        "exec " + std::string(DIFFLAB_TEST_EXECUTABLE) + " sweep task " + folder.string() + " --submission 1\n"})
    EXPECT_NE(script.find(line), std::string::npos) << line << "\nin\n" << script;
  // The manifest: every point with the identity `difflab check` gives it.
  const std::string manifest = read_text(folder / "manifest.toml");
  EXPECT_EQ(occurrences(manifest, "[[points]]"), 6u);
  const Outcome check = difflab_command("check " + tiny_sweep(dir, "\"loss.plugin\" = [\"mae\", \"mse\"]\nseeds = [1, 2, 3]"));
  std::smatch hash;
  std::string text = check.output;
  int checked = 0;
  while (std::regex_search(text, hash, std::regex("config hash ([0-9a-f]{16})"))) {
    EXPECT_NE(manifest.find("config_hash = '" + hash[1].str() + "'"), std::string::npos) << hash[1];
    text = hash.suffix();
    ++checked;
  }
  EXPECT_EQ(checked, 6);
  const std::string tasks = read_text(folder / "submit-001" / "tasks.toml");
  for (int point = 0; point < 6; ++point)
    EXPECT_NE(tasks.find(fmt::format("[ {} ]", point)), std::string::npos) << tasks;
  EXPECT_FALSE(fs::exists(folder / "submit-001" / "job_id"));

  // Packed: four points a task.
  const Outcome packed = difflab_command(
      "slurm " + tiny_sweep(dir, "\"loss.plugin\" = [\"mae\", \"mse\"]\nseeds = [1, 2, 3]", " --runs-per-task 4 --dry-run"));
  ASSERT_EQ(packed.exit_code, 0) << packed.output;
  EXPECT_NE(read_text(folder / "submit-002" / "job.sbatch").find("#SBATCH --array=0-1\n"), std::string::npos);
}

TEST(SlurmSubmit, BadInputIsExitTwoAndWritesNothing) {
  TempDir dir;
  const Outcome outcome = difflab_command("slurm " + tiny_sweep(dir, "\"training.batch_sise\" = [8, 16]") + " --dry-run");
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("batch_sise"), std::string::npos) << outcome.output;
  EXPECT_FALSE(fs::exists(dir / "runs"));
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));
  const Outcome status = difflab_command("slurm status " + dir.path().string());
  EXPECT_EQ(status.exit_code, 2) << status.output;
  EXPECT_NE(status.output.find("not a difflab sweep folder"), std::string::npos) << status.output;
}

// The contract of a task, without Slurm: a Kubernetes Indexed Job runs `difflab slurm task
// FOLDER --submission N` with JOB_COMPLETION_INDEX set.
TEST(SlurmTask, IndexedJobContractShardsAndCollect) {
  TempDir dir;
  const Outcome submitted = difflab_command("slurm " + tiny_sweep(dir, "seeds = [1, 2]") + " --dry-run");
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const fs::path folder = folder_of(submitted.output);
  const Outcome no_index = difflab_command("slurm task " + folder.string());
  EXPECT_EQ(no_index.exit_code, 2) << no_index.output;
  EXPECT_NE(no_index.output.find("JOB_COMPLETION_INDEX"), std::string::npos) << no_index.output;
  const Outcome wrong = difflab_command("slurm task " + folder.string() + " --index 2");
  EXPECT_EQ(wrong.exit_code, 2) << wrong.output;

  const Outcome first = difflab_command("slurm task " + folder.string(), "JOB_COMPLETION_INDEX=1");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("task 1 start"), std::string::npos) << first.output;
  const Outcome second = difflab_command("slurm task " + folder.string() + " --index 0");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_TRUE(fs::exists(folder / "shards" / "point-0000.sqlite"));
  EXPECT_TRUE(fs::exists(folder / "points" / "0001"));
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));  // tasks write shards only

  // A task run again finds its point finished in the shard and trains nothing.
  const Outcome again = difflab_command("slurm task " + folder.string() + " --index 0");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("finished before"), std::string::npos) << again.output;

  const Outcome collected = difflab_command("slurm collect " + folder.string());
  ASSERT_EQ(collected.exit_code, 0) << collected.output;
  EXPECT_NE(collected.output.find("2 runs added"), std::string::npos) << collected.output;
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), 2);
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(DISTINCT config_hash) FROM runs"), 2);
  // Twice: nothing added.
  const Outcome twice = difflab_command("slurm collect " + folder.string());
  EXPECT_NE(twice.output.find("0 runs added, 0 updated, 2 unchanged"), std::string::npos) << twice.output;
  const int64_t metrics = count(dir / "results.sqlite", "SELECT COUNT(*) FROM metrics");

  // A damaged shard is reported and skipped; the database stays as it was.
  fs::resize_file(folder / "shards" / "point-0001.sqlite", 3000);
  const Outcome damaged = difflab_command("slurm collect " + folder.string());
  EXPECT_EQ(damaged.exit_code, 1) << damaged.output;
  EXPECT_NE(damaged.output.find("skipped shard " + (folder / "shards" / "point-0001.sqlite").string()), std::string::npos)
      << damaged.output;
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(*) FROM runs"), 2);
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(*) FROM metrics"), metrics);
  SQLite::Database db((dir / "results.sqlite").string());
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");

  const Outcome status = difflab_command("slurm status " + folder.string());
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("2 finished"), std::string::npos) << status.output;
}

// Successive halving in a sweep folder, each pass's tasks and its decider run by hand as Slurm
// would run them: the decisions are those of `difflab run` of the same file on one machine, value
// for value; a task of a pass that never ran is submitted again before its rung is decided.
TEST(SlurmTask, SuccessiveHalvingPassesAndDecidersDecideAsOneMachineDoes) {
  TempDir dir, local;
  const std::string sweep =
      "method = \"successive_halving\"\ntrials = 6\nseed = 5\nmetric = \"val_n_loss\"\nmin_epochs = 1\n"
      "reduction_factor = 2\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const std::string settings = " --set training.epochs=4 --set evaluation.kid_protocol=none";
  const Outcome submitted = difflab_command("slurm " + tiny_sweep(dir, sweep, settings) + " --dry-run");
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  EXPECT_NE(submitted.output.find("run difflab sweep decide"), std::string::npos) << submitted.output;
  const fs::path folder = folder_of(submitted.output);
  auto run_tasks = [&](int64_t submission, int64_t first, int64_t last) {
    for (int64_t task = first; task <= last; ++task) {
      const Outcome ran = difflab_command(fmt::format("sweep task {} --submission {} --index {}", folder.string(),
                                                      submission, task));
      ASSERT_EQ(ran.exit_code, 0) << ran.output;  // waiting at a rung is a task done
    }
  };
  auto decide = [&](int64_t submission) {
    const Outcome decided = difflab_command(fmt::format("sweep decide {} --submission {} --dry-run", folder.string(),
                                                        submission));
    EXPECT_EQ(decided.exit_code, 0) << decided.output;
    return decided.output;
  };
  run_tasks(1, 0, 5);
  const Outcome waiting = difflab_command("sweep status " + folder.string());
  EXPECT_NE(waiting.output.find("6 waiting"), std::string::npos) << waiting.output;
  EXPECT_NE(waiting.output.find("successive halving: 6 of 6 trials in the running, at rung 0 (epoch 1); every one "
                                "has reached it"), std::string::npos) << waiting.output;
  // Each shard's decisions: rung, value, cutoff, rank, out of, decision.
  auto shard_decisions = [&] {
    std::vector<std::tuple<int64_t, double, double, int64_t, int64_t, bool>> all;
    for (int64_t point = 0; point < 6; ++point)
      for (const auto& d : difflab::ResultsStore(difflab::shard_path(folder, point), difflab::OpenMode::read_only).decisions())
        all.emplace_back(d.rung, d.value, d.cutoff, d.rank, d.of, d.prune);
    return all;
  };
  fs::copy(folder / "shards", dir / "undecided");
  const std::string first = decide(1);
  EXPECT_NE(first.find("rung 0 decided: 3 of 6 trial(s) go on"), std::string::npos);
  const auto decided = shard_decisions();
  EXPECT_EQ(decided.size(), 6u);
  // A decider that died half-way (points 0 to 2 not yet written, the pass not submitted) and
  // runs again decides the rest the same way, the recorded decisions standing.
  for (int64_t point = 0; point < 3; ++point)
    fs::copy_file(dir / "undecided" / difflab::shard_path(folder, point).filename(), difflab::shard_path(folder, point),
                  fs::copy_options::overwrite_existing);
  fs::remove_all(folder / "submit-002");
  EXPECT_EQ(decide(1).substr(first.find("rung 0")), first.substr(first.find("rung 0")));
  EXPECT_EQ(shard_decisions(), decided);
  // The same decider again (requeued after its node failed): its pass was decided; nothing more.
  EXPECT_NE(decide(1).find("submission 2 came after submission 1: it was decided before"), std::string::npos);
  EXPECT_FALSE(fs::exists(folder / "submit-003"));
  const std::optional<difflab::Submission> second = difflab::read_submission(folder, 2);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->tasks.size(), 3u);
  EXPECT_EQ(second->rung, 1);
  EXPECT_TRUE(fs::exists(folder / "submit-002" / "job.sbatch"));
  // One task of the pass never runs (its node died): the decider submits it again, alone.
  run_tasks(2, 0, 1);
  const std::string behind = decide(2);
  EXPECT_NE(behind.find(fmt::format("point(s) {} have not reached rung 1 (epoch 2): submitting them again",
                                    second->tasks[2].front())),
            std::string::npos) << behind;
  run_tasks(3, 0, 0);
  EXPECT_NE(decide(3).find("rung 1 decided: 1 of 3 trial(s) go on"), std::string::npos);
  run_tasks(4, 0, 0);
  EXPECT_NE(decide(4).find("every trial is finished or pruned"), std::string::npos);
  EXPECT_FALSE(fs::exists(folder / "submit-005"));
  ASSERT_EQ(difflab_command("sweep collect " + folder.string()).exit_code, 0);

  const Outcome alone = difflab_command("run " + tiny_sweep(local, sweep, settings));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  difflab::ResultsStore cluster(dir / "results.sqlite", difflab::OpenMode::read_only),
      one(local / "results.sqlite", difflab::OpenMode::read_only);
  // Each trial (its learning rate: the paths in the two configurations differ) and rung: value,
  // cutoff, rank, out of how many, decision; and each trial's status.
  auto learning_rate = [](difflab::ResultsStore& store, int64_t run) {
    for (const auto& [key, value] : store.params(run))
      if (key == "training.learning_rate") return value;
    return std::string();
  };
  auto by_trial = [&](difflab::ResultsStore& store) {
    std::map<std::pair<std::string, int64_t>, std::tuple<double, double, int64_t, int64_t, bool>> decisions;
    for (const auto& d : store.decisions())
      decisions[{learning_rate(store, d.run_id), d.rung}] = {d.value, d.cutoff, d.rank, d.of, d.prune};
    return decisions;
  };
  auto statuses = [&](difflab::ResultsStore& store) {
    std::map<std::string, difflab::RunStatus> status;
    for (const auto& run : store.runs()) status[learning_rate(store, run.id)] = run.status;
    return status;
  };
  const auto expected = by_trial(one);
  EXPECT_EQ(expected.size(), 6u + 3u);
  EXPECT_EQ(by_trial(cluster), expected);
  EXPECT_EQ(statuses(cluster), statuses(one));
  EXPECT_EQ(statuses(cluster).size(), 6u);
}

TEST(Slurm, SixPointsTwoAtATimeEachFinishExactlyOnce) {
  SlurmCluster cluster;
  if (!cluster.skip_reason().empty()) GTEST_SKIP() << "no local Slurm: " << cluster.skip_reason();
  TempDir dir;
  const Outcome submitted = difflab_command(
      "slurm " + tiny_sweep(dir, "\"loss.plugin\" = [\"mae\", \"mse\"]\nseeds = [1, 2, 3]",
                            " --array-parallelism 2 --cpus-per-task 1"), cluster.environment());
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const std::string job = job_of(submitted.output);
  const fs::path folder = folder_of(submitted.output);
  ASSERT_FALSE(job.empty()) << submitted.output;
  ASSERT_TRUE(cluster.wait_until_done(job, 300)) << cluster.command("squeue").output << cluster.logs();

  const Outcome collected = difflab_command("slurm collect " + folder.string(), cluster.environment());
  ASSERT_EQ(collected.exit_code, 0) << collected.output;
  const fs::path database = dir / "results.sqlite";
  EXPECT_EQ(count(database, "SELECT COUNT(*) FROM runs"), 6);
  EXPECT_EQ(count(database, "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), 6);
  EXPECT_EQ(count(database, "SELECT COUNT(DISTINCT config_hash) FROM runs"), 6);
  SQLite::Database db(database.string());
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
  // Merging the shards again adds no rows.
  const Outcome merged = difflab_command("results merge " + database.string() + " " + (folder / "shards").string() +
                                         "/point-*.sqlite");
  EXPECT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_NE(merged.output.find("0 runs added, 0 updated, 6 unchanged"), std::string::npos) << merged.output;
  EXPECT_EQ(count(database, "SELECT COUNT(*) FROM runs"), 6);

  // Each point trained once; never more than two tasks at once (their own start and end times).
  const std::string logs = all_logs(folder);
  EXPECT_EQ(occurrences(logs, "   finished: run"), 6u) << logs;
  std::vector<std::pair<double, int>> events;
  const std::regex line("difflab: task ([0-9]+) (start|end) ([0-9.]+)");
  for (auto it = std::sregex_iterator(logs.begin(), logs.end(), line); it != std::sregex_iterator(); ++it)
    events.emplace_back(std::stod((*it)[3].str()), (*it)[2].str() == "start" ? 1 : -1);
  ASSERT_EQ(events.size(), 12u) << logs;
  std::sort(events.begin(), events.end());
  int running = 0, most = 0;
  for (const auto& event : events) most = std::max(most, running += event.second);
  EXPECT_LE(most, 2);
  EXPECT_GE(most, 1);

  // Submitting again: everything finished, nothing submitted.
  const Outcome again = difflab_command(
      "slurm " + tiny_sweep(dir, "\"loss.plugin\" = [\"mae\", \"mse\"]\nseeds = [1, 2, 3]", " --array-parallelism 2"),
      cluster.environment());
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("nothing to submit"), std::string::npos) << again.output;
  EXPECT_FALSE(fs::exists(folder / "submit-002"));
}

TEST(Slurm, APreemptedTaskRequeuesAloneAndEndsWithTheLossesOfAnUninterruptedRun) {
  SlurmCluster cluster;
  if (!cluster.skip_reason().empty()) GTEST_SKIP() << "no local Slurm: " << cluster.skip_reason();
  TempDir dir, reference;
  // The reference: the first point, trained uninterrupted by difflab run.
  const Outcome uninterrupted = difflab_command(
      "run " + tiny_sweep(reference, "", " --set experiment.seed=1 --set training.epochs=3"));
  ASSERT_EQ(uninterrupted.exit_code, 0) << uninterrupted.output;

  // Two points; the first task to reach step 6 (two batches into epoch 2) waits there for the
  // warning signal.
  const fs::path marker = dir / "paused";
  const Outcome submitted = difflab_command(
      "slurm " + tiny_sweep(dir, "seeds = [1, 2]", " --set training.epochs=3 --cpus-per-task 1"),
      cluster.environment() + " DIFFLAB_TEST_PAUSE_AFTER_STEP='6 " + marker.string() + "'");
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const std::string job = job_of(submitted.output);
  const fs::path folder = folder_of(submitted.output);
  const std::string task = wait_for_line(marker, 120);
  ASSERT_TRUE(task == "0" || task == "1") << "no task paused: " << all_logs(folder);
  const std::string element = job + "_" + task;
  const Outcome signal = cluster.command("scancel --signal=USR2 --batch " + element);
  EXPECT_EQ(signal.exit_code, 0) << signal.output;
  // The task requeues itself; Slurm holds a requeued job for a while: release it now.
  const fs::path log = folder / "submit-001" / "logs" / ("task-" + task + ".log");
  for (int i = 0; i < 1200 && read_text(log).find("requeueing") == std::string::npos; ++i) usleep(100000);
  ASSERT_NE(read_text(log).find("requeueing " + element), std::string::npos) << read_text(log);
  // The requeue completes when the old instance's script has exited, and only then does Slurm
  // hold the element (reason BeginTime): released, it runs again.
  const std::string states = cluster.restart_requeued(element, log);
  ASSERT_NE(read_text(log).find("restart 1)"), std::string::npos)
      << "the requeued element never started again; its states: " << states << "\n"
      << cluster.command("scontrol show job " + element).output << cluster.logs() << read_text(log);
  ASSERT_TRUE(cluster.wait_until_done(job, 240)) << cluster.command("squeue").output << all_logs(folder);

  const std::string text = read_text(log);
  EXPECT_NE(text.find("stopped by signal 12 at step 6 (2 of epoch 2's 4 batches)"), std::string::npos) << text;
  EXPECT_NE(text.find("restart 1)"), std::string::npos) << text;
  EXPECT_NE(text.find("resuming run 1 after epoch 1 and 2 batches of epoch 2 (step 6)"), std::string::npos) << text;
  // The other task ran once, never requeued.
  const std::string other = read_text(folder / "submit-001" / "logs" / (task == "0" ? "task-1.log" : "task-0.log"));
  EXPECT_EQ(occurrences(other, " start "), 1u) << other;
  EXPECT_EQ(other.find("restart 1"), std::string::npos) << other;

  ASSERT_EQ(difflab_command("slurm collect " + folder.string()).exit_code, 0);
  const fs::path database = dir / "results.sqlite";
  EXPECT_EQ(count(database, "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), 2);
  EXPECT_EQ(count(database, "SELECT COUNT(*) FROM runs"), 2);
  if (task == "0") {  // the preempted point is the reference's configuration (seed 1)
    for (const char* key : {"n_loss", "i_loss", "val_n_loss", "val_kid"}) {
      const std::vector<double> expected = difflab::test::metric_history(reference / "results.sqlite", key);
      ASSERT_EQ(expected.size(), 3u) << key;
      SQLite::Database db(database.string());
      SQLite::Statement query(db, "SELECT m.value FROM metrics m JOIN params p ON p.run_id = m.run_id AND "
                                  "p.key = 'experiment.seed' AND p.value = '1' WHERE m.key = ? ORDER BY m.epoch");
      query.bind(1, key);
      std::vector<double> values;
      while (query.executeStep()) values.push_back(query.getColumn(0).getDouble());
      EXPECT_EQ(values, expected) << key;
    }
  } else {
    const Outcome seed2 = difflab_command("run " + tiny_sweep(reference, "", " --set experiment.seed=2 --set "
                                                                             "training.epochs=3 --new"));
    ASSERT_EQ(seed2.exit_code, 0) << seed2.output;
    SQLite::Database db(database.string());
    SQLite::Statement query(db, "SELECT m.value FROM metrics m JOIN params p ON p.run_id = m.run_id AND "
                                "p.key = 'experiment.seed' AND p.value = '2' WHERE m.key = 'n_loss' ORDER BY m.epoch");
    std::vector<double> values;
    while (query.executeStep()) values.push_back(query.getColumn(0).getDouble());
    SQLite::Database ref((reference / "results.sqlite").string());
    SQLite::Statement expected(ref, "SELECT value FROM metrics WHERE run_id = 2 AND key = 'n_loss' ORDER BY epoch");
    std::vector<double> wanted;
    while (expected.executeStep()) wanted.push_back(expected.getColumn(0).getDouble());
    ASSERT_EQ(wanted.size(), 3u);
    EXPECT_EQ(values, wanted);
  }
}

TEST(Slurm, ACancelledArrayResubmittedRunsOnlyItsUnfinishedPoints) {
  SlurmCluster cluster;
  if (!cluster.skip_reason().empty()) GTEST_SKIP() << "no local Slurm: " << cluster.skip_reason();
  TempDir dir;
  // Three points, two tasks at once: the first task to reach step 6 waits there; the other two
  // points finish. Then the whole array is cancelled (SIGTERM: a checkpoint, no requeue).
  const fs::path marker = dir / "paused";
  const std::string sweep = tiny_sweep(dir, "seeds = [1, 2, 3]", " --set training.epochs=3 --cpus-per-task 1");
  const Outcome submitted =
      difflab_command("slurm " + sweep, cluster.environment() + " DIFFLAB_TEST_PAUSE_AFTER_STEP='6 " + marker.string() + "'");
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const std::string job = job_of(submitted.output);
  const fs::path folder = folder_of(submitted.output);
  const std::string task = wait_for_line(marker, 120);
  ASSERT_FALSE(task.empty()) << all_logs(folder);
  // The other two tasks end (the paused one holds one of the two CPUs).
  for (int i = 0; i < 1200 && occurrences(all_logs(folder), "   finished: run") < 2; ++i) usleep(100000);
  ASSERT_EQ(occurrences(all_logs(folder), "   finished: run"), 2u) << all_logs(folder);
  EXPECT_EQ(cluster.command("scancel " + job).exit_code, 0);
  ASSERT_TRUE(cluster.wait_until_done(job, 120)) << cluster.command("squeue").output;
  const std::string cancelled = read_text(folder / "submit-001" / "logs" / ("task-" + task + ".log"));
  EXPECT_NE(cancelled.find("stopped by signal 15 at step 6"), std::string::npos) << cancelled;
  EXPECT_EQ(cancelled.find("requeueing"), std::string::npos) << cancelled;

  const Outcome status = difflab_command("slurm status " + folder.string(), cluster.environment());
  EXPECT_NE(status.output.find("2 finished, 1 interrupted"), std::string::npos) << status.output;

  // Submitted again (SLURM state as it is): only the interrupted point, which resumes.
  const Outcome resubmitted = difflab_command("slurm " + sweep, cluster.environment());
  ASSERT_EQ(resubmitted.exit_code, 0) << resubmitted.output;
  EXPECT_NE(resubmitted.output.find("3 points — 2 finished, 0 failed, 1 to run"), std::string::npos)
      << resubmitted.output;
  EXPECT_NE(resubmitted.output.find("(1 tasks for 1 points)"), std::string::npos) << resubmitted.output;
  const std::string job2 = job_of(resubmitted.output);
  ASSERT_TRUE(cluster.wait_until_done(job2, 240)) << cluster.command("squeue").output;
  const std::string rerun = read_text(folder / "submit-002" / "logs" / "task-0.log");
  EXPECT_NE(rerun.find("resuming run 1 after epoch 1 and 2 batches of epoch 2 (step 6)"), std::string::npos) << rerun;

  ASSERT_EQ(difflab_command("slurm collect " + folder.string()).exit_code, 0);
  const fs::path database = dir / "results.sqlite";
  EXPECT_EQ(count(database, "SELECT COUNT(*) FROM runs"), 3);
  EXPECT_EQ(count(database, "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), 3);
  EXPECT_EQ(occurrences(all_logs(folder), "   finished: run"), 3u) << all_logs(folder);
}

TEST(Slurm, EachPointOfASweepTaskTrainsDataParallelAcrossTheTasksSrunStarts) {
  SlurmCluster cluster;
  if (!cluster.skip_reason().empty()) GTEST_SKIP() << "no local Slurm: " << cluster.skip_reason();
  TempDir dir;
  // Two points, one task at a time, each task two processes (srun) that train one run together.
  const Outcome submitted = difflab_command(
      "slurm " + tiny_sweep(dir, "seeds = [1, 2]", " --ntasks-per-node 2 --cpus-per-task 1 --array-parallelism 1"),
      cluster.environment());
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const fs::path folder = folder_of(submitted.output);
  const std::string script = read_text(folder / "submit-001" / "job.sbatch");
  EXPECT_NE(script.find("#SBATCH --ntasks-per-node=2\n"), std::string::npos) << script;
  EXPECT_NE(script.find("#SBATCH --signal=USR2@120\n"), std::string::npos) << script;
  EXPECT_NE(script.find("exec srun --kill-on-bad-exit=1 "), std::string::npos) << script;
  ASSERT_TRUE(cluster.wait_until_done(job_of(submitted.output), 240)) << cluster.command("squeue").output << all_logs(folder);
  const std::string logs = all_logs(folder);
  EXPECT_EQ(occurrences(logs, "2 processes, gloo"), 2u) << logs;
  ASSERT_EQ(difflab_command("slurm collect " + folder.string()).exit_code, 0);
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(*) FROM runs WHERE status = 'finished' AND world_size = 2 "
                                          "AND backend = 'gloo'"), 2);
}

namespace {

// Submits an adaptive sweep of the tiny experiment, 4 epochs, two tasks at a time; the first task
// to reach step 6 waits there for the warning signal (creating `marker` with its index).
Outcome submit_adaptive(const SlurmCluster& cluster, const TempDir& dir, const std::string& sweep,
                        const fs::path& marker) {
  return difflab_command(
      "slurm " + tiny_sweep(dir, sweep, " --set training.epochs=4 --set evaluation.kid_protocol=none "
                                        "--cpus-per-task 1 --array-parallelism 2"),
      cluster.environment() + " DIFFLAB_TEST_PAUSE_AFTER_STEP='6 " + marker.string() + "'");
}

// Sends array element `element` the warning signal and waits until it has run again (its log
// says "restart 1)"; SlurmCluster::restart_requeued releases Slurm's hold on it). scancel
// may answer "Job can not be altered now" when the task requeues itself at once: the signal was
// delivered then, which the task's log says.
void preempt(const SlurmCluster& cluster, const std::string& element, const fs::path& log) {
  cluster.command("scancel --signal=USR2 --batch " + element);
  cluster.restart_requeued(element, log);
}

}  // namespace

// An asha sweep on a real Slurm: each array task decides at its rung epochs from the values in
// the other points' shards, with no coordinator; one task is preempted mid-rung and requeued.
// Collected, every trial is finished or pruned exactly once, and every decision replays from the
// experiment's database through the rule.
TEST(Slurm, AnAshaSweepDecidesFromTheShardsThroughAPreemption) {
  SlurmCluster cluster;
  if (!cluster.skip_reason().empty()) GTEST_SKIP() << "no local Slurm: " << cluster.skip_reason();
  TempDir dir;
  const fs::path marker = dir / "paused";
  const std::string sweep =
      "method = \"asha\"\ntrials = 12\nseed = 4\nmetric = \"val_n_loss\"\nmin_epochs = 1\nreduction_factor = 2\n"
      "\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const Outcome submitted = submit_adaptive(cluster, dir, sweep, marker);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const std::string job = job_of(submitted.output);
  const fs::path folder = folder_of(submitted.output);
  // The first task to reach step 6 (two batches into epoch 2, between rungs 0 and 1) waits there
  // for the warning; it checkpoints, requeues itself, and decides rung 1 when it runs again.
  const std::string task = wait_for_line(marker, 240);
  ASSERT_FALSE(task.empty()) << "no task paused: " << all_logs(folder);
  const std::string element = job + "_" + task;
  const fs::path log = folder / "submit-001" / "logs" / ("task-" + task + ".log");
  preempt(cluster, element, log);
  ASSERT_TRUE(cluster.wait_until_done(job, 300)) << cluster.command("squeue").output << all_logs(folder);
  EXPECT_NE(read_text(log).find("stopped by signal 12 at step 6"), std::string::npos) << read_text(log);
  EXPECT_NE(read_text(log).find("resuming run 1 after epoch 1 and 2 batches of epoch 2 (step 6)"), std::string::npos)
      << read_text(log);

  const Outcome status = difflab_command("sweep status " + folder.string(), cluster.environment());
  EXPECT_NE(status.output.find("pruned"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("rung 0"), std::string::npos) << status.output;  // where each trial was decided
  ASSERT_EQ(difflab_command("sweep collect " + folder.string()).exit_code, 0);
  difflab::ResultsStore store(dir / "results.sqlite", difflab::OpenMode::read_only);
  const std::vector<difflab::RunRecord> runs = store.runs();
  ASSERT_EQ(runs.size(), 12u);  // each trial once: the preempted one resumed its run
  std::set<std::string> hashes;
  std::map<std::string, int64_t> run_of;
  int64_t pruned = 0;
  for (const auto& run : runs) {
    hashes.insert(run.config_hash);
    run_of[run.attempt] = run.id;
    EXPECT_TRUE(run.status == difflab::RunStatus::finished || run.status == difflab::RunStatus::pruned)
        << difflab::to_string(run.status);
    pruned += run.status == difflab::RunStatus::pruned;
  }
  EXPECT_EQ(hashes.size(), 12u);
  EXPECT_GT(pruned, 0);
  const std::vector<difflab::DecisionRecord> decisions = store.decisions();
  ASSERT_FALSE(decisions.empty());
  for (const auto& decision : decisions) {
    const double value = *store.metric_at(decision.run_id, "val_n_loss", decision.epoch);
    std::vector<double> peers;
    for (const std::string& attempt : decision.peers)
      peers.push_back(*store.metric_at(run_of.at(attempt), "val_n_loss", decision.epoch));
    const difflab::RungDecision replay = difflab::asha_decision(value, peers, 2, difflab::Direction::minimize);
    EXPECT_EQ(decision.prune, !replay.promote) << "run " << decision.run_id << " rung " << decision.rung;
    EXPECT_EQ(decision.cutoff, replay.cutoff);
    if (decision.prune) {
      EXPECT_EQ(store.run(decision.run_id)->status, difflab::RunStatus::pruned);
    }
  }
  // Submitted again: every trial is done, finished or pruned; nothing to submit.
  const Outcome again = difflab_command(
      "slurm " + tiny_sweep(dir, sweep, " --set training.epochs=4 --set evaluation.kid_protocol=none "
                                        "--cpus-per-task 1 --array-parallelism 2"),
      cluster.environment());
  EXPECT_NE(again.output.find("nothing to submit"), std::string::npos) << again.output;
}

// A tpe + asha sweep on a real Slurm, 12 trials two at a time, with no coordinator and no shared
// database server: each array task proposes its trial when it starts, from the proposals and
// values in the other trials' shards it sees, and records the proposal in its own shard (published
// to the folder) before it trains. One task is preempted mid-epoch: it requeues and resumes its
// own recorded proposal. Collected, `difflab sweep replay` recomputes every proposal and every
// decision from the database alone and agrees.
TEST(Slurm, ATpeSweepProposesInItsTasksAndReplaysThroughAPreemption) {
  SlurmCluster cluster;
  if (!cluster.skip_reason().empty()) GTEST_SKIP() << "no local Slurm: " << cluster.skip_reason();
  TempDir dir;
  const fs::path marker = dir / "paused";
  const std::string sweep =
      "sampler = \"tpe\"\npruner = \"asha\"\ntrials = 12\nseed = 4\nrandom_trials = 4\nmetric = \"val_n_loss\"\n"
      "min_epochs = 1\nreduction_factor = 2\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }\n"
      "\"loss.plugin\" = [\"mae\", \"mse\"]";
  const Outcome submitted = submit_adaptive(cluster, dir, sweep, marker);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const std::string job = job_of(submitted.output);
  const fs::path folder = folder_of(submitted.output);
  const std::string manifest = read_text(folder / "manifest.toml");
  EXPECT_NE(manifest.find("search_text"), std::string::npos);  // the space, not the points
  const std::string task = wait_for_line(marker, 240);
  ASSERT_FALSE(task.empty()) << "no task paused: " << all_logs(folder);
  const std::string element = job + "_" + task;
  const fs::path log = folder / "submit-001" / "logs" / ("task-" + task + ".log");
  // Its proposal, as the folder holds it before the preemption.
  const auto proposal_of = [&](const fs::path& database) {
    difflab::ResultsStore store(database, difflab::OpenMode::read_only);
    const std::vector<difflab::ProposalRecord> proposals = store.proposals();
    return proposals.size() == 1 ? proposals.front().assignments + proposals.front().conditioned : std::string();
  };
  const std::string before = proposal_of(difflab::shard_path(folder, std::stoll(task)));
  ASSERT_FALSE(before.empty());
  preempt(cluster, element, log);
  ASSERT_TRUE(cluster.wait_until_done(job, 300)) << cluster.command("squeue").output << all_logs(folder);
  const std::string text = read_text(log);
  EXPECT_NE(text.find("stopped by signal 12 at step 6"), std::string::npos) << text;
  EXPECT_EQ(occurrences(text, "proposed by tpe"), 1u) << text;  // proposed once, resumed after the requeue
  EXPECT_NE(text.find("resuming run 1 after epoch 1 and 2 batches of epoch 2 (step 6)"), std::string::npos) << text;
  EXPECT_EQ(proposal_of(difflab::shard_path(folder, std::stoll(task))), before);

  const Outcome status = difflab_command("sweep status " + folder.string(), cluster.environment());
  EXPECT_EQ(status.output.find("not proposed"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("training.learning_rate="), std::string::npos) << status.output;
  ASSERT_EQ(difflab_command("sweep collect " + folder.string()).exit_code, 0);
  {
    difflab::ResultsStore store(dir / "results.sqlite", difflab::OpenMode::read_only);
    const std::vector<difflab::ProposalRecord> proposals = store.proposals();
    ASSERT_EQ(proposals.size(), 12u);
    std::set<std::string> points;
    int64_t learned = 0;
    for (const auto& proposal : proposals) {
      EXPECT_TRUE(points.insert(proposal.assignments).second) << proposal.assignments;
      learned += !proposal.random;
    }
    EXPECT_GT(learned, 0);  // past the 4 random trials, tasks proposed from what the shards held
    std::set<std::string> hashes;
    for (const auto& run : store.runs()) {
      hashes.insert(run.config_hash);
      EXPECT_TRUE(run.status == difflab::RunStatus::finished || run.status == difflab::RunStatus::pruned)
          << difflab::to_string(run.status);
    }
    EXPECT_EQ(hashes.size(), 12u);
    EXPECT_EQ(store.runs().size(), 12u);  // each trial once: the preempted one resumed its run
  }
  const Outcome replay = difflab_command("sweep replay " + (dir / "results.sqlite").string());
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("12 of 12 proposals agree"), std::string::npos) << replay.output;
}

// Synchronous successive halving on a real Slurm: each rung's pass is one job array, decided by a
// job that starts once the array has ended (afterany) and submits the next pass and its own
// decider. One task of the second pass is preempted mid-epoch: it requeues, and the decider waits
// for it (afterany holds while the task is back in the queue) instead of finding it behind.
TEST(Slurm, SuccessiveHalvingRunsEachRungAsAnArrayDecidedByTheJobAfterIt) {
  SlurmCluster cluster;
  if (!cluster.skip_reason().empty()) GTEST_SKIP() << "no local Slurm: " << cluster.skip_reason();
  TempDir dir;
  const fs::path marker = dir / "paused";
  const std::string sweep =
      "method = \"successive_halving\"\ntrials = 6\nseed = 5\nmetric = \"val_n_loss\"\nmin_epochs = 1\n"
      "reduction_factor = 2\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const Outcome submitted = submit_adaptive(cluster, dir, sweep, marker);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  EXPECT_NE(submitted.output.find("successive halving to rung 0 (epoch 1): job "), std::string::npos)
      << submitted.output;
  const fs::path folder = folder_of(submitted.output);
  const Outcome status = difflab_command("sweep status " + folder.string(), cluster.environment());
  EXPECT_NE(status.output.find("successive halving: 6 of 6 trials in the running, at rung 0 (epoch 1)"),
            std::string::npos) << status.output;
  const std::string decider = wait_for_line(folder / "submit-001" / "decider_job_id", 1);
  ASSERT_FALSE(decider.empty());
  EXPECT_NE(status.output.find("decider: job " + decider + " PENDING (Dependency)"), std::string::npos)
      << status.output;

  // Step 6 is in epoch 2: the second pass, after rung 0. Its first task there waits for the warning.
  const std::string task = wait_for_line(marker, 300);
  ASSERT_FALSE(task.empty()) << "no task paused: " << all_logs(folder);
  const std::string job = wait_for_line(folder / "submit-002" / "job_id", 10);
  const std::string element = job + "_" + task;
  const fs::path log = folder / "submit-002" / "logs" / ("task-" + task + ".log");
  preempt(cluster, element, log);
  EXPECT_NE(read_text(log).find("restart 1)"), std::string::npos) << read_text(log);
  EXPECT_NE(read_text(log).find("stopped by signal 12 at step 6"), std::string::npos) << read_text(log);
  for (int i = 0; i < 3000 && all_logs(folder).find("every trial is finished or pruned") == std::string::npos; ++i)
    usleep(100000);
  const std::string logs = all_logs(folder);
  ASSERT_NE(logs.find("every trial is finished or pruned"), std::string::npos)
      << logs << cluster.command("squeue").output;
  EXPECT_NE(logs.find("rung 0 decided: 3 of 6 trial(s) go on"), std::string::npos) << logs;
  EXPECT_NE(logs.find("rung 1 decided: 1 of 3 trial(s) go on"), std::string::npos) << logs;
  EXPECT_EQ(logs.find("have not reached"), std::string::npos) << logs;  // the decider waited for the requeue
  EXPECT_FALSE(fs::exists(folder / "submit-004"));  // three passes: rung 0, rung 1, the end

  const Outcome done = difflab_command("slurm status " + folder.string(), cluster.environment());
  EXPECT_NE(done.output.find("1 finished, 5 pruned"), std::string::npos) << done.output;
  ASSERT_EQ(difflab_command("sweep collect " + folder.string()).exit_code, 0);
  difflab::ResultsStore store(dir / "results.sqlite", difflab::OpenMode::read_only);
  EXPECT_EQ(store.runs().size(), 6u);  // each trial one run, continued from its checkpoint pass after pass
  EXPECT_EQ(store.decisions().size(), 6u + 3u);
}
