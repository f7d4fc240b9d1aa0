// Adaptive sweeps end to end through the command line: asha with two worker processes, whose
// every recorded decision is the rule (strategy/pruning.h) replayed over the values recorded in the
// database; synchronous successive halving, the same decisions and rows on every run; killed and
// run again, decisions stand and nothing is trained twice; bad input is exit 2 with nothing written.
#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <set>

#include "results/results_store.h"
#include "strategy/pruning.h"
#include "training/distributed.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;
using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::read_text;

namespace {

// DIR/sweep.toml: the tiny experiment with `sweep` as its [sweep] table; returns the arguments
// that run it into DIR.
std::string adaptive_sweep(const fs::path& dir, const std::string& sweep, const std::string& extra = "") {
  std::ofstream(dir / "sweep.toml") << read_text(difflab::test::tiny_experiment()) << "\n[sweep]\n" << sweep << "\n";
  return (dir / "sweep.toml").string() + " --set experiment.database=" + (dir / "results.sqlite").string() +
         " --set experiment.output_dir=" + (dir / "runs").string() +
         " --set experiment.threads=1 --set evaluation.kid_protocol=none" + extra;
}

// The last epoch each run recorded.
std::map<int64_t, int64_t> last_epochs(ResultsStore& store) {
  std::map<int64_t, int64_t> last;
  for (const RunRecord& run : store.runs())
    for (const MetricRecord& metric : store.metrics(run.id)) last[run.id] = std::max(last[run.id], metric.epoch);
  return last;
}

// The run ids of these attempts (a decision names its peers by their attempts).
std::vector<int64_t> run_ids(ResultsStore& store, const std::vector<std::string>& attempts) {
  std::vector<int64_t> ids;
  for (const std::string& attempt : attempts)
    for (const RunRecord& run : store.runs())
      if (run.attempt == attempt) ids.push_back(run.id);
  return ids;
}

}  // namespace

TEST(AdaptiveSweep, AshaWithTwoWorkersRecordsDecisionsThatReplayFromTheDatabase) {
  difflab::test::TempDir dir;
  const std::string sweep =
      "method = \"asha\"\ntrials = 9\nseed = 3\nmetric = \"val_n_loss\"\nmin_epochs = 1\nreduction_factor = 3\n"
      "\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const Outcome ran =
      difflab_command("run " + adaptive_sweep(dir.path(), sweep, " --set training.epochs=9 --workers 2"));
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  EXPECT_NE(ran.output.find("asha (val_n_loss): 9 trials,"), std::string::npos) << ran.output;

  ResultsStore store(dir / "results.sqlite", OpenMode::read_only);
  const std::vector<RunRecord> runs = store.runs();
  ASSERT_EQ(runs.size(), 9u);  // one run per trial: nothing trained twice
  std::set<std::string> hashes;
  for (const auto& run : runs) hashes.insert(run.config_hash);
  EXPECT_EQ(hashes.size(), 9u);
  const std::map<int64_t, int64_t> last = last_epochs(store);
  std::map<std::string, int64_t> run_of;  // a decision names its peers by their attempts
  for (const auto& run : runs) run_of[run.attempt] = run.id;
  const std::vector<DecisionRecord> decisions = store.decisions();
  ASSERT_FALSE(decisions.empty());
  std::map<int64_t, std::vector<const DecisionRecord*>> by_run;
  int64_t pruned = 0;
  for (const DecisionRecord& decision : decisions) {
    by_run[decision.run_id].push_back(&decision);
    // The rung's epochs: 1 and 3 (r·η^k below R = 9).
    EXPECT_EQ(decision.epoch, decision.rung == 0 ? 1 : 3);
    EXPECT_EQ(decision.method, "asha");
    // Replayed from the database alone: the sweep's settings (sweeps, through the run's
    // sweep_trials row), the run's value and its peers' at that epoch, through the rule.
    const std::optional<SweepTrialRecord> trial = store.sweep_trial(decision.run_id);
    ASSERT_TRUE(trial) << "run " << decision.run_id << " has no sweep_trials row";
    EXPECT_EQ(trial->rule, "asha");
    EXPECT_EQ(trial->trials, 9);
    EXPECT_EQ(trial->max_epochs, 9);
    EXPECT_EQ(trial->min_epochs, std::optional<int64_t>(1));
    EXPECT_EQ(trial->startup_trials, std::nullopt) << "not a key of asha: NULL";
    ASSERT_TRUE(trial->reduction_factor);
    EXPECT_NE(trial->settings.find("log_uniform"), std::string::npos) << trial->settings;
    const double value = *store.metric_at(decision.run_id, trial->metric, decision.epoch);
    EXPECT_EQ(decision.value, value);
    std::vector<double> peers;
    for (const std::string& attempt : decision.peers) peers.push_back(*store.metric_at(run_of.at(attempt), trial->metric, decision.epoch));
    const RungDecision replay = asha_decision(value, peers, *trial->reduction_factor,
                                              trial->maximize ? Direction::maximize : Direction::minimize);
    EXPECT_EQ(decision.prune, !replay.promote) << "run " << decision.run_id << " rung " << decision.rung;
    EXPECT_EQ(decision.cutoff, replay.cutoff);
    EXPECT_EQ(decision.rank, replay.rank);
    EXPECT_EQ(decision.of, static_cast<int64_t>(peers.size()) + 1);
    // A pruned run stopped at its rung, closed as pruned.
    if (decision.prune) {
      ++pruned;
      EXPECT_EQ(last.at(decision.run_id), decision.epoch);
      EXPECT_EQ(store.run(decision.run_id)->status, RunStatus::pruned);
    }
  }
  EXPECT_GT(pruned, 0);
  std::set<int64_t> positions;  // every trial's place in the sweep, once
  for (const auto& run : runs) positions.insert(store.sweep_trial(run.id).value_or(SweepTrialRecord{}).trial);
  EXPECT_EQ(positions, (std::set<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  for (const auto& run : runs) {
    if (run.status == RunStatus::finished) EXPECT_EQ(last.at(run.id), 9) << run.id;
    EXPECT_TRUE(run.status == RunStatus::finished || run.status == RunStatus::pruned) << to_string(run.status);
  }
  // The first trials of a rung decide against fewer peers: the first of each rung has none.
  EXPECT_TRUE(std::any_of(decisions.begin(), decisions.end(), [](const DecisionRecord& d) { return d.peers.empty(); }));

  // The same command again: every decision stands, nothing trains.
  const Outcome again = difflab_command("run " + adaptive_sweep(dir.path(), sweep, " --set training.epochs=9"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(ResultsStore(dir / "results.sqlite", OpenMode::read_only).decisions().size(), decisions.size());
  EXPECT_EQ(last_epochs(store), last);
  EXPECT_EQ(again.output.find("epoch 1/9:"), std::string::npos) << again.output;
}

TEST(AdaptiveSweep, SuccessiveHalvingGivesTheSameDecisionsAndRowsEveryTime) {
  difflab::test::TempDir one, two;
  const std::string sweep =
      "method = \"successive_halving\"\ntrials = 6\nseed = 5\nmetric = \"val_n_loss\"\nmin_epochs = 1\n"
      "reduction_factor = 2\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  for (const fs::path& dir : {one.path(), two.path()}) {
    const Outcome ran = difflab_command("run " + adaptive_sweep(dir, sweep, " --set training.epochs=4"));
    ASSERT_EQ(ran.exit_code, 0) << ran.output;
    EXPECT_NE(ran.output.find("== rung 0 decided: 3 trial(s) go on"), std::string::npos) << ran.output;
    EXPECT_NE(ran.output.find("== rung 1 decided: 1 trial(s) go on"), std::string::npos) << ran.output;
  }
  ResultsStore first(one / "results.sqlite", OpenMode::read_only), second(two / "results.sqlite", OpenMode::read_only);
  const std::vector<DecisionRecord> a = first.decisions(), b = second.decisions();
  ASSERT_EQ(a.size(), 6u + 3u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].run_id, b[i].run_id);
    EXPECT_EQ(a[i].rung, b[i].rung);
    EXPECT_EQ(a[i].value, b[i].value);
    EXPECT_EQ(a[i].prune, b[i].prune);
    EXPECT_EQ(run_ids(first, a[i].peers), run_ids(second, b[i].peers));  // attempts are random; the runs are not
  }
  const std::vector<RunRecord> runs_a = first.runs(), runs_b = second.runs();
  ASSERT_EQ(runs_a.size(), 6u);
  int64_t finished = 0;
  for (size_t i = 0; i < runs_a.size(); ++i) {
    EXPECT_EQ(runs_a[i].status, runs_b[i].status);
    EXPECT_EQ(first.params(runs_a[i].id).size(), second.params(runs_b[i].id).size());
    EXPECT_EQ(first.metrics(runs_a[i].id).size(), second.metrics(runs_b[i].id).size());
    finished += runs_a[i].status == RunStatus::finished;
  }
  EXPECT_EQ(finished, 1);
  EXPECT_EQ(last_epochs(first), last_epochs(second));

  // Budget is not identity: the winner waited at rungs 0 and 1 and went on from its checkpoint
  // each time; a plain run of its configuration straight to the end has, at every epoch, the same
  // losses, bit for bit.
  const auto winner = std::find_if(runs_a.begin(), runs_a.end(), [](const RunRecord& r) { return r.status == RunStatus::finished; });
  std::string learning_rate;
  for (const auto& [key, value] : first.params(winner->id))
    if (key == "training.learning_rate") learning_rate = value;
  ASSERT_FALSE(learning_rate.empty());
  difflab::test::TempDir plain;
  std::ofstream(plain / "plain.toml") << read_text(difflab::test::tiny_experiment());
  const Outcome straight = difflab_command(
      "run " + (plain / "plain.toml").string() + " --set experiment.database=" + (plain / "results.sqlite").string() +
      " --set experiment.output_dir=" + (plain / "runs").string() +
      " --set experiment.threads=1 --set evaluation.kid_protocol=none --set training.epochs=4"
      " --set training.learning_rate=" + learning_rate);
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  ResultsStore reference(plain / "results.sqlite", OpenMode::read_only);
  std::map<std::pair<std::string, int64_t>, double> expected;
  for (const MetricRecord& metric : reference.metrics(reference.runs().front().id))
    if (metric.key != "epoch_seconds" && metric.key != "train_images_per_second")
      expected[{metric.key, metric.epoch}] = metric.value;
  size_t compared = 0;
  for (const MetricRecord& metric : first.metrics(winner->id)) {
    auto it = expected.find({metric.key, metric.epoch});
    if (it == expected.end()) continue;
    EXPECT_EQ(metric.value, it->second) << metric.key << " at epoch " << metric.epoch;
    ++compared;
  }
  EXPECT_EQ(compared, expected.size());
  EXPECT_GE(compared, 4u * 8u);  // four epochs of losses and validation losses
}

TEST(AdaptiveSweep, KilledMidSweepTheSameCommandContinuesAndTrainsNothingTwice) {
  difflab::test::TempDir dir;
  const std::string sweep =
      "method = \"asha\"\ntrials = 4\nseed = 3\nmetric = \"val_n_loss\"\nmin_epochs = 1\nreduction_factor = 2\n"
      "\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const std::string run = "run " + adaptive_sweep(dir.path(), sweep, " --set training.epochs=4");
  // SIGKILL after the second epoch of the first run that gets there: a power cut.
  const Outcome killed = difflab_command(run, "DIFFLAB_TEST_SIGNAL_AFTER_EPOCH='2 9 " + (dir / "once").string() + "'");
  EXPECT_NE(killed.exit_code, 0) << killed.output;
  const std::vector<DecisionRecord> before = ResultsStore(dir / "results.sqlite", OpenMode::read_only).decisions();
  const Outcome resumed = difflab_command(run);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming run 1 after epoch 2"), std::string::npos) << resumed.output;
  ResultsStore store(dir / "results.sqlite", OpenMode::read_only);
  const std::vector<DecisionRecord> after = store.decisions();
  for (const DecisionRecord& decision : before) {  // every decision taken before the kill stands
    const auto same = std::find_if(after.begin(), after.end(), [&](const DecisionRecord& d) {
      return d.run_id == decision.run_id && d.rung == decision.rung;
    });
    ASSERT_NE(same, after.end());
    EXPECT_EQ(same->prune, decision.prune);
    EXPECT_EQ(same->decided_at, decision.decided_at);
  }
  EXPECT_EQ(store.runs().size(), 4u);
}

TEST(AdaptiveSweep, BadSettingsAreExitTwoNamingTheKeyAndWriteNothing) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"method = \"bohb\"\ntrials = 3", "sweep.method"},
      {"method = \"asha\"\ntrials = 2\nmin_epochs = 5\n\"training.learning_rate\" = [1e-3, 1e-2]", "sweep.min_epochs"},
      {"method = \"asha\"\ntrials = 2\nreduction_factor = 1\n\"training.learning_rate\" = [1e-3, 1e-2]",
       "sweep.reduction_factor"},
      {"method = \"asha\"\ntrials = 2\nmetric = \"val_fid\"\n\"training.learning_rate\" = [1e-3, 1e-2]", "sweep.metric"},
      {"method = \"hyperband\"\ntrials = 2\nstartup_trials = 3\n\"training.learning_rate\" = [1e-3, 1e-2]",
       "sweep.startup_trials"},
      {"method = \"grid\"\npruner = \"mean\"\n\"training.learning_rate\" = [1e-3, 1e-2]", "sweep.pruner"},
  };
  for (const auto& [sweep, key] : cases) {
    difflab::test::TempDir dir;
    const Outcome outcome = difflab_command("run " + adaptive_sweep(dir.path(), sweep, " --set training.epochs=4"));
    EXPECT_EQ(outcome.exit_code, 2) << sweep << "\n" << outcome.output;
    EXPECT_NE(outcome.output.find(key), std::string::npos) << key << "\n" << outcome.output;
    EXPECT_NE(outcome.output.find("sweep.toml:"), std::string::npos) << outcome.output;
    EXPECT_FALSE(fs::exists(dir / "results.sqlite")) << sweep;
    EXPECT_FALSE(fs::exists(dir / "runs")) << sweep;
  }
  // A validation loss measured on a validation split smaller than one batch: never recorded, so
  // no rung could decide.
  {
    difflab::test::TempDir small;
    const Outcome few = difflab_command(
        "run " + adaptive_sweep(small.path(),
                                "method = \"asha\"\ntrials = 2\nmin_epochs = 1\nmetric = \"val_n_loss\"\n"
                                "\"training.learning_rate\" = [1e-3, 1e-2]",
                                " --set training.epochs=4 --set data.validation_count=8"));
    EXPECT_EQ(few.exit_code, 2) << few.output;
    EXPECT_NE(few.output.find("sweep.metric"), std::string::npos) << few.output;
    EXPECT_NE(few.output.find("sweep.toml:"), std::string::npos) << few.output;
    EXPECT_NE(few.output.find("validation split has 8"), std::string::npos) << few.output;
    EXPECT_FALSE(fs::exists(small / "results.sqlite"));
  }
  // val_kid at rung epochs that kid_every skips: both keys named.
  difflab::test::TempDir dir;
  std::ofstream(dir / "sweep.toml") << read_text(difflab::test::tiny_experiment())
                                    << "\n[sweep]\nmethod = \"asha\"\ntrials = 2\nmin_epochs = 1\n"
                                       "\"training.learning_rate\" = [1e-3, 1e-2]\n";
  const Outcome kid = difflab_command("check " + (dir / "sweep.toml").string() +
                                      " --set training.epochs=9 --set evaluation.kid_every=2");
  EXPECT_EQ(kid.exit_code, 2) << kid.output;
  EXPECT_NE(kid.output.find("evaluation.kid_every"), std::string::npos) << kid.output;
  EXPECT_NE(kid.output.find("rung epoch 1"), std::string::npos) << kid.output;
}

// Data-parallel trials: rank 0 decides at the rungs, rank 1 follows its verdict (both stop at a
// pruned trial's rung together).
TEST(AdaptiveSweep, DataParallelTrialsFollowRankZerosDecisions) {
  if (!difflab::distributed_available()) GTEST_SKIP() << "this build has no c10d (Gloo)";
  difflab::test::TempDir dir;
  const std::string sweep =
      "method = \"asha\"\ntrials = 4\nseed = 1\nmetric = \"val_n_loss\"\nmin_epochs = 1\nreduction_factor = 2\n"
      "\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const Outcome ran = difflab_command("run " + adaptive_sweep(dir.path(), sweep, " --set training.epochs=4 --nproc 2"));
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  ResultsStore store(dir / "results.sqlite", OpenMode::read_only);
  const std::map<int64_t, int64_t> last = last_epochs(store);
  int64_t pruned = 0;
  for (const RunRecord& run : store.runs()) {
    EXPECT_TRUE(run.status == RunStatus::finished || run.status == RunStatus::pruned) << to_string(run.status);
    pruned += run.status == RunStatus::pruned;
  }
  for (const DecisionRecord& decision : store.decisions())
    if (decision.prune) EXPECT_EQ(last.at(decision.run_id), decision.epoch);
  EXPECT_GT(pruned, 0);
  EXPECT_EQ(store.runs().size(), 4u);
  // Rank 1 went through every trial with rank 0; rank 0 alone prints the summary.
  EXPECT_NE(ran.output.find("[rank 1] == sweep run 4/4"), std::string::npos) << ran.output;
  EXPECT_NE(ran.output.find("[rank 0] sweep: 4 runs"), std::string::npos) << ran.output;
  EXPECT_EQ(ran.output.find("[rank 1] sweep: 4 runs"), std::string::npos) << ran.output;
}
