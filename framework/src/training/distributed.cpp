#include "training/distributed.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "difflab/error.h"
#include "results/results_store.h"

namespace difflab {
std::optional<int64_t> environment_integer(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (*end != '\0')
    throw ConfigError(fmt::format("the environment variable {} is \"{}\", not an integer", name, text));
  return value;
}

namespace {

std::string environment_text(const char* name, const std::string& otherwise) {
  const char* text = std::getenv(name);
  return text != nullptr && *text != '\0' ? text : otherwise;
}

// A process that is not there, or a zombie (dead, not yet waited for by its launcher).
bool process_gone(int64_t pid) {
  if (kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // "node[03-05,07],gpu1": the first name, with the first number of its bracket.
  const size_t comma = nodelist.find(',');
  const size_t bracket = nodelist.find('[');
  if (bracket == std::string::npos || (comma != std::string::npos && comma < bracket))
    return nodelist.substr(0, comma);
  const size_t end = nodelist.find_first_of(",-]", bracket + 1);
  return nodelist.substr(0, bracket) + nodelist.substr(bracket + 1, end - bracket - 1);
}

Rendezvous rendezvous_from_environment() {
  Rendezvous rendezvous;
  if (auto world = environment_integer("WORLD_SIZE")) {
    rendezvous.source = "torchrun";
    rendezvous.world = *world;
    rendezvous.rank = environment_integer("RANK").value_or(0);
    rendezvous.local_rank = environment_integer("LOCAL_RANK").value_or(rendezvous.rank);
    rendezvous.master_addr = environment_text("MASTER_ADDR", "127.0.0.1");
    rendezvous.port = environment_integer("MASTER_PORT").value_or(29500);
  } else if (auto tasks = environment_integer("SLURM_NTASKS"); tasks && *tasks > 1) {
    rendezvous.source = "slurm";
    rendezvous.world = *tasks;
    rendezvous.rank = environment_integer("SLURM_PROCID").value_or(0);
    rendezvous.local_rank = environment_integer("SLURM_LOCALID").value_or(0);
    rendezvous.master_addr = first_slurm_host(environment_text("SLURM_JOB_NODELIST", "127.0.0.1"));
    // A port of the job's own: two jobs sharing a node never meet.
    rendezvous.port = 20000 + environment_integer("SLURM_JOB_ID").value_or(0) % 20000;
  }
  if (rendezvous.world < 1 || rendezvous.rank < 0 || rendezvous.rank >= rendezvous.world)
    throw ConfigError(fmt::format("rank {} of a world of {} (from the {} environment)", rendezvous.rank,
                                  rendezvous.world, rendezvous.source));
  if (rendezvous.world > 1 && (rendezvous.port < 1 || rendezvous.port > 65535))
    throw ConfigError(fmt::format("rendezvous port {} is not a TCP port", rendezvous.port));
  return rendezvous;
}

#ifdef USE_C10D_GLOO

bool distributed_available() { return true; }

// LibTorch 2 splits c10d's process groups into a ProcessGroup of backends; the collectives used
// here have the same signatures on either.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveGroup = c10d::Backend;
#else
using CollectiveGroup = c10d::ProcessGroup;
#endif

struct ProcessGroup::Impl {
  Rendezvous rendezvous;
  DistributedOptions options;
  torch::Device device = torch::kCPU;
  std::string backend;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CollectiveGroup> group;
  std::vector<std::pair<std::string, int64_t>> members;  // each rank's host and pid
  int64_t shared = 0;

  void wait(const c10::intrusive_ptr<c10d::Work>& work) {
    work->wait(std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000)));
  }
  torch::Tensor on_device(const torch::Tensor& tensor) const {
    return backend == "nccl" ? tensor.to(device) : tensor.cpu();
  }
};

ProcessGroup::ProcessGroup(const Rendezvous& rendezvous, const DistributedOptions& options, torch::Device device)
    : impl_(std::make_unique<Impl>()) {
  Impl& impl = *impl_;
  impl.rendezvous = rendezvous;
  impl.options = options;
  impl.device = device;
  impl.backend = options.backend == "auto" ? (device.is_cuda() ? "nccl" : "gloo") : options.backend;
#ifndef USE_C10D_NCCL
  if (impl.backend == "nccl")
    throw ConfigError("backend nccl: this difflab's LibTorch has no NCCL (a CUDA LibTorch has it)",
                      ErrorContext::with_hint("use --backend gloo"));
#endif
  if (impl.backend != "gloo" && impl.backend != "nccl")
    throw ConfigError("unknown backend \"" + options.backend + "\"", ErrorContext::with_hint("gloo, nccl or auto"));
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000));
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(rendezvous.port);
    store_options.isServer = rendezvous.rank == 0;
    store_options.numWorkers = static_cast<size_t>(rendezvous.world);
    store_options.timeout = timeout;
    impl.store = c10::make_intrusive<c10d::TCPStore>(rendezvous.master_addr, store_options);
  } catch (const std::exception& error) {
    throw RuntimeError(fmt::format("rank {}: no rendezvous with the other {} ranks at {}:{} within {} s: {}",
                                   rendezvous.rank, rendezvous.world - 1, rendezvous.master_addr, rendezvous.port,
                                   options.timeout_seconds, error.what()));
  }
  // Who is who, for the message when one of them is gone.
  const std::string me = fmt::format("{} {}", host_name(), getpid());
  impl.store->set(fmt::format("member/{}", rendezvous.rank), std::vector<uint8_t>(me.begin(), me.end()));
  for (int64_t rank = 0; rank < rendezvous.world; ++rank) {
    const std::vector<uint8_t> bytes = impl.store->get(fmt::format("member/{}", rank));
    const std::string text(bytes.begin(), bytes.end());
    const size_t space = text.rfind(' ');
    impl.members.emplace_back(text.substr(0, space), std::stoll(text.substr(space + 1)));
  }
#ifdef USE_C10D_NCCL
  if (impl.backend == "nccl") {
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = timeout;
    impl.group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl.store, static_cast<int>(rendezvous.rank),
                                                             static_cast<int>(rendezvous.world), nccl_options);
    return;
  }
#endif
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
  gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  impl.group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl.store, static_cast<int>(rendezvous.rank),
                                                           static_cast<int>(rendezvous.world), gloo_options);
}

ProcessGroup::~ProcessGroup() = default;

int64_t ProcessGroup::rank() const { return impl_->rendezvous.rank; }
int64_t ProcessGroup::world() const { return impl_->rendezvous.world; }
int64_t ProcessGroup::local_rank() const { return impl_->rendezvous.local_rank; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }
const DistributedOptions& ProcessGroup::options() const { return impl_->options; }

void ProcessGroup::broadcast(std::vector<torch::Tensor> tensors) {
  for (auto& tensor : tensors) {
    std::vector<at::Tensor> one{impl_->on_device(tensor.contiguous())};
    impl_->wait(impl_->group->broadcast(one));
    torch::NoGradGuard no_grad;
    tensor.copy_(one.front());
  }
}

void ProcessGroup::average_gradients(const std::vector<torch::Tensor>& parameters) {
  torch::NoGradGuard no_grad;
  const double world = static_cast<double>(this->world());
  std::vector<torch::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    std::vector<torch::Tensor> flat_parts;
    for (const auto& grad : bucket) flat_parts.push_back(grad.reshape({-1}).to(torch::kFloat32));
    std::vector<at::Tensor> flat{impl_->on_device(torch::cat(flat_parts))};
    impl_->wait(impl_->group->allreduce(flat));  // summed; divided once every rank's is in
    flat.front().div_(world);
    int64_t offset = 0;
    for (auto& grad : bucket) {
      const int64_t count = grad.numel();
      grad.copy_(flat.front().slice(0, offset, offset + count).view_as(grad));
      offset += count;
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& parameter : parameters) {
    const torch::Tensor& grad = parameter.grad();
    if (!grad.defined()) continue;
    bucket.push_back(grad);
    bytes += grad.numel() * static_cast<int64_t>(grad.element_size());
    if (bytes >= impl_->options.bucket_bytes) flush();
  }
  flush();
}


void ProcessGroup::average(std::vector<torch::Tensor> tensors) {
  torch::NoGradGuard no_grad;
  for (auto& tensor : tensors) {
    std::vector<at::Tensor> one{impl_->on_device(tensor.to(torch::kFloat64).contiguous())};
    impl_->wait(impl_->group->allreduce(one));
    tensor.copy_(one.front().div_(static_cast<double>(world())));
  }
}

int64_t ProcessGroup::max(int64_t value) {
  std::vector<at::Tensor> one{impl_->on_device(torch::tensor({value}, torch::kInt64))};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  impl_->wait(impl_->group->allreduce(one, options));
  return one.front().cpu().item<int64_t>();
}

std::string ProcessGroup::share(const std::string& text) {
  const std::string key = fmt::format("share/{}", impl_->shared++);
  if (rank() == 0) {
    impl_->store->set(key, std::vector<uint8_t>(text.begin(), text.end()));
    return text;
  }
  const std::vector<uint8_t> bytes = impl_->store->get(key);
  return std::string(bytes.begin(), bytes.end());
}

void ProcessGroup::share_random_state() {
  auto share = [&](at::Generator generator) {
    torch::Tensor state;
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      state = generator.get_state();
    }
    broadcast({state});
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  };
  share(at::detail::getDefaultCPUGenerator());
  if (impl_->device.is_cuda()) share(at::globalContext().defaultGenerator(impl_->device));
}

std::string ProcessGroup::describe_failure(const std::exception& error) const {
  // A rank killed a moment ago may still be exiting (its sockets close before it is a zombie):
  // look again for up to a second.
  std::string gone;
  for (int attempt = 0; attempt < 20 && gone.empty(); ++attempt) {
    if (attempt > 0) usleep(50000);
    for (size_t rank = 0; rank < impl_->members.size(); ++rank) {
      const auto& [host, pid] = impl_->members[rank];
      if (static_cast<int64_t>(rank) == this->rank() || host != host_name()) continue;
      if (process_gone(pid))
        gone += fmt::format("{}rank {} (pid {} on {})", gone.empty() ? "" : ", ", rank, pid, host);
    }
  }
  std::string what = error.what();
  what = what.substr(0, what.find('\n'));
  return fmt::format("interrupted: rank {} lost the other ranks{}: {}", rank(),
                     gone.empty() ? fmt::format(" (none gone on this host; another host's, or one that hung "
                                                "longer than the {} s timeout)", impl_->options.timeout_seconds)
                                  : ": " + gone + " is gone",
                     what);
}

#else  // without c10d

bool distributed_available() { return false; }

struct ProcessGroup::Impl {};

ProcessGroup::ProcessGroup(const Rendezvous&, const DistributedOptions&, torch::Device) {
  throw ConfigError("this difflab was built without c10d (Gloo), so it trains in one process only",
                    ErrorContext::with_hint("install libgloo-dev and build again (tools/install_deps.sh does)"));
}
ProcessGroup::~ProcessGroup() = default;
int64_t ProcessGroup::rank() const { return 0; }
int64_t ProcessGroup::world() const { return 1; }
int64_t ProcessGroup::local_rank() const { return 0; }
const std::string& ProcessGroup::backend() const {
  static const std::string none;
  return none;
}
const DistributedOptions& ProcessGroup::options() const {
  static const DistributedOptions none;
  return none;
}
void ProcessGroup::broadcast(std::vector<torch::Tensor>) {}
void ProcessGroup::average_gradients(const std::vector<torch::Tensor>&) {}
void ProcessGroup::average(std::vector<torch::Tensor>) {}
int64_t ProcessGroup::max(int64_t value) { return value; }
std::string ProcessGroup::share(const std::string& text) { return text; }
void ProcessGroup::share_random_state() {}
std::string ProcessGroup::describe_failure(const std::exception& error) const { return error.what(); }

#endif

}  // namespace difflab
