// The trainer's steps one by one (RunTrainer: train_epoch, evaluate, record, resume, the
// after-epoch seam) on the tiny synthetic experiment, and the sweep runner in this process.
#include <algorithm>
#include <cstring>
#include <cmath>
#include <fstream>
#include <sstream>

#include "config/experiment.h"
#include "model/components.h"
#include "results/results_store.h"
#include "sweep/sweep.h"
#include "test_support.h"
#include "training/run_ledger.h"
#include "training/run_trainer.h"

using namespace difflab;
namespace fs = std::filesystem;
using difflab::test::registry;

namespace {

std::string tiny_text() {
  std::ifstream file(std::string(DIFFLAB_TEST_SOURCE_DIR) + "/tests/data/tiny_synthetic.toml");
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<std::string> into(const difflab::test::TempDir& dir) {
  return {"experiment.database=\"" + (dir / "results.sqlite").string() + "\"",
          "experiment.output_dir=\"" + (dir / "runs").string() + "\""};
}

// A claimed run of the tiny experiment, with everything RunContext refers to.
struct TinyRun {
  difflab::test::TempDir dir;
  Experiment experiment = parse_experiment(tiny_text(), "tiny.toml", into(dir), registry());
  Settings settings = experiment.settings();
  torch::Device device = configure_process(experiment);
  Components components = build_components(experiment, registry());
  ImageSplits data = components.dataset->load();
  ResultsStore store{dir / "results.sqlite"};
  int64_t run_id = store.claim_run(experiment, "{}").run_id;
  RunHeartbeat heartbeat{dir / "results.sqlite", run_id};
  RunOptions options;

  RunContext context() {
    return {experiment, settings, components, data, &store, run_id, dir / "run", &heartbeat, std::nullopt, options};
  }
  std::vector<std::string> metric_keys(int64_t epoch) {
    std::vector<std::string> keys;
    for (const auto& metric : store.metrics(run_id))
      if (metric.epoch == epoch) keys.push_back(metric.key);
    return keys;
  }
};

}  // namespace

TEST(RunTrainer, TrainEpochTakesTheEpochsStepsAndWritesNothing) {
  TinyRun tiny;
  const RunContext context = tiny.context();
  RunTrainer trainer(context, tiny.device);
  EXPECT_EQ(trainer.steps_per_epoch(), 4);  // [training] steps_per_epoch caps 128 / 16 = 8
  const EpochLosses losses = trainer.train_epoch(1);
  EXPECT_EQ(trainer.state().step, 4);
  EXPECT_EQ(trainer.state().epoch, 0);  // an epoch counts once it is recorded
  // The seed's network starts with a zero last layer: the first MAE is E|ε| ≈ 0.80, and a few
  // steps move it down, not to zero.
  EXPECT_GT(losses.noise_loss, 0.3);
  EXPECT_LT(losses.noise_loss, 0.85);
  EXPECT_TRUE(std::isfinite(losses.image_loss));
  EXPECT_GT(losses.train_seconds, 0.0);
  EXPECT_TRUE(tiny.store.metrics(tiny.run_id).empty());
  EXPECT_FALSE(fs::exists(tiny.dir / "run" / "checkpoint.pt"));
}

TEST(RunTrainer, EvaluateWritesTheGridAndComputesKidButRecordsNothing) {
  TinyRun tiny;
  const RunContext context = tiny.context();
  RunTrainer trainer(context, tiny.device);
  trainer.train_epoch(1);
  const EpochEvaluation evaluated = trainer.evaluate(1);
  ASSERT_TRUE(fs::exists(evaluated.grid_path));
  EXPECT_GT(fs::file_size(evaluated.grid_path), 100u);
  std::vector<std::string> keys;
  for (const auto& [key, value] : evaluated.metrics) {
    keys.push_back(key);
    EXPECT_TRUE(std::isfinite(value)) << key;
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"val_loss", "val_n_loss", "val_i_loss", "val_v_loss", "val_kid"}));
  ASSERT_TRUE(evaluated.kid);
  EXPECT_EQ(evaluated.kid->real_count, 32);  // both validation batches of 16
  EXPECT_TRUE(evaluated.new_best);           // the first KID is the best so far
  std::vector<std::string> kinds;
  for (const auto& artifact : evaluated.artifacts) kinds.push_back(artifact.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"sample_grid", "checkpoint", "best_checkpoint"}));
  EXPECT_TRUE(tiny.store.metrics(tiny.run_id).empty());
  EXPECT_FALSE(fs::exists(tiny.dir / "run" / "checkpoint.pt"));
}

TEST(RunTrainer, RecordWritesTheRowsThenACheckpointThatANewTrainerResumesFrom) {
  TinyRun tiny;
  const RunContext context = tiny.context();
  double best_kid = 0.0;
  {
    RunTrainer trainer(context, tiny.device);
    const EpochLosses losses = trainer.train_epoch(1);
    const EpochEvaluation evaluated = trainer.evaluate(1);
    trainer.record(1, evaluated, {{"n_loss", losses.noise_loss}});
    best_kid = evaluated.kid->mean;
    EXPECT_EQ(trainer.state().epoch, 1);
  }
  std::vector<std::string> keys = tiny.metric_keys(1);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"n_loss", "val_i_loss", "val_kid", "val_loss", "val_n_loss", "val_v_loss"}));
  EXPECT_TRUE(fs::exists(tiny.dir / "run" / "checkpoint.pt"));
  EXPECT_TRUE(fs::exists(tiny.dir / "run" / "best.pt"));
  RunTrainer resumed(context, tiny.device);
  EXPECT_EQ(resumed.state().epoch, 1);
  EXPECT_EQ(resumed.state().step, 4);
  EXPECT_DOUBLE_EQ(resumed.state().best_kid, best_kid);
}

TEST(RunTrainer, RunCallsTheAfterEpochSeamOnceTheEpochIsCheckpointed) {
  TinyRun tiny;
  std::vector<int64_t> seen;
  tiny.options.after_epoch = [&](int64_t epoch) {
    seen.push_back(epoch);
    EXPECT_EQ(tiny.metric_keys(epoch).empty(), false) << epoch;
    EXPECT_TRUE(fs::exists(tiny.dir / "run" / "checkpoint.pt"));
  };
  const RunContext context = tiny.context();
  const RunResult result = RunTrainer(context, tiny.device).run();
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(result.last_grid, tiny.dir / "run" / "epoch-002.png");
  EXPECT_GT(result.noise_loss, 0.0);
}

// The rows of epochs >= `from` (metrics and KID), as text with every digit: what a resume must give back.
std::string rows_from(ResultsStore& store, int64_t run_id, int64_t from) {
  std::ostringstream text;
  text.precision(17);
  for (const MetricRecord& metric : store.metrics(run_id))
    if (metric.epoch >= from) text << metric.key << " " << metric.epoch << " " << metric.step << " " << metric.value << "\n";
  for (const auto& [epoch, kid] : store.kid(run_id))
    if (epoch >= from) text << "kid " << epoch << " " << kid.mean << " " << kid.std << "\n";
  for (const ArtifactRecord& artifact : store.artifacts(run_id))
    if (artifact.epoch >= from) text << artifact.kind << " " << artifact.epoch << " " << artifact.path << "\n";
  return text.str();
}

// What a database restored from an older copy looks like: the run's rows from `from` on are gone.
void forget_epochs(ResultsStore& store, int64_t run_id, int64_t from) {
  for (const char* table : {"metrics", "kid", "artifacts"}) {
    SQLite::Statement remove(store.database(), std::string("DELETE FROM ") + table + " WHERE run_id = ? AND epoch >= ?");
    remove.bind(1, run_id);
    remove.bind(2, from);
    remove.exec();
  }
}

TEST(RunLedger, ReadsBackEveryRowBitForBit) {
  RunLedger ledger;
  const double awkward[] = {1.0 / 3.0, 4.9406564584124654e-324, -0.0, 1.7976931348623157e308, 0.1 + 0.2, -2.5e-17};
  EpochRows rows{4, 1234, {}, {{"sample_grid", "/runs/a b/epoch-004.png", 4}}, KidRecord{}};
  for (size_t i = 0; i < std::size(awkward); ++i) rows.metrics.emplace_back("m" + std::to_string(i), awkward[i]);
  rows.metrics.emplace_back("nan", std::nan(""));
  rows.kid->mean = 1.0 / 7.0;
  rows.kid->protocol = "per_batch";
  rows.kid->nfe = 5;
  ledger.epochs.push_back(rows);
  DecisionRecord decision;
  decision.rung = 1;
  decision.epoch = 4;
  decision.method = "asha";
  decision.metric = "val_n_loss";
  decision.value = 2.0 / 3.0;
  decision.cutoff = std::nan("");
  decision.peers = {"ab12", "cd34"};
  decision.prune = true;
  decision.decided_at = "2026-12-06T08:00:00.000Z";
  ledger.decisions.push_back(decision);
  const RunLedger read = read_ledger(write_ledger(ledger), "checkpoint.pt");
  ASSERT_EQ(read.epochs.size(), 1u);
  const EpochRows& back = read.epochs[0];
  EXPECT_EQ(back.epoch, 4);
  EXPECT_EQ(back.step, 1234);
  ASSERT_EQ(back.metrics.size(), rows.metrics.size());
  for (size_t i = 0; i < rows.metrics.size(); ++i) {
    EXPECT_EQ(back.metrics[i].first, rows.metrics[i].first);
    EXPECT_EQ(std::memcmp(&back.metrics[i].second, &rows.metrics[i].second, sizeof(double)), 0) << rows.metrics[i].first;
  }
  ASSERT_EQ(back.artifacts.size(), 1u);
  EXPECT_EQ(back.artifacts[0].path, "/runs/a b/epoch-004.png");
  EXPECT_EQ(back.kid->mean, 1.0 / 7.0);
  EXPECT_EQ(back.kid->nfe, 5);
  ASSERT_EQ(read.decisions.size(), 1u);
  EXPECT_EQ(read.decisions[0].peers, decision.peers);
  EXPECT_TRUE(read.decisions[0].prune);
  EXPECT_TRUE(std::isnan(read.decisions[0].cutoff));
  EXPECT_EQ(read.decisions[0].decided_at, decision.decided_at);
  try {
    read_ledger("epoch\t1\t4\nmetric\tn_loss\tnot-a-number\n", "/x/checkpoint.pt");
    ADD_FAILURE() << "a damaged ledger was read";
  } catch (const Error& error) {
    EXPECT_NE(error.message().find("line 2"), std::string::npos) << error.what();
    EXPECT_EQ(error.context().file, "/x/checkpoint.pt");
  }
}

TEST(RunTrainer, AResumeRestoresTheEpochsADatabaseLostFromTheCheckpointsLedger) {
  TinyRun tiny;
  const RunContext context = tiny.context();
  RunTrainer(context, tiny.device).run();  // two epochs
  const std::string rows = rows_from(tiny.store, tiny.run_id, 1);
  ASSERT_NE(rows.find("val_n_loss 2 "), std::string::npos) << rows;
  forget_epochs(tiny.store, tiny.run_id, 1);
  testing::internal::CaptureStdout();
  RunTrainer resumed(context, tiny.device);
  const std::string printed = testing::internal::GetCapturedStdout();
  EXPECT_EQ(resumed.state().epoch, 2);
  EXPECT_EQ(rows_from(tiny.store, tiny.run_id, 1), rows);
  EXPECT_NE(printed.find("restored the rows of epochs 1 to 2 from the checkpoint"), std::string::npos) << printed;
  EXPECT_NE(printed.find((tiny.dir / "results.sqlite").string()), std::string::npos) << printed;
}

TEST(RunTrainer, AResumeRefusesACheckpointThatCannotGiveBackTheRowsTheDatabaseLacks) {
  TinyRun tiny;
  const RunContext context = tiny.context();
  RunTrainer(context, tiny.device).run();
  // The checkpoint as difflab wrote it before checkpoints carried their rows.
  const fs::path checkpoint = tiny.dir / "run" / "checkpoint.pt";
  {
    DiffusionModel& model = *tiny.components.model;
    auto optimizer = make_optimizer(model, tiny.experiment);
    TrainingState state = load_checkpoint(checkpoint, model, *optimizer, tiny.experiment.training_hash());
    state.ledger.clear();
    save_checkpoint(checkpoint, model, *optimizer, state, tiny.experiment.to_toml(), tiny.experiment.training_hash());
  }
  forget_epochs(tiny.store, tiny.run_id, 2);
  try {
    RunTrainer resumed(context, tiny.device);
    ADD_FAILURE() << "resumed after epoch 2 with no rows of epoch 2";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::runtime);
    EXPECT_NE(error.message().find("epoch 2"), std::string::npos) << error.what();
    EXPECT_NE(error.message().find((tiny.dir / "results.sqlite").string()), std::string::npos) << error.what();
    EXPECT_EQ(error.context().file, checkpoint.string());
  }
  EXPECT_EQ(rows_from(tiny.store, tiny.run_id, 2), "");  // nothing written
}

TEST(SweepRunner, RunsEveryPointOnceAndSkipsFinishedPointsTheNextTime) {
  difflab::test::TempDir dir;
  std::vector<std::string> overrides = into(dir);
  overrides.insert(overrides.end(), {"training.epochs=1", "training.steps_per_epoch=2", "evaluation.kid_protocol=\"none\""});
  const std::vector<SweepRun> runs =
      parse_sweep(tiny_text() + "\n[sweep]\n\"loss.plugin\" = [\"mae\", \"mse\"]\n", "sweep.toml", overrides, registry());
  ASSERT_EQ(runs.size(), 2u);

  testing::internal::CaptureStdout();
  const int first = run_sweep(runs, registry(), {});
  const std::string first_output = testing::internal::GetCapturedStdout();
  EXPECT_EQ(first, 0) << first_output;
  EXPECT_NE(first_output.find("sweep: 2 runs — 2 finished, 0 skipped"), std::string::npos) << first_output;

  testing::internal::CaptureStdout();
  const int second = run_sweep(runs, registry(), {});
  const std::string second_output = testing::internal::GetCapturedStdout();
  EXPECT_EQ(second, 0) << second_output;
  EXPECT_NE(second_output.find("sweep: 2 runs — 0 finished, 2 skipped"), std::string::npos) << second_output;

  ResultsStore store(dir / "results.sqlite");
  ASSERT_EQ(store.runs().size(), 2u);
  for (const auto& run : store.runs()) EXPECT_EQ(run.status, RunStatus::finished);
}
