// The edges a cluster user meets: files that are not difflab's, read-only places, damaged and
// foreign checkpoints, full disks. Each case: a clear error, the right exit code, and nothing
// lost or changed that should not be.
#include <SQLiteCpp/SQLiteCpp.h>
#include <cstdlib>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include "results/results_store.h"
#include "test_support.h"
#include "training/image_io.h"

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

namespace {

// The run folder of the first run of the tiny experiment in `dir`.
fs::path run_folder(const fs::path& dir) { return dir / "runs" / "tiny-run1"; }

// Status and error of run 1.
std::pair<std::string, std::string> run_row(const fs::path& dir) {
  SQLite::Database db((dir / "results.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT status, COALESCE(error, '') FROM runs WHERE id = 1");
  if (!query.executeStep()) return {"", ""};
  return {query.getColumn(0).getString(), query.getColumn(1).getString()};
}

// Files a failed write must not leave behind.
std::vector<std::string> partial_files(const fs::path& folder) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".partial") != std::string::npos || name.find(".next") != std::string::npos) names.push_back(name);
  }
  return names;
}

// Killed (SIGKILL, a power cut) right after epoch `epoch`'s checkpoint of a three-epoch run.
std::string killed_after(const fs::path& dir, int epoch, const std::string& more = "") {
  Outcome killed = difflab_command(quick_run(dir, " --set training.epochs=3" + more),
                                   "DIFFLAB_TEST_SIGNAL_AFTER_EPOCH='" + std::to_string(epoch) + " 9'");
  EXPECT_NE(killed.exit_code, 0) << killed.output;
  return quick_run(dir, " --set training.epochs=3" + more);
}

void flip_bytes(const fs::path& path) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = static_cast<std::streamoff>(fs::file_size(path));
  for (std::streamoff at : {size / 3, size / 2, 2 * size / 3}) {
    file.seekg(at);
    const char byte = static_cast<char>(file.get());
    file.seekp(at);
    file.put(static_cast<char>(byte ^ 0x5a));
  }
}

}  // namespace

TEST(Checkpoints, ACheckpointOfAnotherTrainingConfigurationIsRefusedNamingBoth) {
  difflab::test::TempDir other, dir;
  ASSERT_EQ(difflab_command(quick_run(other.path(), " --set network.widths=[4,8]")).exit_code, 0);
  const std::string rerun = killed_after(dir.path(), 1);
  fs::copy_file(run_folder(other.path()) / "checkpoint.pt", run_folder(dir.path()) / "checkpoint.pt",
                fs::copy_options::overwrite_existing);
  Outcome outcome = difflab_command(rerun);
  EXPECT_EQ(outcome.exit_code, 1) << outcome.output;
  EXPECT_NE(outcome.output.find("the checkpoint belongs to another training configuration (training hash"),
            std::string::npos)
      << outcome.output;
  EXPECT_NE(outcome.output.find((run_folder(dir.path()) / "checkpoint.pt").string()), std::string::npos);
  EXPECT_EQ(run_row(dir.path()).first, "failed");
}

TEST(Checkpoints, ADamagedCheckpointIsRefusedAndThePreviousOneResumesTheRun) {
  difflab::test::TempDir dir;
  const std::string rerun = killed_after(dir.path(), 2);
  ASSERT_TRUE(fs::exists(run_folder(dir.path()) / "checkpoint.previous.pt"));
  flip_bytes(run_folder(dir.path()) / "checkpoint.pt");
  Outcome outcome = difflab_command(rerun);
  EXPECT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("the checkpoint is damaged (its checksum does not match); resuming from the previous "
                                "checkpoint"),
            std::string::npos)
      << outcome.output;
  EXPECT_NE(outcome.output.find("resuming run 1 after epoch 1"), std::string::npos) << outcome.output;
  EXPECT_EQ(run_row(dir.path()).first, "finished");
}

TEST(Checkpoints, WithBothCheckpointsDamagedTheRunFailsNamingThePath) {
  difflab::test::TempDir dir;
  const std::string rerun = killed_after(dir.path(), 2);
  flip_bytes(run_folder(dir.path()) / "checkpoint.pt");
  flip_bytes(run_folder(dir.path()) / "checkpoint.previous.pt");
  Outcome outcome = difflab_command(rerun);
  EXPECT_EQ(outcome.exit_code, 1) << outcome.output;
  EXPECT_NE(outcome.output.find((run_folder(dir.path()) / "checkpoint.previous.pt").string() +
                                ": the checkpoint is damaged"),
            std::string::npos)
      << outcome.output;
}

TEST(Checkpoints, AFolderWhereTheCheckpointShouldBeFailsTheRunWithExitOne) {
  difflab::test::TempDir dir;
  const std::string rerun = killed_after(dir.path(), 1);
  fs::remove(run_folder(dir.path()) / "checkpoint.pt");
  fs::create_directory(run_folder(dir.path()) / "checkpoint.pt");
  Outcome outcome = difflab_command(rerun);
  EXPECT_EQ(outcome.exit_code, 1) << outcome.output;  // 2 would say nothing was written
  EXPECT_NE(outcome.output.find("the checkpoint is not a file"), std::string::npos) << outcome.output;
  EXPECT_EQ(run_row(dir.path()).first, "failed");
}

TEST(FullDisks, AFullOutputFolderStopsTheRunCleanlyAndARunWithRoomResumesIt) {
  if (!in_mount_namespace_possible()) GTEST_SKIP() << "unshare -m is not permitted here (needs root)";
  difflab::test::TempDir dir;
  fs::create_directories(dir / "runs");
  // The output folder is a 100 KB tmpfs: the first sample grid fits, the checkpoint does not.
  Outcome full = difflab::test::shell_command("unshare -m sh -c 'mount -t tmpfs -o size=100k tmpfs " +
                                              (dir / "runs").string() + " && " + DIFFLAB_TEST_EXECUTABLE + " " +
                                              quick_run(dir.path()) + "; echo exit=$?'");
  ASSERT_NE(full.output.find("exit=1"), std::string::npos) << full.output;
  EXPECT_NE(full.output.find((run_folder(dir.path()) / "checkpoint.pt").string() +
                             ": cannot write the checkpoint: cannot write the file: No space left on device"),
            std::string::npos)
      << full.output;
  const auto [status, error] = run_row(dir.path());
  EXPECT_EQ(status, "interrupted");  // closed like an interrupted run, with the error's message
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << error;
  // With room (the tmpfs is gone with its namespace), the same command finishes the run.
  Outcome resumed = difflab_command(quick_run(dir.path()));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(run_row(dir.path()).first, "finished");
  EXPECT_TRUE(partial_files(run_folder(dir.path())).empty());
}

TEST(FullDisks, AFileSizeLimitFailsTheRunInsteadOfKillingIt) {
  difflab::test::TempDir dir;
  // bash counts ulimit -f in KiB: the database (104 KiB; its write-ahead log reaches 150-160 KiB while the
  // schema is created) fits in 180 KiB, a checkpoint (198 KiB) does not.
  Outcome limited = difflab::test::shell_command("bash -c 'ulimit -f 180; " + std::string(DIFFLAB_TEST_EXECUTABLE) +
                                                 " " + quick_run(dir.path()) + "'");
  EXPECT_EQ(limited.exit_code, 1) << limited.output;  // not 153 (SIGXFSZ)
  EXPECT_NE(limited.output.find("File too large"), std::string::npos) << limited.output;
  // Closed as interrupted, like a full disk: its last checkpoint is intact, and the same command
  // resumes it once the limit is raised.
  EXPECT_EQ(run_row(dir.path()).first, "interrupted");
  EXPECT_TRUE(partial_files(run_folder(dir.path())).empty()) << partial_files(run_folder(dir.path())).front();
  EXPECT_FALSE(fs::exists(run_folder(dir.path()) / "checkpoint.pt"));
}

namespace {

// `difflab check` of the tiny experiment with `sets` (--set arguments).
Outcome check_with(const std::string& sets) { return difflab_command("check " + tiny_experiment() + " " + sets); }

// The peak resident memory (KB) and exit code of `difflab ARGUMENTS`, its output to /dev/null.
std::pair<long, int> peak_memory_kb(const std::string& arguments) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string command = "exec " + std::string(DIFFLAB_TEST_EXECUTABLE) + " " + arguments + " > /dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  return {usage.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

}  // namespace

// `difflab check` reads the data sets' headers (counts and shapes), not their images, on every
// shipped experiment that has its data here and on one that leaves [data] at its defaults
// (Fashion-MNIST at 64x64). The bound tells the two apart on any machine: loading Debian's
// LibTorch alone takes ~160 MB (`difflab --version`), decoding would add at least 70,000 x 32^2 x
// 4 bytes = 287 MB at 32x32 (1.15 GB at 64x64); measured here: 197-198 MB, 217 MB for the
// defaults.
TEST(Check, ReadsTheDataSetsHeadersNotTheirImages) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "no Fashion-MNIST (Debian's dataset-fashion-mnist)";
  difflab::test::TempDir dir;
  std::ofstream(dir / "defaults.toml") << "[experiment]\nname = \"defaults\"\n";
  const std::string experiments = std::string(DIFFLAB_TEST_SOURCE_DIR) + "/experiments/";
  for (const std::string& file : {experiments + "quickstart.toml", experiments + "ablation_loss_schedule.toml",
                                  experiments + "sampler_comparison.toml", (dir / "defaults.toml").string()}) {
    const auto [kilobytes, exit_code] = peak_memory_kb("check " + file);
    EXPECT_EQ(exit_code, 0) << file;
    EXPECT_LT(kilobytes, 250 * 1024) << file;
    std::printf("difflab check %s: peak %.0f MB\n", fs::path(file).filename().c_str(), kilobytes / 1024.0);
  }
}

// An image size whose data cannot fit is a bad input naming data.image_size and the memory it
// would need, found from the headers before anything is allocated; so is one whose training
// step cannot fit, extrapolated from smaller sizes before the full size is tried.
TEST(Check, AnImageSizeBeyondMemoryIsABadInputNamingTheKey) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "no Fashion-MNIST (Debian's dataset-fashion-mnist)";
  const std::string quickstart = std::string(DIFFLAB_TEST_SOURCE_DIR) + "/experiments/quickstart.toml";
  for (const std::string& command : {"check " + quickstart + " --set data.image_size=4096",
                                     "run " + quickstart + " --set data.image_size=4096 --set experiment.database=" +
                                         (fs::temp_directory_path() / "never-written.sqlite").string()}) {
    Outcome outcome = difflab_command(command);
    EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
    EXPECT_NE(outcome.output.find("data.image_size: the data set's 70000 images at image_size 4096 need 4.7e+03 GB"),
              std::string::npos)
        << outcome.output;
    EXPECT_EQ(outcome.output.find("allocate"), std::string::npos) << outcome.output;
  }
  EXPECT_FALSE(fs::exists(fs::temp_directory_path() / "never-written.sqlite"));
  Outcome synthetic = check_with("--set data.image_size=4096");  // tiny data, tiny network, batch 16
  EXPECT_EQ(synthetic.exit_code, 2) << synthetic.output;
  EXPECT_NE(synthetic.output.find("training.batch_size: a training step needs about"), std::string::npos)
      << synthetic.output;
  EXPECT_NE(synthetic.output.find("extrapolated from sides 128 and 64"), std::string::npos) << synthetic.output;
}

// Where oneDNN has no bf16 convolutions (below AVX-512; forced here with ONEDNN_MAX_CPU_ISA=AVX2),
// precision "bf16" is a bad input naming the key, and "auto" picks fp32 and says so; where it
// computes bf16 natively, auto picks bf16.
TEST(Check, PrecisionFollowsWhatTheCpuCanDo) {
  Outcome bf16 = difflab_command("check " + tiny_experiment() + " --set experiment.precision=bf16",
                                 "ONEDNN_MAX_CPU_ISA=AVX2");
  EXPECT_EQ(bf16.exit_code, 2) << bf16.output;
  EXPECT_NE(bf16.output.find("experiment.precision: precision \"bf16\": this CPU has no bf16 convolutions"),
            std::string::npos)
      << bf16.output;
  Outcome automatic = difflab_command("check " + tiny_experiment() + " --set experiment.precision=auto",
                                      "ONEDNN_MAX_CPU_ISA=AVX2");
  EXPECT_EQ(automatic.exit_code, 0) << automatic.output;
  EXPECT_NE(automatic.output.find("# precision here: fp32 (auto: this CPU has no native bf16 (none))"),
            std::string::npos)
      << automatic.output;
  const difflab::Bf16Support support = difflab::cpu_bf16_support();
  if (support == difflab::Bf16Support::amx || support == difflab::Bf16Support::avx512_bf16) {
    Outcome here = difflab_command("check " + tiny_experiment() + " --set experiment.precision=auto");
    EXPECT_NE(here.output.find("# precision here: bf16 (auto: this CPU computes bf16 natively"), std::string::npos)
        << here.output;
  }
}

TEST(Check, RefusesNetworksThatCannotFitBeforeAllocatingThem) {
  for (const auto& [set, message] : std::vector<std::pair<std::string, std::string>>{
           {"--set network.widths=[32,64,96,100000]", "network.widths: the network needs at least"},
           {"--set network.embedding_dims=100000000", "network.embedding_dims: the network needs at least"},
           {"--set network.widths=[4096,8192] --set network.block_depth=40", "network.block_depth: the network needs"},
           {"--set network.block_depth=100000", "network.block_depth: value 100000 is out of range: expected in [1, 64]"},
           {"--set network.plugin=unet --set network.widths=[64,100000] --set network.attention_resolutions=[]",
            "network.widths: the network needs at least"}}) {
    Outcome outcome = check_with(set);
    EXPECT_EQ(outcome.exit_code, 2) << set << "\n" << outcome.output;
    EXPECT_NE(outcome.output.find(message), std::string::npos) << set << "\n" << outcome.output;
  }
}

TEST(Check, RefusesNonFiniteAndAbsurdTrainingSettings) {
  Outcome infinite = check_with("--set training.learning_rate=inf");
  EXPECT_EQ(infinite.exit_code, 2) << infinite.output;
  EXPECT_NE(infinite.output.find("training.learning_rate: value inf is not a finite number"), std::string::npos)
      << infinite.output;
  Outcome huge = check_with("--set training.batch_size=9223372036854775807");
  EXPECT_EQ(huge.exit_code, 2) << huge.output;
  EXPECT_NE(huge.output.find("training.batch_size: value 9223372036854775807 is out of range"), std::string::npos)
      << huge.output;
}

TEST(Check, FindsAValidationSplitTooSmallForKidBeforeTraining) {
  difflab::test::TempDir dir;
  Outcome check = check_with("--set data.validation_count=8");  // batch_size is 16
  EXPECT_EQ(check.exit_code, 2) << check.output;
  EXPECT_NE(check.output.find("evaluation.kid_protocol: KID compares batches of batch_size 16 images, and the "
                              "validation split has 8"),
            std::string::npos)
      << check.output;
  Outcome run = difflab_command("run " + tiny_experiment() + " --set data.validation_count=8 --set experiment.database=" +
                                (dir / "results.sqlite").string() + " --set experiment.output_dir=" + (dir / "runs").string());
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));  // before anything is written
}

TEST(Check, ReadsStrictImageFoldersSoAnUnreadableFileIsFoundByCheck) {
  difflab::test::TempDir dir;
  fs::create_directories(dir / "images");
  torch::manual_seed(0);
  for (int i = 0; i < 40; ++i)
    difflab::write_image(dir / "images" / ("image-" + std::to_string(i) + ".png"), torch::rand({1, 16, 16}));
  std::ofstream(dir / "images" / "broken.png") << "not a PNG at all";
  Outcome check = check_with("--set data.plugin=image_folder --set data.path=" + (dir / "images").string() +
                             " --set data.strict=true --set data.validation_fraction=0.5 --set data.cache_dir=" +
                             (dir / "cache").string());
  EXPECT_EQ(check.exit_code, 2) << check.output;
  EXPECT_NE(check.output.find("broken.png"), std::string::npos) << check.output;
}

TEST(Plugins, ATorchScriptNetworkWithoutParametersIsAnInputErrorWithoutABacktrace) {
  if (std::system("/usr/bin/python3 -c 'import torch' 2> /dev/null") != 0) GTEST_SKIP() << "no python3-torch";
  difflab::test::TempDir dir;
  const std::string exported = (dir / "constant.pt").string();
  const std::string script =
      "import torch\n"
      "class Constant(torch.nn.Module):\n"
      "    def forward(self, noisy_images, noise_variances):\n"
      "        return noisy_images * 0\n"
      "torch.jit.script(Constant()).save('" + exported + "')\n";
  std::ofstream(dir / "export.py") << script;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + (dir / "export.py").string()).c_str()), 0);
  Outcome outcome = difflab_command(quick_run(dir.path(), " --set network.plugin=torchscript --set network.model=" + exported));
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("network.model: network plugin \"torchscript\": the TorchScript module has no "
                                "parameters to train"),
            std::string::npos)
      << outcome.output;
  EXPECT_EQ(outcome.output.find("Exception raised from"), std::string::npos) << outcome.output;  // no C++ backtrace
  EXPECT_FALSE(fs::exists(dir / "results.sqlite"));
}

TEST(Plugins, ACheckpointMeansTheSameFilesFromAnyFolder) {
  difflab::test::TempDir dir;
  fs::create_directories(dir / "images");
  torch::manual_seed(1);
  for (int i = 0; i < 48; ++i)
    difflab::write_image(dir / "images" / ("image-" + std::to_string(i) + ".png"), torch::rand({1, 16, 16}));
  // Trained from `dir` with a relative data.path ...
  Outcome trained = difflab::test::shell_command(
      "cd " + dir.path().string() + " && " + DIFFLAB_TEST_EXECUTABLE + " " +
      quick_run(dir.path(), " --set data.plugin=image_folder --set data.path=images --set data.channels=1"
                            " --set data.cache=false --set data.validation_fraction=0.4"));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  // ... and sampled from its checkpoint in another folder.
  Outcome sampled = difflab::test::shell_command("cd / && " + std::string(DIFFLAB_TEST_EXECUTABLE) + " sample --checkpoint " +
                                                 (run_folder(dir.path()) / "checkpoint.pt").string() +
                                                 " --num-images 2 --steps 2 --grid " + (dir / "grid.png").string());
  EXPECT_EQ(sampled.exit_code, 0) << sampled.output;
  EXPECT_TRUE(fs::exists(dir / "grid.png"));
}

TEST(FullDisks, AFullDatabaseFilesystemIsAnErrorNamingTheDatabase) {
  if (!in_mount_namespace_possible()) GTEST_SKIP() << "unshare -m is not permitted here (needs root)";
  difflab::test::TempDir dir;
  fs::create_directories(dir / "db");
  const std::string database = (dir / "db" / "results.sqlite").string();
  for (const char* size : {"40k", "160k"}) {  // full before the run row, or after some epoch rows
    Outcome full = difflab::test::shell_command(
        "unshare -m sh -c 'mount -t tmpfs -o size=" + std::string(size) + " tmpfs " + (dir / "db").string() + " && " +
        DIFFLAB_TEST_EXECUTABLE + " " + quick_run(dir.path(), " --set training.epochs=2 --set experiment.database=" + database) +
        "; echo exit=$?'");
    EXPECT_NE(full.output.find("exit=1"), std::string::npos) << size << "\n" << full.output;
    EXPECT_NE(full.output.find(database + ": "), std::string::npos) << size << "\n" << full.output;
    EXPECT_NE(full.output.find("database or disk is full"), std::string::npos) << size << "\n" << full.output;
  }
}

TEST(Check, RefusesABatchWhoseActivationsCannotFit) {
  Outcome outcome = check_with("--set training.batch_size=100000 --set data.train_count=100000 "
                               "--set evaluation.kid_protocol=none --set network.widths=[64,128]");
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("training.batch_size: a training step needs about"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("× batch_size 100000"), std::string::npos) << outcome.output;
}

TEST(FullDisks, AGridThatCouldNotBeWrittenIsNotRecordedAsAnArtifact) {
  difflab::test::TempDir dir;
  const std::string rerun = killed_after(dir.path(), 1);
  fs::create_directory(run_folder(dir.path()) / "epoch-002.png");  // the grid's path is taken
  Outcome outcome = difflab_command(rerun);
  EXPECT_EQ(outcome.exit_code, 1) << outcome.output;
  EXPECT_NE(outcome.output.find("epoch-002.png: cannot write the file"), std::string::npos) << outcome.output;
  SQLite::Database db((dir / "results.sqlite").string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM artifacts WHERE kind = 'sample_grid'").getInt(), 1);  // epoch 1's
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM artifacts WHERE path LIKE '%epoch-002.png'").getInt(), 0);
}
