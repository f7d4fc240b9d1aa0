// Model-based sweeps end to end through the command line (sweep/search.h): a tpe + asha sweep
// records one proposal per trial before the trial trains, `difflab sweep replay` recomputes every
// proposal and decision from the database alone and names the one a changed row breaks; killed at
// every crash point and run again, it proposes nothing twice and ends with the uninterrupted
// sweep's proposals; bad input is exit 2 with nothing written.
#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <set>
#include <csignal>
#include <chrono>
#include <thread>
#include <sstream>

#include "results/results_store.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;
using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::read_text;

namespace {

const char* kSweep =
    "sampler = \"tpe\"\npruner = \"asha\"\ntrials = 8\nseed = 3\nrandom_trials = 4\nmetric = \"val_n_loss\"\n"
    "min_epochs = 1\nreduction_factor = 3\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }\n"
    "\"loss.plugin\" = [\"mae\", \"mse\"]\n";

// DIR/sweep.toml: the tiny experiment with `sweep` as its [sweep] table; the arguments that run it into DIR.
std::string search_sweep(const fs::path& dir, const std::string& sweep = kSweep, int epochs = 3) {
  std::ofstream(dir / "sweep.toml") << read_text(difflab::test::tiny_experiment()) << "\n[sweep]\n" << sweep << "\n";
  return (dir / "sweep.toml").string() + " --set experiment.database=" + (dir / "results.sqlite").string() +
         " --set experiment.output_dir=" + (dir / "runs").string() +
         " --set experiment.threads=1 --set evaluation.kid_protocol=none --set training.epochs=" + std::to_string(epochs);
}

// The proposals table without its time stamps, a row a line.
std::vector<std::string> proposal_rows(const fs::path& database) {
  SQLite::Database db(database.string());
  // Not the sweep's hash: it covers the experiment's paths, here each test folder's.
  SQLite::Statement query(db, "SELECT trial, sampler, seed, draw, random, conditioned, assignments, "
                              "point_values, quote(score) FROM proposals ORDER BY trial");
  std::vector<std::string> rows;
  while (query.executeStep()) {
    std::string row;
    for (int c = 0; c < query.getColumnCount(); ++c) row += query.getColumn(c).getString() + "|";
    rows.push_back(row);
  }
  return rows;
}

// Each conditioned line's attempt, replaced by the trial's position (attempts are new per process).
std::string without_attempts(const std::string& row) {
  std::string result;
  std::istringstream lines(row);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::string trial, attempt, rest;
    if (in >> trial >> attempt) {
      std::getline(in, rest);
      result += trial + " *" + rest + "\n";
    } else {
      result += line + "\n";
    }
  }
  return result;
}

}  // namespace

TEST(SearchSweep, TpeWithAshaRecordsEveryProposalAndReplaysFromTheDatabase) {
  difflab::test::TempDir dir;
  const Outcome ran = difflab_command("run " + search_sweep(dir.path()));
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  EXPECT_NE(ran.output.find("proposed by tpe at random"), std::string::npos) << ran.output;
  EXPECT_NE(ran.output.find("proposed by tpe from 4 trials"), std::string::npos) << ran.output;
  const fs::path database = dir / "results.sqlite";
  {
    ResultsStore store(database, OpenMode::read_only);
    const std::vector<ProposalRecord> proposals = store.proposals();
    ASSERT_EQ(proposals.size(), 8u);
    std::set<std::string> points;
    for (const ProposalRecord& proposal : proposals) {
      EXPECT_EQ(proposal.random, proposal.trial < 4) << proposal.trial;
      EXPECT_EQ(proposal.score.has_value(), proposal.trial >= 4) << proposal.trial;
      // A proposal saw every trial before it (none failed), and no two trials share a point.
      EXPECT_EQ(std::count(proposal.conditioned.begin(), proposal.conditioned.end(), '\n'), proposal.trial);
      EXPECT_TRUE(points.insert(proposal.assignments).second) << proposal.assignments;
    }
    EXPECT_EQ(store.runs().size(), 8u);
    EXPECT_FALSE(store.decisions().empty());
    // The sweep's settings, for the replay: the [sweep] table with its sampler.
    const auto settings = store.sweep_settings(proposals.front().sweep);
    ASSERT_TRUE(settings.has_value());
    EXPECT_NE(settings->find("sampler = 'tpe'"), std::string::npos) << *settings;
  }
  const Outcome replay = difflab_command("sweep replay " + database.string());
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("8 of 8 proposals agree"), std::string::npos) << replay.output;

  // Merged into another database (as `collect` merges shards), the proposals come along and replay.
  const Outcome merged = difflab_command("results merge " + (dir / "merged.sqlite").string() + " " + database.string());
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  const Outcome merged_replay = difflab_command("sweep replay " + (dir / "merged.sqlite").string());
  EXPECT_EQ(merged_replay.exit_code, 0) << merged_replay.output;
  EXPECT_NE(merged_replay.output.find("8 of 8 proposals agree"), std::string::npos) << merged_replay.output;

  // One value changed in a copy: the proposals that saw it and the decision that used it disagree.
  fs::copy_file(database, dir / "changed.sqlite");
  int64_t changed_run = 0;
  {
    SQLite::Database db((dir / "changed.sqlite").string(), SQLite::OPEN_READWRITE);
    changed_run = db.execAndGet("SELECT run_id FROM decisions ORDER BY run_id LIMIT 1").getInt64();
    db.exec(fmt::format("UPDATE metrics SET value = value * 2 WHERE run_id = {} AND key = 'val_n_loss'", changed_run));
  }
  const Outcome broken = difflab_command("sweep replay " + (dir / "changed.sqlite").string());
  EXPECT_EQ(broken.exit_code, 1) << broken.output;
  EXPECT_NE(broken.output.find(fmt::format("it saw run {} ", changed_run)), std::string::npos) << broken.output;
  EXPECT_NE(broken.output.find(fmt::format("run {} rung 0", changed_run)), std::string::npos) << broken.output;

  // A recorded point changed: that trial disagrees, by name.
  fs::copy_file(database, dir / "moved.sqlite");
  {
    SQLite::Database db((dir / "moved.sqlite").string(), SQLite::OPEN_READWRITE);
    db.exec("UPDATE proposals SET point_values = '1 0.001', assignments = 'loss.plugin=''mse''\n"
            "training.learning_rate=0.001\n' WHERE trial = 5");
  }
  const Outcome moved = difflab_command("sweep replay " + (dir / "moved.sqlite").string());
  EXPECT_EQ(moved.exit_code, 1) << moved.output;
  EXPECT_NE(moved.output.find("trial 5: recorded"), std::string::npos) << moved.output;
  EXPECT_NE(moved.output.find("7 of 8 proposals agree"), std::string::npos) << moved.output;
}

// A smaller tpe + asha sweep (5 trials, 2 of them random, rungs at epoch 1 of 2), killed with
// SIGKILL at every crash point it passes — each trial's proposal recorded (search.proposed) and
// every step of every epoch's end — then the same command: every trial is proposed once, the
// recorded proposals stand, and the sweep ends with the uninterrupted sweep's proposals (attempts
// aside, new per process).
const char* kSmallSweep =
    "sampler = \"tpe\"\npruner = \"asha\"\ntrials = 5\nseed = 3\nrandom_trials = 2\nmetric = \"val_n_loss\"\n"
    "min_epochs = 1\nreduction_factor = 2\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }\n"
    "\"loss.plugin\" = [\"mae\", \"mse\"]\n";

TEST(SearchSweep, KilledAtEveryCrashPointItProposesNothingTwiceAndEndsAsAnUninterruptedSweep) {
  difflab::test::TempDir reference;
  ASSERT_EQ(difflab_command("run " + search_sweep(reference.path(), kSmallSweep, 2)).exit_code, 0);
  const std::vector<std::string> expected = proposal_rows(reference / "results.sqlite");
  ASSERT_EQ(expected.size(), 5u);
  difflab::test::TempDir counted;
  const Outcome listed =
      difflab_command("run " + search_sweep(counted.path(), kSmallSweep, 2), "DIFFLAB_TEST_CRASH_POINT=0");
  int64_t points = 0, proposed = 0;
  for (size_t at = listed.output.find("crash point "); at != std::string::npos; at = listed.output.find("crash point ", at + 1))
    ++points;
  for (size_t at = listed.output.find(": search.proposed"); at != std::string::npos;
       at = listed.output.find(": search.proposed", at + 1))
    ++proposed;
  ASSERT_EQ(proposed, 5) << listed.output.substr(0, 2000);
  ASSERT_GT(points, 20) << listed.output.substr(0, 2000);
  for (int64_t k = 1; k <= points; ++k) {
    difflab::test::TempDir dir;
    const std::string arguments = "run " + search_sweep(dir.path(), kSmallSweep, 2);
    const Outcome killed = difflab_command(arguments, fmt::format("DIFFLAB_TEST_CRASH_POINT={}", k));
    ASSERT_NE(killed.exit_code, 0) << "crash point " << k << " was not reached:\n" << killed.output;
    const std::vector<std::string> before = proposal_rows(dir / "results.sqlite");
    const Outcome again = difflab_command(arguments);
    ASSERT_EQ(again.exit_code, 0) << "after crash point " << k << ":\n" << again.output;
    const std::vector<std::string> after = proposal_rows(dir / "results.sqlite");
    ASSERT_EQ(after.size(), 5u) << "crash point " << k;
    for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(after[i], before[i]) << "crash point " << k << ": trial " << i;
    for (size_t i = 0; i < after.size(); ++i)
      EXPECT_EQ(without_attempts(after[i]), without_attempts(expected[i])) << "crash point " << k << ": trial " << i;
    EXPECT_EQ(difflab_command("sweep replay " + (dir / "results.sqlite").string()).exit_code, 0) << "crash point " << k;
  }
  std::printf("tpe + asha: killed at each of %lld crash points (%lld proposals), each resumed to the uninterrupted "
              "sweep's proposals\n",
              static_cast<long long>(points), static_cast<long long>(proposed));
}

TEST(SearchSweep, BadInputIsExitTwoNamingTheKeyWithNothingWritten) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"sampler = \"bayes\"\ntrials = 4\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.sampler: sampler must be \"grid\", \"random\" or \"tpe\""},
      {"sampler = \"tpe\"\npruner = \"hyperopt\"\ntrials = 4\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.pruner: pruner must be"},
      {"sampler = \"random\"\ncandidates = 12\ntrials = 4\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.candidates: candidates is a key of sampler = \"tpe\""},
      {"\"loss.plugin\" = [\"mae\", \"mse\"]\nmultivariate = true", "sweep.multivariate: multivariate is a key of sampler = \"tpe\""},
      {"method = \"asha\"\nsampler = \"tpe\"\ntrials = 4\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.sampler: method and sampler: one or the other"},
      {"sampler = \"tpe\"\ntrials = 4\nseeds = [1, 2]\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.seeds: seeds with sampler = \"tpe\""},
      {"sampler = \"tpe\"\ntrials = 4\nrandom_trials = -1\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.random_trials: expected a non-negative integer"},
      // What TPE learns from: val_kid by default, which these runs do not record (no KID).
      {"sampler = \"tpe\"\ntrials = 4\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.metric: metric \"val_kid\" needs KID"},
      {"sampler = \"tpe\"\ntrials = 4\nmetric = \"val_fdi\"\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.metric: metric \"val_fdi\" is never recorded"},
      // A sample metric with the sample metrics off (these runs set kid_protocol = "none").
      {"sampler = \"tpe\"\ntrials = 4\nmetric = \"val_fid\"\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
       "sweep.metric: metric \"val_fid\" needs generated samples"},
  };
  for (const auto& [sweep, expected] : cases) {
    difflab::test::TempDir dir;
    const Outcome outcome = difflab_command("run " + search_sweep(dir.path(), sweep));
    EXPECT_EQ(outcome.exit_code, 2) << sweep << "\n" << outcome.output;
    EXPECT_NE(outcome.output.find((dir / "sweep.toml").string() + ":"), std::string::npos) << outcome.output;
    EXPECT_NE(outcome.output.find(expected), std::string::npos) << sweep << "\n" << outcome.output;
    EXPECT_FALSE(fs::exists(dir / "results.sqlite")) << sweep;
  }
  // A pruner's rungs need one training length: a dimension that changes it is refused (no
  // --set training.epochs here, which would override the swept value).
  difflab::test::TempDir dir;
  std::ofstream(dir / "sweep.toml") << read_text(difflab::test::tiny_experiment())
                                    << "\n[sweep]\nsampler = \"tpe\"\npruner = \"asha\"\ntrials = 4\n"
                                       "metric = \"val_n_loss\"\n\"training.epochs\" = [2, 4]\n";
  const Outcome epochs = difflab_command("run " + (dir / "sweep.toml").string() + " --set experiment.database=" +
                                         (dir / "results.sqlite").string());
  EXPECT_EQ(epochs.exit_code, 2) << epochs.output;
  EXPECT_NE(epochs.output.find("sweep.toml: sweep.training.epochs: the trials of an adaptive sweep share training.epochs"),
            std::string::npos) << epochs.output;
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));
}

// Two workers (--workers 2) propose and train an 8-trial tpe + asha sweep; the whole sweep (its
// parent and both workers) is killed with SIGKILL once 5 trials are proposed and a trial is
// training, then the same command runs it to the end: every trial proposed once, no recorded
// proposal changed, the trials a worker proposed while the other trained saw it as running (the
// constant liar), and `difflab sweep replay` agrees on every proposal and decision; one recorded
// value changed in a copy makes it exit 1 naming the trial that saw it.
TEST(SearchSweep, TwoWorkersKilledMidSweepProposeEveryTrialOnceAndReplay) {
  difflab::test::TempDir dir;
  const std::string arguments = "run " + search_sweep(dir.path()) + " --workers 2";
  const fs::path database = dir / "results.sqlite";
  // Its own session (setsid), so that one kill reaches the parent and the workers.
  const Outcome started = difflab::test::shell_command(
      "setsid " + std::string(DIFFLAB_TEST_EXECUTABLE) + " " + arguments + " > " + (dir / "first.log").string() +
      " 2>&1 & echo $!");
  const pid_t session = static_cast<pid_t>(std::stol(started.output));
  size_t proposed = 0;
  bool training = false;
  for (int wait = 0; wait < 1200 && (proposed < 5 || !training); ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!fs::exists(database)) continue;
    try {
      ResultsStore store(database, OpenMode::read_only);
      proposed = store.proposals().size();
      const std::vector<RunRecord> runs = store.runs();
      training = std::any_of(runs.begin(), runs.end(), [](const RunRecord& r) { return r.status == RunStatus::running; });
    } catch (const std::exception&) {
      // being created or migrated by the sweep: looked at again
    }
  }
  kill(-session, SIGKILL);
  ASSERT_GE(proposed, 5u) << read_text(dir / "first.log");
  ASSERT_LT(proposed, 8u) << "the sweep ended before it was killed:\n" << read_text(dir / "first.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the kill lands; the database is what it left
  const std::vector<std::string> before = proposal_rows(database);

  const Outcome again = difflab_command(arguments);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  const std::vector<std::string> after = proposal_rows(database);
  ASSERT_EQ(after.size(), 8u);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(after[i], before[i]) << "trial " << i;
  std::set<std::string> points;
  int64_t saw_running = 0;
  {
    ResultsStore store(database, OpenMode::read_only);
    for (const ProposalRecord& proposal : store.proposals()) {
      EXPECT_TRUE(points.insert(proposal.assignments).second) << proposal.assignments;
      // Every other trial proposed before it, learned from or running (none failed).
      EXPECT_GE(std::count(proposal.conditioned.begin(), proposal.conditioned.end(), '\n'), proposal.trial);
      saw_running += proposal.conditioned.find(" running ") != std::string::npos;
    }
    // Each trial trained by one run, the one its sweep_trials row names.
    std::set<std::string> hashes;
    for (const RunRecord& run : store.runs()) hashes.insert(run.config_hash);
    EXPECT_EQ(hashes.size(), 8u);
  }
  EXPECT_GE(saw_running, 1) << "no proposal was made while another trial trained";
  const Outcome replay = difflab_command("sweep replay " + database.string());
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("8 of 8 proposals agree"), std::string::npos) << replay.output;

  fs::copy_file(database, dir / "changed.sqlite");
  int64_t changed_run = 0;
  {
    SQLite::Database db((dir / "changed.sqlite").string(), SQLite::OPEN_READWRITE);
    changed_run = db.execAndGet("SELECT r.id FROM runs r JOIN sweep_trials t ON t.run_id = r.id "
                                "WHERE r.status = 'finished' ORDER BY t.trial LIMIT 1").getInt64();
    db.exec(fmt::format("UPDATE metrics SET value = value + 1 WHERE run_id = {} AND key = 'val_n_loss'", changed_run));
  }
  const Outcome broken = difflab_command("sweep replay " + (dir / "changed.sqlite").string());
  EXPECT_EQ(broken.exit_code, 1) << broken.output;
  EXPECT_NE(broken.output.find(fmt::format("it saw run {} ", changed_run)), std::string::npos) << broken.output;
  EXPECT_NE(broken.output.find(" trial "), std::string::npos) << broken.output;
  std::printf("tpe + asha, 2 workers: killed with %zu of 8 trials proposed; %lld proposals made while another trial "
              "trained; replay agrees\n", proposed, static_cast<long long>(saw_running));
}
