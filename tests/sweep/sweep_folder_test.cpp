// The sweep folder, launcher-neutral: the manifest frozen once per sweep, and the resubmission
// rule read off the points' shards (finished: never again; failed and diverged: only with
// retry_failed; interrupted, killed, pruned-by-nobody and never-run: again), packed R a task.
#include <fstream>

#include "config/experiment.h"
#include "plugin_host/registry.h"
#include "results/results_store.h"
#include "sweep/sweep_folder.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;

namespace {

std::vector<SweepRun> six_points(const fs::path& dir, PluginRegistry& registry) {
  std::ifstream tiny(difflab::test::tiny_experiment());
  std::ofstream(dir / "sweep.toml") << tiny.rdbuf() << "\n[sweep]\nseeds = [1, 2, 3, 4, 5, 6]\n";
  return load_sweep(dir / "sweep.toml",
                    {"experiment.database=\"" + (dir / "results.sqlite").string() + "\"",
                     "experiment.output_dir=\"" + (dir / "runs").string() + "\""},
                    registry);
}

// The point's shard, holding one run that ended in `status` (or still says running).
void shard_with(const fs::path& folder, const ManifestPoint& point, const Experiment& experiment, RunStatus status) {
  ResultsStore shard(shard_path(folder, point.index));
  const int64_t run = shard.start_run(experiment, "{}");
  if (status == RunStatus::finished) shard.finish_run(run);
  else if (status != RunStatus::running) shard.close_run(run, status, "as the test left it");
}

}  // namespace

TEST(SweepFolder, AResubmissionTakesWhatHasNotFinishedAndFailuresOnlyWhenAsked) {
  difflab::test::TempDir dir;
  PluginRegistry registry;
  const std::vector<SweepRun> runs = six_points(dir.path(), registry);
  const Manifest manifest = make_manifest(dir / "sweep.toml", runs, registry, "", "k8s");
  const fs::path folder = manifest.path.parent_path();
  EXPECT_EQ(folder.parent_path(), dir / "runs" / "k8s");
  freeze_manifest(manifest);
  const Manifest read = read_manifest(folder);
  ASSERT_EQ(read.points.size(), 6u);
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(read.points[i].config_hash, runs[i].experiment.config_hash());
  EXPECT_EQ(point_experiment(read, read.points[3], registry).config_hash(), runs[3].experiment.config_hash());

  // Point 0 finished, 1 failed, 2 diverged, 3 interrupted, 4 killed (still running), 5 never ran.
  const RunStatus states[] = {RunStatus::finished, RunStatus::failed, RunStatus::diverged, RunStatus::interrupted,
                              RunStatus::running};
  for (size_t i = 0; i < 5; ++i) shard_with(folder, read.points[i], runs[i].experiment, states[i]);
  const PointStates points(read, folder);
  EXPECT_EQ(points.of(read.points[3]).status, RunStatus::interrupted);
  EXPECT_EQ(points.of(read.points[5]).status, std::nullopt);

  const SubmissionPlan plan = plan_submission(read, folder, /*retry_failed=*/false, /*runs_per_task=*/2);
  EXPECT_EQ(plan.finished, 1);
  EXPECT_EQ(plan.failed, 2);
  EXPECT_EQ(plan.points, 3);
  EXPECT_EQ(plan.submission.number, 1);
  EXPECT_EQ(plan.submission.tasks, (std::vector<std::vector<int64_t>>{{3, 4}, {5}}));
  const SubmissionPlan retry = plan_submission(read, folder, /*retry_failed=*/true, /*runs_per_task=*/3);
  EXPECT_EQ(retry.failed, 0);
  EXPECT_EQ(retry.submission.tasks, (std::vector<std::vector<int64_t>>{{1, 2, 3}, {4, 5}}));
  EXPECT_TRUE(retry.submission.retry_failed);

  // Written and read back; the next plan is numbered after it.
  write_submission(folder, plan.submission);
  const std::optional<Submission> written = read_submission(folder, 1);
  ASSERT_TRUE(written.has_value());
  EXPECT_EQ(written->tasks, plan.submission.tasks);
  EXPECT_EQ(plan_submission(read, folder, false, 1).submission.number, 2);
}

TEST(SweepFolder, AFolderKeepsItsOneSweep) {
  difflab::test::TempDir dir;
  PluginRegistry registry;
  std::vector<SweepRun> runs = six_points(dir.path(), registry);
  const Manifest first = make_manifest(dir / "sweep.toml", runs, registry, (dir / "folder").string(), "slurm");
  freeze_manifest(first);
  freeze_manifest(first);  // the same sweep again: accepted
  runs.pop_back();
  const Manifest other = make_manifest(dir / "sweep.toml", runs, registry, (dir / "folder").string(), "slurm");
  try {
    freeze_manifest(other);
    FAIL() << "a second sweep was frozen into the folder";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_NE(std::string(error.what()).find("the folder holds another sweep"), std::string::npos) << error.what();
  }
  EXPECT_THROW(read_manifest(dir / "nowhere"), Error);
}
