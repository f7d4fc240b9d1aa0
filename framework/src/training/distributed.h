// Data-parallel training on LibTorch's own communication layer, c10d: a process group (Gloo on
// the CPU, NCCL on CUDA where the LibTorch has it) over a TCPStore rendezvous, and what a run
// needs of it: broadcasts from rank 0, bucketed gradient averaging, small agreed values.
// c10d's headers stay inside distributed.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <torch/types.h>
#include <vector>

#include "difflab/error.h"

namespace difflab {

// An integer environment variable: nothing when unset or empty; a config Error naming it when it
// does not parse.
std::optional<int64_t> environment_integer(const char* name);

// Where this process stands in a job of several, and how the processes find each other.
struct Rendezvous {
  int64_t rank = 0;
  int64_t world = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t port = 0;
  std::string source;  // "torchrun" (RANK, WORLD_SIZE, ...: also difflab run --nproc), "slurm", or ""
};

// From the environment a launcher provides: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT (torchrun; difflab run --nproc); else, with SLURM_NTASKS > 1, SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, the first host of SLURM_JOB_NODELIST and a port derived from
// SLURM_JOB_ID (so that two jobs on one node never share one); else a world of one. Throws a
// config Error naming the variable for a value that does not parse.
Rendezvous rendezvous_from_environment();

// The first host name of a Slurm node list: "node[03-05,07],gpu1" -> "node03".
std::string first_slurm_host(const std::string& nodelist);

struct DistributedOptions {
  std::string backend = "auto";     // gloo | nccl | auto (nccl on CUDA when available, else gloo)
  double timeout_seconds = 300.0;   // a collective waits this long for a missing rank
  bool sync_batchnorm_statistics = false;  // average BatchNorm running statistics after each step
                                           // (default: rank 0's are broadcast, as DDP does)
  int64_t bucket_bytes = 4 << 20;   // gradients are averaged in buckets of about this size
};

class ProcessGroup {
 public:
  // Joins the group (rank 0 serves the TCPStore). Throws a runtime Error naming the address
  // when the others do not come within the timeout.
  ProcessGroup(const Rendezvous& rendezvous, const DistributedOptions& options, torch::Device device);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const;
  int64_t world() const;
  int64_t local_rank() const;  // this process's GPU on its node
  const std::string& backend() const;
  const DistributedOptions& options() const;

  // Rank 0's values into every rank's tensors (in place; any dtype, CPU or the group's device).
  void broadcast(std::vector<torch::Tensor> tensors);
  // Every rank's gradients of `parameters` averaged in place: flattened into buckets of about
  // bucket_bytes, each allreduced (summed), waited for, and only then divided by the world size.
  void average_gradients(const std::vector<torch::Tensor>& parameters);
  // The mean over the ranks, in place.
  void average(std::vector<torch::Tensor> tensors);
  // The largest of the ranks' values (an agreed "stop" flag: any rank interrupted).
  int64_t max(int64_t value);
  // Rank 0's text, on every rank (through the store, under a fresh key each call).
  std::string share(const std::string& text);
  // Rank 0's default CPU generator state (and CUDA's, on CUDA) on every rank.
  void share_random_state();

  // An exception from a collective, as the message of the PeersLost to throw: which rank is gone
  // (when its process can be checked: same host).
  std::string describe_failure(const std::exception& error) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A collective failed because other ranks of the run are gone: the run is closed as interrupted
// (RunStatus), so that the same command resumes it; the exit code is a failure's (1).
class PeersLost : public Error {
 public:
  explicit PeersLost(std::string message) : Error(ErrorKind::runtime, std::move(message)) {}
};

// Whether this difflab was built with c10d (Gloo); without it a world of more than one is an
// error that says so.
bool distributed_available();

}  // namespace difflab
