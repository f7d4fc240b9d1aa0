// difflab k8s: the Indexed Job manifest, read back with a real YAML parser (Python's yaml), and
// its task contract: the manifest's own command, run with JOB_COMPLETION_INDEX as Kubernetes sets
// it, trains each index's points into the sweep folder. No cluster: what this cannot show (the
// scheduler, the volume, kubectl) is listed in docs/cluster.md.
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "cluster/kubernetes.h"
#include "cluster/sweep_helpers.h"

namespace fs = std::filesystem;
using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::TempDir;
using namespace difflab::test::sweeps;

namespace {

// The manifest's fields as Python's yaml.safe_load reads them, one "key=value" a line (the
// command shell-quoted); skipped with the reason when Python's yaml is not installed.
std::map<std::string, std::string> parse_job(const fs::path& yaml, std::string* skip) {
  const std::string script =
      "import json, shlex, sys, yaml\n"
      "docs = list(yaml.safe_load_all(open(sys.argv[1])))\n"
      "job = docs[0]\n"
      "spec = job['spec']; pod = spec['template']['spec']; box = pod['containers'][0]\n"
      "print('documents=%d' % len(docs))\n"
      "print('apiVersion=' + job['apiVersion']); print('kind=' + job['kind'])\n"
      "print('name=' + job['metadata']['name'])\n"
      "print('completionMode=' + spec['completionMode'])\n"
      "print('completions=%d' % spec['completions']); print('parallelism=%d' % spec['parallelism'])\n"
      "print('backoffLimit=%d' % spec['backoffLimit'])\n"
      "print('restartPolicy=' + pod['restartPolicy'])\n"
      "print('image=' + box['image']); print('workingDir=' + box['workingDir'])\n"
      "print('command=' + shlex.join(box['command']))\n"
      "print('cpu=' + str(box['resources']['limits']['cpu']))\n"
      "mount = box['volumeMounts'][0]; volume = pod['volumes'][0]\n"
      "print('mount=' + mount['name'] + ':' + mount['mountPath'])\n"
      "print('volume=' + volume['name'] + ':' + volume['persistentVolumeClaim']['claimName'])\n";
  std::ofstream(yaml.parent_path() / "read_job.py") << script;
  const Outcome have = difflab::test::shell_command("/usr/bin/python3 -c 'import yaml'");
  if (have.exit_code != 0) {
    *skip = "Python's yaml is not installed (apt-get install python3-yaml): " + have.output;
    return {};
  }
  const Outcome read = difflab::test::shell_command("/usr/bin/python3 " + (yaml.parent_path() / "read_job.py").string() + " " +
                                                    yaml.string());
  EXPECT_EQ(read.exit_code, 0) << read.output;
  std::map<std::string, std::string> fields;
  std::istringstream lines(read.output);
  for (std::string line; std::getline(lines, line);)
    if (const size_t equals = line.find('='); equals != std::string::npos)
      fields[line.substr(0, equals)] = line.substr(equals + 1);
  return fields;
}

}  // namespace

TEST(Kubernetes, TheIndexedJobManifestParsesAndItsCommandTrainsEachIndex) {
  TempDir dir;
  const Outcome written = difflab_command(
      "k8s " + tiny_sweep(dir, "seeds = [1, 2, 3]",
                          " --runs-per-task 2 --array-parallelism 1 --cpus-per-task 1 --image registry.local/difflab:1 "
                          "--claim sweeps-pvc --executable " + std::string(DIFFLAB_TEST_EXECUTABLE)));
  ASSERT_EQ(written.exit_code, 0) << written.output;
  const fs::path folder = folder_of(written.output);
  EXPECT_EQ(folder.parent_path(), dir / "runs" / "k8s");
  const fs::path yaml = folder / "submit-001" / "job.yaml";
  ASSERT_TRUE(fs::is_regular_file(yaml)) << written.output;
  EXPECT_FALSE(fs::exists(folder / "submit-001" / "job_id"));  // written, not applied

  std::string skip;
  std::map<std::string, std::string> job = parse_job(yaml, &skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  EXPECT_EQ(job["documents"], "1");
  EXPECT_EQ(job["apiVersion"], "batch/v1");
  EXPECT_EQ(job["kind"], "Job");
  EXPECT_TRUE(std::regex_match(job["name"], std::regex("difflab-tiny-[0-9a-f]{8}-1"))) << job["name"];
  EXPECT_EQ(job["completionMode"], "Indexed");
  EXPECT_EQ(job["completions"], "2");  // three points, two a task
  EXPECT_EQ(job["parallelism"], "1");
  EXPECT_EQ(job["backoffLimit"], "6");
  EXPECT_EQ(job["restartPolicy"], "Never");
  EXPECT_EQ(job["image"], "registry.local/difflab:1");
  EXPECT_EQ(job["cpu"], "1");
  EXPECT_EQ(job["mount"], "sweep:" + folder.string());
  EXPECT_EQ(job["volume"], "sweep:sweeps-pvc");
  EXPECT_EQ(job["command"], std::string(DIFFLAB_TEST_EXECUTABLE) + " sweep task " + folder.string() + " --submission 1");

  // The contract: what each pod runs, with the index Kubernetes gives it, in the Job's workingDir.
  for (const char* index : {"1", "0"}) {
    const Outcome task = difflab::test::shell_command("cd " + job["workingDir"] + " && JOB_COMPLETION_INDEX=" + index +
                                                      " " + job["command"]);
    ASSERT_EQ(task.exit_code, 0) << task.output;
    EXPECT_NE(task.output.find(std::string("task ") + index + " start"), std::string::npos) << task.output;
  }
  const Outcome status = difflab_command("sweep status " + folder.string());
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("3 finished"), std::string::npos) << status.output;
  const Outcome collected = difflab_command("sweep collect " + folder.string());
  ASSERT_EQ(collected.exit_code, 0) << collected.output;
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), 3);
  // Written again: everything finished, nothing to submit.
  const Outcome again = difflab_command("k8s " + tiny_sweep(dir, "seeds = [1, 2, 3]"));
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("nothing to submit"), std::string::npos) << again.output;
}

// A tpe + asha sweep as an Indexed Job: the manifest holds the space, not the points (the job has
// one completion a trial); the pods, run two at a time with the index Kubernetes gives them, each
// propose their trial from the shards on the volume and record it in their own before training.
// A pod run again (Kubernetes retries a failed pod) resumes its proposal. Collected, replay agrees.
TEST(Kubernetes, ATpeSweepsPodsProposeTheirTrialsFromTheVolumesShards) {
  TempDir dir;
  const std::string sweep =
      "sampler = \"tpe\"\npruner = \"asha\"\ntrials = 6\nseed = 5\nrandom_trials = 2\nmetric = \"val_n_loss\"\n"
      "min_epochs = 1\nreduction_factor = 2\n\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }";
  const Outcome written = difflab_command("k8s " + tiny_sweep(dir, sweep, " --set training.epochs=2 --set "
                                                                          "evaluation.kid_protocol=none --executable " +
                                                                              std::string(DIFFLAB_TEST_EXECUTABLE)));
  ASSERT_EQ(written.exit_code, 0) << written.output;
  const fs::path folder = folder_of(written.output);
  EXPECT_NE(read_text(folder / "manifest.toml").find("search_text"), std::string::npos);
  EXPECT_NE(read_text(folder / "submit-001" / "job.yaml").find("completions: 6"), std::string::npos);
  const Outcome before = difflab_command("sweep status " + folder.string());
  EXPECT_NE(before.output.find("6 not proposed"), std::string::npos) << before.output;
  const std::string command = std::string(DIFFLAB_TEST_EXECUTABLE) + " sweep task " + folder.string() + " --submission 1";
  for (int pair = 0; pair < 3; ++pair) {
    const Outcome pods = difflab::test::shell_command(fmt::format(
        "JOB_COMPLETION_INDEX={} {} > {} 2>&1 & JOB_COMPLETION_INDEX={} {} > {} 2>&1; wait", 2 * pair, command,
        (dir / fmt::format("pod{}.log", 2 * pair)).string(), 2 * pair + 1, command,
        (dir / fmt::format("pod{}.log", 2 * pair + 1)).string()));
    ASSERT_EQ(pods.exit_code, 0) << pods.output;
  }
  for (int pod = 0; pod < 6; ++pod) {
    const std::string log = read_text(dir / fmt::format("pod{}.log", pod));
    EXPECT_EQ(occurrences(log, "proposed by tpe"), 1u) << log;
  }
  // A pod of index 3 run again: its trial finished or was pruned; it proposes nothing.
  const Outcome again = difflab::test::shell_command("JOB_COMPLETION_INDEX=3 " + command);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(occurrences(again.output, "proposed by tpe"), 0u) << again.output;
  const Outcome status = difflab_command("sweep status " + folder.string());
  EXPECT_EQ(status.output.find("not proposed"), std::string::npos) << status.output;
  ASSERT_EQ(difflab_command("sweep collect " + folder.string()).exit_code, 0);
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(*) FROM proposals"), 6);
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(*) FROM proposals WHERE random = 0"), 4);
  EXPECT_EQ(count(dir / "results.sqlite", "SELECT COUNT(DISTINCT config_hash) FROM runs"), 6);
  const Outcome replay = difflab_command("sweep replay " + (dir / "results.sqlite").string());
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("6 of 6 proposals agree"), std::string::npos) << replay.output;
}

// --apply hands the written job to kubectl: without kubectl, or with no cluster behind it (an empty
// kubeconfig, so that a machine with a real cluster configured is never touched), a runtime
// error naming the job file, which stays for kubectl apply by hand.
TEST(Kubernetes, ApplyWithoutAClusterIsAClearErrorAndKeepsTheJobFile) {
  TempDir dir;
  std::ofstream(dir / "kubeconfig") << "";
  const bool have_kubectl = difflab::test::shell_command("command -v kubectl").exit_code == 0;
  const Outcome applied = difflab_command("k8s " + tiny_sweep(dir, "seeds = [1, 2]") + " --apply",
                                          "KUBECONFIG=" + (dir / "kubeconfig").string());
  EXPECT_EQ(applied.exit_code, 1) << applied.output;
  EXPECT_NE(applied.output.find(have_kubectl ? "kubectl apply failed" : "kubectl not found"), std::string::npos)
      << applied.output;
  EXPECT_NE(applied.output.find("/submit-001/job.yaml"), std::string::npos) << applied.output;
  const fs::path folder = fs::directory_iterator(dir / "runs" / "k8s")->path();
  EXPECT_TRUE(fs::is_regular_file(folder / "submit-001" / "job.yaml"));
  EXPECT_FALSE(fs::exists(folder / "submit-001" / "job_id"));  // nothing was submitted
}

// RFC 1123 labels (lowercase letters, digits, '-', at most 63, alphanumeric at both ends), whatever
// the experiment is called.
TEST(Kubernetes, JobNamesAreRfc1123Labels) {
  EXPECT_EQ(difflab::kubernetes_job_name("Flowers DDIM_v2", "0123456789abcdef", 3), "difflab-flowers-ddim-v2-01234567-3");
  EXPECT_EQ(difflab::kubernetes_job_name("__", "0123456789abcdef", 1), "difflab-sweep-01234567-1");
  const std::regex label("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  for (const std::string& name : {std::string(100, 'A') + "--", std::string("ä ö ü"), std::string("x")}) {
    const std::string job = difflab::kubernetes_job_name(name, "fedcba9876543210", 12);
    EXPECT_LE(job.size(), 63u) << job;
    EXPECT_TRUE(std::regex_match(job, label)) << job;
  }
}

// Synchronous successive halving needs a job that starts after another, which a Kubernetes Job
// cannot ask for: exit 2 naming the key, with nothing written.
TEST(Kubernetes, SuccessiveHalvingIsRefusedNamingTheKeyAndWritesNothing) {
  TempDir dir;
  const Outcome refused = difflab_command(
      "k8s " + tiny_sweep(dir, "method = \"successive_halving\"\ntrials = 4\nmetric = \"val_n_loss\"\nmin_epochs = 1\n"
                               "\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }",
                          " --set training.epochs=4 --set evaluation.kid_protocol=none"));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("sweep.toml:"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("sweep.method"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("difflab slurm FILE"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(dir / "runs"));
}
