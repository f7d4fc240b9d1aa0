// A real single-node Slurm cluster for one test (../shared/slurm_local.md): munged on a socket of
// its own, slurmctld and slurmd with a configuration, state and logs in a temporary folder, on
// free ports, so that tests running at once never share one. Stopped by the pids in their pid
// files when the test ends. Where it cannot start (not root, Slurm or munge not installed, the
// daemons do not come up), skip_reason() says why.
#pragma once

#include <chrono>
#include <csignal>
#include <fmt/format.h>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>

#include "sweep/processes.h"
#include "test_support.h"

namespace difflab::test {

class SlurmCluster {
 public:
  SlurmCluster() {
    if (geteuid() != 0) {
      skip_reason_ = "a local Slurm runs its daemons as root, and this test is not root";
      return;
    }
    for (const char* program : {"munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel"})
      if (shell_command(std::string("command -v ") + program).exit_code != 0) {
        skip_reason_ = fmt::format("{} is not installed (tools/install_deps.sh installs slurm-wlm and munge)", program);
        return;
      }
    if (!std::filesystem::exists("/etc/munge/munge.key")) {
      skip_reason_ = "/etc/munge/munge.key is missing (installing munge creates it)";
      return;
    }
    const auto d = dir_.path();
    std::filesystem::create_directories(d / "state");
    std::filesystem::create_directories(d / "spool");
    std::string host = shell_command("hostname -s").output;
    host = host.substr(0, host.find('\n'));
    const int controller_port = difflab::free_port(), node_port = difflab::free_port();
    std::ofstream(d / "slurm.conf") << fmt::format(
        "ClusterName=difflab-test\nSlurmctldHost={host}\nSlurmUser=root\nSlurmctldPort={cp}\nSlurmdPort={np}\n"
        "AuthType=auth/munge\nAuthInfo=socket={d}/munge.socket\nStateSaveLocation={d}/state\n"
        "SlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n"
        "SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\nProctrackType=proctrack/linuxproc\n"
        "TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
        "NodeName={host} CPUs={cpus} RealMemory=4000 State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        "AccountingStorageType=accounting_storage/none\nReturnToService=2\n",
        fmt::arg("host", host), fmt::arg("cp", controller_port), fmt::arg("np", node_port), fmt::arg("d", d.string()),
        fmt::arg("cpus", std::thread::hardware_concurrency()));
    conf_ = (d / "slurm.conf").string();
    const Outcome munge = shell_command(fmt::format(
        "munged --socket={0}/munge.socket --pid-file={0}/munged.pid --log-file={0}/munged.log "
        "--seed-file={0}/munge.seed --force", d.string()));
    if (munge.exit_code != 0) {
      skip_reason_ = "munged did not start: " + munge.output;
      return;
    }
    const Outcome controller = command("slurmctld -f " + conf_);
    const Outcome node = command("slurmd -f " + conf_);
    if (controller.exit_code != 0 || node.exit_code != 0) {
      skip_reason_ = "slurmctld or slurmd did not start: " + controller.output + node.output + logs();
      return;
    }
    for (int i = 0; i < 150; ++i) {
      if (command("sinfo --noheader --format=%t").output.rfind("idle", 0) == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    skip_reason_ = "the node did not become idle within 30 s: " + command("sinfo").output + logs();
  }

  ~SlurmCluster() {
    if (!conf_.empty()) {  // no job left behind: its tasks end before their daemons do
      command("scancel --full --quiet --user=root");
      for (int i = 0; i < 100 && !command("squeue --noheader").output.empty(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (const char* daemon : {"slurmd", "slurmctld", "munged"}) stop((dir_.path() / (std::string(daemon) + ".pid")));
  }

  const std::string& skip_reason() const { return skip_reason_; }
  // "SLURM_CONF=..." for a command line's environment.
  std::string environment() const { return "SLURM_CONF=" + conf_; }
  Outcome command(const std::string& line) const { return shell_command("env " + environment() + " " + line); }

  // Waits until `job` has left the queue; false after `seconds`.
  bool wait_until_done(const std::string& job, double seconds) const {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (command("squeue --noheader --jobs=" + job).output.empty()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return false;
  }

  // Waits until `log` says that the requeued array element runs again ("restart 1)"), at most
  // 120 s, releasing Slurm's hold on it (reason BeginTime: about two minutes after a requeue) 1.5 s
  // after the hold is first seen. Released at once, it may start in the second of the requeue and be
  // killed as "Job credential revoked" (slurmctld compares the new credential's time with the
  // revocation's in whole seconds). Returns the states the element was seen in.
  std::string restart_requeued(const std::string& element, const std::filesystem::path& log) const {
    std::string states;
    std::optional<std::chrono::steady_clock::time_point> held;
    for (int i = 0; i < 1200 && read_text(log).find("restart 1)") == std::string::npos; ++i) {
      std::string state = command("squeue -h -j " + element + " -o %T:%r").output;
      state = state.substr(0, state.find('\n'));
      if (states.find("[" + state + "]") == std::string::npos) states += "[" + state + "]";
      if (state.find("PENDING:BeginTime") != std::string::npos) {
        if (!held) held = std::chrono::steady_clock::now();
        if (std::chrono::steady_clock::now() - *held > std::chrono::milliseconds(1500))
          command("scontrol update JobId=" + element + " StartTime=now");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return states;
  }

  std::string logs() const {
    return shell_command("tail -n 5 " + (dir_.path() / "slurmctld.log").string() + " " +
                         (dir_.path() / "slurmd.log").string()).output;
  }

 private:
  // SIGTERM to the pid in `pid_file`, SIGKILL after 10 s.
  static void stop(const std::filesystem::path& pid_file) {
    std::ifstream in(pid_file);
    pid_t pid = 0;
    if (!(in >> pid) || pid <= 1) return;
    if (kill(pid, SIGTERM) != 0) return;
    for (int i = 0; i < 100 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (kill(pid, 0) == 0) kill(pid, SIGKILL);
  }

  TempDir dir_;
  std::string conf_;
  std::string skip_reason_;
};

}  // namespace difflab::test
