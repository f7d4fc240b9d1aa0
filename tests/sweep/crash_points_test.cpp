// Every crash point of the end of an epoch (docs/architecture.md), after SQLite's crash tests: the
// process is killed with SIGKILL at the k-th point (DIFFLAB_TEST_CRASH_POINT=k, process/crash_point.h),
// for every k, and the same command is run again. Whatever k, the results must be those of a run
// that was never killed: every epoch's rows once and bit for bit the same, every rung decided once,
// no trial past a rung undecided, every proposal made once, and collecting twice changes nothing.
// In a local run and in a cluster task of a tpe + asha sweep (its shard published into the sweep
// folder).
#include <SQLiteCpp/SQLiteCpp.h>
#include <algorithm>
#include <fmt/format.h>
#include <future>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "cluster/sweep_helpers.h"
#include "results/results_store.h"

namespace fs = std::filesystem;
using difflab::test::Outcome;
using difflab::test::TempDir;
using namespace difflab::test::sweeps;

namespace {

// Wall-clock rows (they differ between any two runs) and file paths (each test run has its own
// folder) are left out of the comparison; everything else must be equal to the bit.
const std::set<std::string> kTimings = {"train_images_per_second", "epoch_seconds"};

// What a database holds of each configuration's newest run, as text whose every number is printed
// with all 17 digits: two databases hold the same results exactly when their texts are equal.
std::string results_of(const fs::path& database) {
  SQLite::Database db(database.string());
  std::ostringstream text;
  text.precision(17);
  // A configuration's hash names its folders (each test run has its own): runs are told apart by
  // their place in the sweep instead.
  SQLite::Statement runs(db, "SELECT r.id, COALESCE(t.trial, -1), r.status, r.variant FROM runs r "
                             "LEFT JOIN sweep_trials t ON t.run_id = r.id WHERE r.id = (SELECT MAX(id) FROM runs s "
                             "WHERE s.config_hash = r.config_hash) ORDER BY COALESCE(t.trial, -1), r.id");
  while (runs.executeStep()) {
    const int64_t id = runs.getColumn(0).getInt64();
    text << "run " << runs.getColumn(1).getInt64() << " " << runs.getColumn(2).getString() << " "
         << runs.getColumn(3).getText("") << "\n";
    SQLite::Statement metrics(db, "SELECT key, epoch, step, value FROM metrics WHERE run_id = ? ORDER BY epoch, key");
    metrics.bind(1, id);
    while (metrics.executeStep())
      if (!kTimings.count(metrics.getColumn(0).getString()))
        text << "  metric " << metrics.getColumn(0).getString() << " " << metrics.getColumn(1).getInt64() << " "
             << metrics.getColumn(2).getInt64() << " " << metrics.getColumn(3).getDouble() << "\n";
    SQLite::Statement steps(db, "SELECT key, step, epoch, value FROM step_metrics WHERE run_id = ? ORDER BY step, key");
    steps.bind(1, id);
    while (steps.executeStep())
      text << "  step " << steps.getColumn(0).getString() << " " << steps.getColumn(1).getInt64() << " "
           << steps.getColumn(2).getInt64() << " " << steps.getColumn(3).getDouble() << "\n";
    SQLite::Statement kid(db, "SELECT epoch, mean, std, nfe FROM kid WHERE run_id = ? ORDER BY epoch");
    kid.bind(1, id);
    while (kid.executeStep())
      text << "  kid " << kid.getColumn(0).getInt64() << " " << kid.getColumn(1).getDouble() << " "
           << kid.getColumn(2).getDouble() << " " << kid.getColumn(3).getInt64() << "\n";
    SQLite::Statement samples(db, "SELECT epoch, metric, value, features, sampler, nfe, real_count, generated_count, "
                                  "COALESCE(k, -1), source FROM sample_metrics WHERE run_id = ? ORDER BY epoch, metric");
    samples.bind(1, id);
    while (samples.executeStep()) {
      text << "  sample";
      for (int i = 0; i < samples.getColumnCount(); ++i)
        text << " " << (i == 2 ? fmt::format("{:.17g}", samples.getColumn(i).getDouble()) : samples.getColumn(i).getString());
      text << "\n";
    }
    SQLite::Statement artifacts(db, "SELECT kind, epoch FROM artifacts WHERE run_id = ? ORDER BY epoch, kind");
    artifacts.bind(1, id);
    while (artifacts.executeStep())
      text << "  artifact " << artifacts.getColumn(0).getString() << " " << artifacts.getColumn(1).getInt64() << "\n";
    SQLite::Statement decisions(db, "SELECT rung, epoch, value, cutoff, rank, of, decision FROM decisions "
                                    "WHERE run_id = ? ORDER BY rung");
    decisions.bind(1, id);
    while (decisions.executeStep())
      text << "  decision " << decisions.getColumn(0).getInt64() << " " << decisions.getColumn(1).getInt64() << " "
           << decisions.getColumn(2).getDouble() << " " << decisions.getColumn(3).getDouble() << " "
           << decisions.getColumn(4).getInt64() << " " << decisions.getColumn(5).getInt64() << " "
           << decisions.getColumn(6).getString() << "\n";
    SQLite::Statement trial(db, "SELECT t.trial, t.bracket, s.rule, s.metric, s.direction, s.min_epochs, s.max_epochs, "
                                "s.reduction_factor, s.brackets FROM sweep_trials t JOIN sweeps s USING (sweep) "
                                "WHERE t.run_id = ?");
    trial.bind(1, id);
    while (trial.executeStep()) {
      text << "  trial";
      for (int i = 0; i < trial.getColumnCount(); ++i) text << " " << trial.getColumn(i).getText("NULL");
      text << "\n";
    }
  }
  // A model-based sweep's proposals: each once, the same point from the same draw. (What each saw
  // names attempts, which differ between any two runs: its trials, states, steps and values are
  // compared.)
  SQLite::Statement proposals(db, "SELECT trial, sampler, seed, draw, random, assignments, point_values, "
                                  "COALESCE(score, 'NULL'), conditioned FROM proposals ORDER BY trial");
  while (proposals.executeStep()) {
    text << "proposal";
    for (int i = 0; i < 8; ++i) {
      std::string field = proposals.getColumn(i).getString();
      std::replace(field.begin(), field.end(), '\n', ' ');  // assignments: a line each
      text << " " << field;
    }
    std::istringstream seen(proposals.getColumn(8).getString());
    for (std::string line; std::getline(seen, line);) {
      std::istringstream words(line);
      std::string trial, attempt, rest;
      words >> trial >> attempt;
      std::getline(words, rest);
      text << " | saw " << trial << rest;
    }
    text << "\n";
  }
  return text.str();
}

// Every whole table of a database as text (collect twice: not one byte of it may change).
std::string dump_of(const fs::path& database) {
  const Outcome dump = difflab::test::shell_command("sqlite3 " + database.string() + " .dump");
  return dump.exit_code == 0 ? dump.output : "sqlite3 failed: " + dump.output;
}

// The rules of an adaptive sweep's rungs, whatever the results: every run that trained past a
// rung epoch was decided there and promoted, and one decided to be pruned stopped at its rung.
void expect_rungs_decided(const fs::path& database, const std::vector<int64_t>& rung_epochs, const std::string& label) {
  difflab::ResultsStore store(database, difflab::OpenMode::read_only);
  for (const difflab::RunRecord& run : store.runs()) {
    int64_t last = 0;
    for (const difflab::MetricRecord& metric : store.metrics(run.id)) last = std::max(last, metric.epoch);
    std::map<int64_t, difflab::DecisionRecord> by_epoch;
    for (const difflab::DecisionRecord& decision : store.decisions(run.id)) {
      EXPECT_TRUE(by_epoch.emplace(decision.epoch, decision).second) << label << ": two decisions at one epoch";
    }
    for (int64_t epoch : rung_epochs) {
      if (last < epoch) continue;
      const auto decision = by_epoch.find(epoch);
      ASSERT_NE(decision, by_epoch.end()) << label << ": run " << run.id << " reached rung epoch " << epoch
                                          << " (trained to " << last << ") with no decision";
      if (decision->second.prune) EXPECT_EQ(last, epoch) << label << ": run " << run.id << " trained past its pruning";
    }
  }
}

// The shell reports a child killed by SIGKILL as 137; a shell that exec'd it is itself killed (-1).
bool killed_by_sigkill(const Outcome& outcome) { return outcome.exit_code == 137 || outcome.exit_code == -1; }

// How many crash points a command passes, from DIFFLAB_TEST_CRASH_POINT=0's list.
int64_t crash_points_of(const Outcome& listed) {
  int64_t points = 0;
  std::istringstream lines(listed.output);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("crash point ", 0) == 0) ++points;
  return points;
}

// Runs `cycle(k)` for k = 1..points, two at a time (the machine's two cores), each in its own
// folder; returns the failures' descriptions.
template <class Cycle>
void for_every_point(int64_t points, Cycle cycle) {
  for (int64_t k = 1; k <= points; k += 2) {
    auto first = std::async(std::launch::async, cycle, k);
    if (k + 1 <= points) cycle(k + 1);
    first.get();
  }
}

// KID and two of the other sample metrics (their rows are written with the epoch's).
const char* kTinyRun =
    " --set training.epochs=3 --set evaluation.kid_protocol=per_batch --set evaluation.kid_batches=1"
    " --set evaluation.kid_diffusion_steps=2 --set training.log_every_steps=2"
    " --set 'evaluation.metrics=[\"kid\", \"precision\", \"recall\"]'";

}  // namespace

// A local run: the database is the durable store, the checkpoint the epoch's commit.
TEST(CrashPoints, ALocalRunKilledAtEveryPointOfAnEpochsEndLosesNothing) {
  TempDir reference;
  const std::string run = "run " + tiny_sweep(reference, "", kTinyRun);
  const Outcome listed = difflab::test::difflab_command(run, "DIFFLAB_TEST_CRASH_POINT=0");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  const int64_t points = crash_points_of(listed);
  // Per epoch at least the grid, the rows and the checkpoint; best.pt where KID improved; the
  // previous checkpoint kept from the second epoch on.
  ASSERT_GE(points, 3 * 3 + 2) << listed.output;
  EXPECT_EQ(occurrences(listed.output, ": epoch.checkpoint\n"), 3u) << listed.output;
  EXPECT_EQ(occurrences(listed.output, ": checkpoint.previous_kept\n"), 2u) << listed.output;
  const std::string expected = results_of(reference / "results.sqlite");
  ASSERT_NE(expected.find("metric val_n_loss 3 "), std::string::npos) << expected;
  ASSERT_NE(expected.find("kid 3 "), std::string::npos) << expected;
  ASSERT_NE(expected.find("sample 3 precision "), std::string::npos) << expected;
  ASSERT_NE(expected.find("sample 3 recall "), std::string::npos) << expected;

  for_every_point(points, [&](int64_t k) {
    TempDir dir;
    const std::string command = "run " + tiny_sweep(dir, "", kTinyRun);
    const Outcome killed = difflab::test::difflab_command(command, "DIFFLAB_TEST_CRASH_POINT=" + std::to_string(k));
    EXPECT_TRUE(killed_by_sigkill(killed)) << "point " << k << " did not kill the run:\n" << killed.output;
    const Outcome resumed = difflab::test::difflab_command(command);
    EXPECT_EQ(resumed.exit_code, 0) << "point " << k << ":\n" << resumed.output;
    EXPECT_EQ(results_of(dir / "results.sqlite"), expected) << "killed at point " << k << ":\n" << killed.output
                                                           << "\nresumed:\n" << resumed.output;
    EXPECT_TRUE(fs::is_regular_file(dir / "runs" / "tiny-run1" / "best.pt")) << "point " << k;
  });
}

// A cluster task of a tpe + asha sweep (difflab k8s's task contract, JOB_COMPLETION_INDEX): each
// trial's proposal is recorded in the point's database on the task's local disk and published into
// the sweep folder's shard before it trains; the point's rows are published at the end of every
// epoch, before the checkpoint in the sweep folder says the epoch is complete. (The second and
// third trials are the model's: random_trials = 1.)
TEST(CrashPoints, AClusterTaskOfATpeAshaSweepKilledAtEveryPointLosesNoRowProposesOnceAndSkipsNoRung) {
  const std::string sweep =
      "sampler = \"tpe\"\npruner = \"asha\"\ntrials = 3\nseed = 4\nrandom_trials = 1\nmetric = \"val_n_loss\"\n"
      "min_epochs = 1\nreduction_factor = 2\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const std::string options = " --set training.epochs=3 --set evaluation.kid_protocol=none --runs-per-task 3";
  const std::vector<int64_t> rungs = {1, 2};  // r·η^k below R = 3

  // Writes the job into DIR's sweep folder; the task's command line and the folder.
  auto prepare = [&](const TempDir& dir) {
    const Outcome written = difflab::test::difflab_command("k8s " + tiny_sweep(dir, sweep, options));
    EXPECT_EQ(written.exit_code, 0) << written.output;
    const std::string folder = folder_of(written.output);
    return std::make_pair("sweep task " + folder + " --submission 1", folder);
  };
  auto collect = [](const std::string& folder) {
    return difflab::test::difflab_command("sweep collect " + folder);
  };
  const std::string environment = "JOB_COMPLETION_INDEX=0 TMPDIR=";

  TempDir reference;
  const auto [task, folder] = prepare(reference);
  const Outcome listed = difflab::test::difflab_command(
      task, environment + reference.path().string() + " DIFFLAB_TEST_CRASH_POINT=0");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  const int64_t points = crash_points_of(listed);
  EXPECT_NE(listed.output.find(": epoch.published"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find(": epoch.decision"), std::string::npos) << listed.output;
  EXPECT_EQ(occurrences(listed.output, ": search.proposed\n"), 3u) << listed.output;
  ASSERT_EQ(collect(folder).exit_code, 0);
  const fs::path database = reference / "results.sqlite";
  const std::string expected = results_of(database);
  ASSERT_NE(expected.find("decision 1 2 "), std::string::npos) << "no trial reached the second rung:\n" << expected;
  ASSERT_NE(expected.find("trial 0 0 asha val_n_loss minimize 1 3 2 1"), std::string::npos) << expected;
  ASSERT_EQ(occurrences(expected, "proposal "), 3u) << expected;
  ASSERT_EQ(occurrences(expected, "proposal 0 tpe"), 1u) << expected;
  // Trials 1 and 2 are the model's (random = 0): the proposals a kill could change.
  ASSERT_TRUE(std::regex_search(expected, std::regex("\nproposal 1 tpe -?[0-9]+ [0-9]+ 0 "))) << expected;
  ASSERT_TRUE(std::regex_search(expected, std::regex("\nproposal 2 tpe -?[0-9]+ [0-9]+ 0 "))) << expected;
  expect_rungs_decided(database, rungs, "uninterrupted");

  for_every_point(points, [&](int64_t k) {
    TempDir dir;
    const auto [task, folder] = prepare(dir);
    const std::string label = "killed at point " + std::to_string(k);
    const std::string env = environment + dir.path().string();
    const Outcome killed = difflab::test::difflab_command(task, env + " DIFFLAB_TEST_CRASH_POINT=" + std::to_string(k));
    EXPECT_TRUE(killed_by_sigkill(killed)) << label << " did not kill the task:\n" << killed.output;
    const Outcome resumed = difflab::test::difflab_command(task, env);
    EXPECT_EQ(resumed.exit_code, 0) << label << ":\n" << resumed.output;
    const Outcome first = collect(folder);
    EXPECT_EQ(first.exit_code, 0) << first.output;
    const std::string once = dump_of(dir / "results.sqlite");
    const Outcome second = collect(folder);
    EXPECT_EQ(second.exit_code, 0) << second.output;
    EXPECT_EQ(dump_of(dir / "results.sqlite"), once) << label << ": collecting again changed the database";
    expect_rungs_decided(dir / "results.sqlite", rungs, label);
    EXPECT_EQ(results_of(dir / "results.sqlite"), expected) << label << ":\n" << killed.output << "\nresumed:\n"
                                                            << resumed.output;
    const Outcome replay = difflab::test::difflab_command("sweep replay " + (dir / "results.sqlite").string());
    EXPECT_EQ(replay.exit_code, 0) << label << ":\n" << replay.output;
  });
}
