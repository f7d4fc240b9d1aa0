// The trainer's steps one by one (RunTrainer: train_epoch, evaluate, record, resume, the
// after-epoch seam) on the tiny synthetic experiment, and the sweep runner in this process.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "config/experiment.h"
#include "model/components.h"
#include "results/results_store.h"
#include "sweep/sweep.h"
#include "test_support.h"
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
