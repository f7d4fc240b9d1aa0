#include "sweep/processes.h"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "difflab/error.h"
#include "process/stop_request.h"

namespace difflab {

void start_child(Child& child, const std::vector<std::string>& arguments,
                 const std::vector<std::pair<std::string, std::string>>& environment) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw RuntimeError(std::string("pipe: ") + std::strerror(errno));
  std::vector<std::string> words = {"difflab"};
  words.insert(words.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) throw RuntimeError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    reset_stop_signals();
    for (const auto& [name, value] : environment) setenv(name.c_str(), value.c_str(), 1);
    execv("/proc/self/exe", argv.data());
    std::fprintf(stderr, "difflab: cannot start %s: %s\n", child.label.c_str(), std::strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  child.pid = pid;
  child.output = fds[0];
}

void forward_output(Child& child, bool final) {
  char buffer[4096];
  while (true) {
    const ssize_t count = read(child.output, buffer, sizeof(buffer));
    if (count > 0) {
      child.partial.append(buffer, static_cast<size_t>(count));
      size_t newline;
      while ((newline = child.partial.find('\n')) != std::string::npos) {
        fmt::print("[{}] {}\n", child.label, child.partial.substr(0, newline));
        child.partial.erase(0, newline + 1);
      }
      std::fflush(stdout);
      if (!final) return;
      continue;
    }
    if (count < 0 && errno == EINTR) continue;
    if (final && !child.partial.empty()) fmt::print("[{}] {}\n", child.label, child.partial);
    if (final) child.partial.clear();
    return;
  }
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
    port = ntohs(address.sin_port);
  close(fd);
  if (port == 0) throw RuntimeError(std::string("no free TCP port for the rendezvous: ") + std::strerror(errno));
  return port;
}

int launch_ranks(int64_t nproc, const std::vector<std::string>& arguments, double grace_seconds) {
  const std::string port = std::to_string(free_port());
  std::vector<Child> ranks(static_cast<size_t>(nproc));
  const StopRequest stop_request;  // passed on to every rank
  for (int64_t rank = 0; rank < nproc; ++rank) {
    Child& child = ranks[static_cast<size_t>(rank)];
    child.label = fmt::format("rank {}", rank);
    start_child(child, arguments,
                {{"RANK", std::to_string(rank)}, {"LOCAL_RANK", std::to_string(rank)},
                 {"WORLD_SIZE", std::to_string(nproc)}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}});
  }
  std::vector<int> codes(ranks.size(), -1);
  std::optional<int> first_failure;
  std::chrono::steady_clock::time_point failed_at;
  bool forwarded = false, stopped = false;
  auto running = [&] { return std::any_of(ranks.begin(), ranks.end(), [](const Child& c) { return c.pid > 0; }); };
  while (running()) {
    if (StopRequest::requested() && !forwarded) {
      forwarded = true;
      for (const auto& child : ranks)
        if (child.pid > 0) kill(child.pid, StopRequest::signal());
    }
    if (first_failure && !stopped &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - failed_at).count() > grace_seconds) {
      stopped = true;
      for (const auto& child : ranks)
        if (child.pid > 0) {
          fmt::print(stderr, "difflab: {} still running {:.0f} s after a rank failed; stopping it\n", child.label,
                     grace_seconds);
          kill(child.pid, SIGTERM);
        }
    }
    std::vector<pollfd> fds;
    for (const auto& child : ranks) fds.push_back({child.pid > 0 ? child.output : -1, POLLIN, 0});
    if (poll(fds.data(), fds.size(), 200) > 0)
      for (size_t i = 0; i < ranks.size(); ++i)
        if (fds[i].revents & POLLIN) forward_output(ranks[i], false);
    for (size_t i = 0; i < ranks.size(); ++i) {
      Child& child = ranks[i];
      int status = 0;
      if (child.pid <= 0 || waitpid(child.pid, &status, WNOHANG) != child.pid) continue;
      forward_output(child, true);
      close(child.output);
      child.pid = -1;
      codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (!WIFEXITED(status))
        fmt::print(stderr, "difflab: {} was killed by signal {}\n", child.label, WTERMSIG(status));
      if (codes[i] != 0 && !first_failure) {
        first_failure = codes[i];
        failed_at = std::chrono::steady_clock::now();
      }
    }
  }
  if (codes.front() != 0) return codes.front();
  return first_failure.value_or(0);
}

}  // namespace difflab
