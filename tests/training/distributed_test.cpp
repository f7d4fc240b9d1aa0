// Data-parallel training on c10d's Gloo between processes of this machine (difflab run --nproc):
// the same numbers as one process, identical ranks, a dead rank, the quickstart, two jobs at once.
#include <SQLiteCpp/SQLiteCpp.h>
#include <chrono>
#include <cstdlib>
#include <fmt/format.h>
#include <map>
#include <regex>

#include "config/experiment.h"
#include "model/checkpoint.h"
#include "model/components.h"
#include "test_support.h"
#include "training/distributed.h"

using namespace difflab;
namespace fs = std::filesystem;
using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::TempDir;

namespace {

std::string tiny(const TempDir& dir, const std::string& extra = "") {
  return "run " + difflab::test::tiny_experiment() + " --set experiment.database=" + (dir / "r.sqlite").string() +
         " --set experiment.output_dir=" + (dir / "runs").string() + " --timeout 30" + extra;
}

// The tiny experiment on a network without batch statistics (GroupNorm), five steps, fp32: two
// ranks with half the batch each compute what one process computes, up to reduction order.
const std::string kNoBatchStatistics =
    " --set network.plugin=unet --set network.widths=[8,16] --set network.block_depth=1 --set network.groups=4 "
    "--set network.attention_resolutions=[] --set training.epochs=1 --set training.steps_per_epoch=5 "
    "--set evaluation.kid_protocol=none --set experiment.threads=1";

// A run's final network parameters, from its checkpoint.
std::vector<torch::Tensor> trained_parameters(const fs::path& checkpoint) {
  Experiment experiment =
      parse_experiment(read_checkpoint_config(checkpoint), checkpoint.string(), {}, difflab::test::registry());
  Components components = build_components(experiment, difflab::test::registry());
  auto optimizer = make_optimizer(*components.model, experiment);
  load_checkpoint(checkpoint, *components.model, *optimizer, "");
  std::vector<torch::Tensor> parameters;
  for (const auto& parameter : components.model->network().parameters()) parameters.push_back(parameter.detach().clone());
  for (const auto& parameter : components.model->ema_network().parameters()) parameters.push_back(parameter.detach().clone());
  return parameters;
}

double largest_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double largest = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    largest = std::max(largest, (a[i].to(torch::kFloat64) - b[i].to(torch::kFloat64)).abs().max().item<double>());
  return largest;
}

int64_t count(const fs::path& database, const std::string& sql) {
  SQLite::Database db(database.string());
  return db.execAndGet(sql).getInt64();
}

}  // namespace

TEST(Rendezvous, ReadsTorchrunAndSlurmVariables) {
  EXPECT_EQ(first_slurm_host("node[03-05,07],gpu1"), "node03");
  EXPECT_EQ(first_slurm_host("gpu1,gpu2"), "gpu1");
  EXPECT_EQ(first_slurm_host("vm"), "vm");
  EXPECT_EQ(first_slurm_host("a[7]"), "a7");
  for (const char* name : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS"})
    unsetenv(name);
  EXPECT_EQ(rendezvous_from_environment().world, 1);
  auto set = [](std::initializer_list<std::pair<const char*, const char*>> variables) {
    for (const auto& [name, value] : variables) setenv(name, value, 1);
  };
  set({{"SLURM_NTASKS", "4"}, {"SLURM_PROCID", "3"}, {"SLURM_LOCALID", "1"}, {"SLURM_JOB_NODELIST", "gpu[12-13]"},
       {"SLURM_JOB_ID", "123456"}});
  Rendezvous slurm = rendezvous_from_environment();
  EXPECT_EQ(slurm.source, "slurm");
  EXPECT_EQ(slurm.world, 4);
  EXPECT_EQ(slurm.rank, 3);
  EXPECT_EQ(slurm.local_rank, 1);
  EXPECT_EQ(slurm.master_addr, "gpu12");
  EXPECT_EQ(slurm.port, 20000 + 123456 % 20000);
  setenv("SLURM_JOB_ID", "123457", 1);
  EXPECT_NE(rendezvous_from_environment().port, slurm.port);  // another job, another port
  // torchrun's variables win.
  set({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29600"}});
  Rendezvous torchrun = rendezvous_from_environment();
  EXPECT_EQ(torchrun.source, "torchrun");
  EXPECT_EQ(torchrun.rank, 1);
  EXPECT_EQ(torchrun.master_addr, "10.0.0.1");
  EXPECT_EQ(torchrun.port, 29600);
  setenv("RANK", "2", 1);
  EXPECT_THROW(rendezvous_from_environment(), Error);  // rank 2 of 2
  setenv("RANK", "x", 1);
  EXPECT_THROW(rendezvous_from_environment(), Error);
  for (const char* name : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID",
                           "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_JOB_ID"})
    unsetenv(name);
}

TEST(DataParallel, TwoProcessesWithHalfTheBatchEachMatchOneProcessWithAllOfIt) {
  if (!distributed_available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  TempDir one, two, other_seed;
  const Outcome alone = difflab_command(tiny(one, kNoBatchStatistics));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const Outcome pair = difflab_command(tiny(two, kNoBatchStatistics + " --nproc 2"));
  ASSERT_EQ(pair.exit_code, 0) << pair.output;
  const Outcome reseeded = difflab_command(tiny(other_seed, kNoBatchStatistics + " --set experiment.seed=8"));
  ASSERT_EQ(reseeded.exit_code, 0) << reseeded.output;
  const auto a = trained_parameters(one / "runs" / "tiny-run1" / "checkpoint.pt");
  const auto b = trained_parameters(two / "runs" / "tiny-run1" / "checkpoint.pt");
  const auto c = trained_parameters(other_seed / "runs" / "tiny-run1" / "checkpoint.pt");
  // Float32 sums in another order: ~1e-7 relative per step; after 5 AdamW steps well below 1e-5.
  const double difference = largest_difference(a, b);
  EXPECT_LT(difference, 1e-5);
  // The tolerance means something: another seed's parameters differ by far more.
  EXPECT_GT(largest_difference(a, c), 1e-2);
  std::printf("largest parameter difference, 1 vs 2 processes: %.3g\n", difference);
  SQLite::Database db_one((one / "r.sqlite").string()), db_two((two / "r.sqlite").string());
  EXPECT_NEAR(db_one.execAndGet("SELECT value FROM metrics WHERE key = 'n_loss'").getDouble(),
              db_two.execAndGet("SELECT value FROM metrics WHERE key = 'n_loss'").getDouble(), 1e-6);
}

TEST(DataParallel, RanksSeededDifferentlyHoldIdenticalParametersAfterTheBroadcastAndEveryStep) {
  if (!distributed_available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  TempDir dir;
  const Outcome outcome = difflab_command(tiny(dir, " --nproc 2"),
                                          "DIFFLAB_TEST_PERTURB_WEIGHTS_BY_RANK=1 DIFFLAB_TEST_PARAMETER_CHECKSUMS=1");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  std::map<std::string, std::map<std::string, std::string>> by_step;  // step -> rank -> checksums
  std::map<std::string, std::string> before;
  const std::regex line("checksum rank ([0-9]) step ([0-9]+) network ([0-9.e+-]+)( ema ([0-9.e+-]+)| \\(before the "
                        "broadcast\\)| \\(after the broadcast\\))");
  for (auto it = std::sregex_iterator(outcome.output.begin(), outcome.output.end(), line); it != std::sregex_iterator(); ++it) {
    const std::string rank = (*it)[1], step = (*it)[2], text = (*it)[3].str() + (*it)[5].str();
    if ((*it)[4].str() == " (before the broadcast)") before[rank] = text;
    else by_step[(*it)[4].str() == " (after the broadcast)" ? "start" : step][rank] = text;
  }
  ASSERT_EQ(before.size(), 2u) << outcome.output;
  EXPECT_NE(before["0"], before["1"]);  // seeded differently
  ASSERT_EQ(by_step.size(), 9u) << outcome.output;  // after the broadcast, and 8 steps
  for (const auto& [step, ranks] : by_step) {
    ASSERT_EQ(ranks.size(), 2u) << step;
    EXPECT_EQ(ranks.at("0"), ranks.at("1")) << "step " << step;
  }
  EXPECT_EQ(by_step["start"]["0"], before["0"]);  // rank 0's weights won
}

TEST(DataParallel, ADeadRankStopsTheOthersWithinTheTimeoutAndTheRunResumes) {
  if (!distributed_available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  // Rank 1 is killed (SIGKILL) after step 5: inside epoch 2, after epoch 1's checkpoint.
  const Outcome killed = difflab_command(tiny(dir, " --nproc 2"),
                                         "DIFFLAB_TEST_HOOK_RANK=1 DIFFLAB_TEST_SIGNAL_AFTER_STEP='5 9'");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(killed.exit_code, 1) << killed.output;
  EXPECT_LT(seconds, 30.0);
  EXPECT_NE(killed.output.find("rank 1 was killed by signal 9"), std::string::npos) << killed.output;
  std::smatch gone;
  EXPECT_TRUE(std::regex_search(killed.output, gone, std::regex("rank 0 lost the other ranks: rank 1 \\(pid [0-9]+ on "
                                                                "[^)]+\\) is gone")))
      << killed.output;
  {
    SQLite::Database db((dir / "r.sqlite").string());
    EXPECT_EQ(db.execAndGet("SELECT status FROM runs").getString(), "interrupted");
    EXPECT_NE(db.execAndGet("SELECT error FROM runs").getString().find("lost the other ranks"), std::string::npos);
  }
  // Run again, in one process this time: it resumes from epoch 1's checkpoint and finishes.
  const Outcome resumed = difflab_command(tiny(dir));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming run 1 after epoch 1 (step 4)"), std::string::npos) << resumed.output;
  EXPECT_EQ(count(dir / "r.sqlite", "SELECT COUNT(*) FROM runs"), 1);
  EXPECT_EQ(count(dir / "r.sqlite", "SELECT world_size FROM runs"), 1);
}

TEST(DataParallel, TheQuickstartInTwoProcessesRecordsOneRunOfWorldSizeTwo) {
  if (!distributed_available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  const Outcome outcome = difflab_command(
      "run " + std::string(DIFFLAB_TEST_SOURCE_DIR) + "/experiments/quickstart.toml --set experiment.database=" +
      (dir / "q.sqlite").string() + " --set experiment.output_dir=" + (dir / "runs").string() +
      " --set training.steps_per_epoch=4 --set evaluation.kid_batches=1 --set evaluation.validation_batches=1 "
      "--set evaluation.plot_diffusion_steps=2 --set evaluation.kid_diffusion_steps=2 --set features.plugin=pixels "
      "--nproc 2");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("2 processes, gloo"), std::string::npos) << outcome.output;
  EXPECT_EQ(count(dir / "q.sqlite", "SELECT COUNT(*) FROM runs"), 1);
  SQLite::Database db((dir / "q.sqlite").string());
  EXPECT_EQ(db.execAndGet("SELECT status || ' ' || world_size || ' ' || backend FROM runs").getString(),
            "finished 2 gloo");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM metrics WHERE key = 'n_loss'").getInt(), 1);
}

TEST(DataParallel, TwoJobsAtOnceOnOneMachineDoNotCollide) {
  if (!distributed_available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  TempDir a, b;
  const std::string command = std::string(DIFFLAB_TEST_EXECUTABLE);
  const Outcome both = difflab::test::shell_command(
      fmt::format("{0} {1} --nproc 2 > {3}/log 2>&1 & {0} {2} --nproc 2 > {4}/log 2>&1 & "
                  "wait %1; echo first $?; wait %2; echo second $?",
                  command, tiny(a), tiny(b), a.path().string(), b.path().string()));
  EXPECT_NE(both.output.find("first 0"), std::string::npos) << both.output;
  EXPECT_NE(both.output.find("second 0"), std::string::npos) << both.output;
  for (const TempDir* dir : {&a, &b})
    EXPECT_EQ(count(*dir / "r.sqlite", "SELECT COUNT(*) FROM runs WHERE status = 'finished' AND world_size = 2"), 1);
}

TEST(DataParallel, PerRankBatchesMakeAGlobalBatchOfNTimesTheSize) {
  if (!distributed_available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  TempDir dir;
  const Outcome split = difflab_command(tiny(dir, " --nproc 2 --set training.epochs=1"));
  ASSERT_EQ(split.exit_code, 0) << split.output;
  const Outcome per_rank = difflab_command(tiny(dir, " --nproc 2 --set training.epochs=1 --per-rank-batch"));
  ASSERT_EQ(per_rank.exit_code, 0) << per_rank.output;
  // Two runs: the experiment's batch of 16 split in two, and two batches of 16 (recorded as 32).
  SQLite::Database db((dir / "r.sqlite").string());
  SQLite::Statement query(db, "SELECT p.value FROM runs r JOIN params p ON p.run_id = r.id AND "
                              "p.key = 'training.batch_size' ORDER BY r.id");
  std::vector<std::string> sizes;
  while (query.executeStep()) sizes.push_back(query.getColumn(0).getString());
  EXPECT_EQ(sizes, (std::vector<std::string>{"16", "32"}));
}
