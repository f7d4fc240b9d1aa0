#include "model/checkpoint.h"

#include <cstring>
#include <fmt/format.h>
#include <sstream>
#include <torch/torch.h>

#include "difflab/cache.h"
#include "difflab/error.h"
#include "difflab/files.h"
#include "process/crash_point.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

constexpr const char* kPayload = "difflab_payload";    // the checkpoint proper, as bytes
constexpr const char* kChecksum = "difflab_checksum";  // FNV-1a 64 of those bytes

// The checkpoint's archive. A checkpoint is an archive holding the serialized state as one byte
// record and its checksum, so that flipped bytes anywhere in the state are found; an older
// checkpoint without them is read as it is.
torch::serialize::InputArchive open_checkpoint(const fs::path& path, torch::Device device) {
  if (!fs::exists(path)) throw ConfigError("checkpoint not found", ErrorContext::in_file(path.string()));
  if (!fs::is_regular_file(path))
    throw RuntimeError("the checkpoint is not a file", ErrorContext::in_file(path.string(), "move it away"));
  try {
    torch::serialize::InputArchive outer;
    outer.load_from(path.string(), torch::kCPU);
    torch::Tensor payload, checksum;
    if (!outer.try_read(kPayload, payload)) {
      torch::serialize::InputArchive archive;
      archive.load_from(path.string(), device);
      return archive;
    }
    if (!outer.try_read(kChecksum, checksum) || payload.scalar_type() != torch::kUInt8 ||
        static_cast<uint64_t>(checksum.item<int64_t>()) !=
            fnv1a(payload.data_ptr<uint8_t>(), static_cast<size_t>(payload.numel())))
      throw CheckpointDamaged("the checkpoint is damaged (its checksum does not match)", path);
    std::istringstream bytes(std::string(reinterpret_cast<const char*>(payload.data_ptr<uint8_t>()),
                                         static_cast<size_t>(payload.numel())));
    torch::serialize::InputArchive archive;
    archive.load_from(bytes, device);
    return archive;
  } catch (const c10::Error& error) {
    throw CheckpointDamaged(std::string("not a readable difflab checkpoint: ") + error.what_without_backtrace(), path);
  }
}

void read_weights(torch::serialize::InputArchive& archive, DiffusionModel& model) {
  torch::serialize::InputArchive network, ema_network;
  archive.read("network", network);
  archive.read("ema_network", ema_network);
  model.network().load(network);
  model.ema_network().load(ema_network);
  torch::Tensor mean, variance;
  archive.read("normalizer_mean", mean);
  archive.read("normalizer_variance", variance);
  model.set_normalizer(mean, variance);
}

}  // namespace

void save_checkpoint(const fs::path& path, DiffusionModel& model, torch::optim::Optimizer& optimizer,
                     const TrainingState& state, const std::string& config_toml, const std::string& training_hash) {
  install_checkpoint(path, checkpoint_bytes(model, optimizer, state, config_toml, training_hash));
}

std::string checkpoint_bytes(DiffusionModel& model, torch::optim::Optimizer& optimizer, const TrainingState& state,
                             const std::string& config_toml, const std::string& training_hash) {
  torch::serialize::OutputArchive archive, network, ema_network, optimizer_state;
  model.network().save(network);
  model.ema_network().save(ema_network);
  optimizer.save(optimizer_state);
  archive.write("network", network);
  archive.write("ema_network", ema_network);
  archive.write("optimizer", optimizer_state);
  archive.write("normalizer_mean", model.mean().cpu());
  archive.write("normalizer_variance", model.variance().cpu());
  archive.write("epoch", torch::tensor(state.epoch));
  archive.write("step", torch::tensor(state.step));
  archive.write("best_kid", torch::tensor(state.best_kid, torch::kFloat64));
  archive.write("config_toml", c10::IValue(config_toml));
  archive.write("ledger", c10::IValue(state.ledger));
  if (state.epoch_batches > 0) {
    archive.write("epoch_batches", torch::tensor(state.epoch_batches));
    archive.write("epoch_order", state.epoch_order.cpu());
    archive.write("epoch_sums", torch::tensor(state.epoch_sums, torch::kFloat64));
  }
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("cpu_rng_state", generator.get_state());
  }
  if (model.device().is_cuda()) {
    auto generator = at::globalContext().defaultGenerator(model.device());
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("cuda_rng_state", generator.get_state());
  }
  archive.write("training_hash", c10::IValue(training_hash));
  // The state as bytes, checksummed, in an outer archive; written beside the old checkpoint and
  // renamed over it (the old one kept as previous_path(path)), so that a crash, a full disk or a
  // file-size limit never leaves a half-written or missing checkpoint.
  std::ostringstream state_bytes;
  archive.save_to(state_bytes);
  const std::string bytes = state_bytes.str();
  torch::Tensor payload = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(payload.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  torch::serialize::OutputArchive outer;
  outer.write(kPayload, payload);
  outer.write(kChecksum, torch::tensor(static_cast<int64_t>(fnv1a(bytes.data(), bytes.size()))));
  std::ostringstream file_bytes;
  outer.save_to(file_bytes);
  return file_bytes.str();
}

void install_checkpoint(const fs::path& path, const std::string& bytes) {
  fs::path next = path;
  next += ".next";
  try {
    write_file_atomically(next, bytes);
  } catch (const Error& error) {
    throw RuntimeError("cannot write the checkpoint: " + error.message(), ErrorContext::in_file(path.string()));
  }
  std::error_code error;
  const bool had_one = fs::is_regular_file(path, error);
  error.clear();
  if (had_one) {
    fs::rename(path, previous_path(path), error);
    if (error)
      throw RuntimeError("cannot keep the previous checkpoint: " + error.message(), ErrorContext::in_file(path.string()));
    crash_point("checkpoint.previous_kept");  // no checkpoint.pt here: a resume reads the previous one
  }
  fs::rename(next, path, error);
  if (error) throw RuntimeError("cannot move the checkpoint into place: " + error.message(), ErrorContext::in_file(path.string()));
}

fs::path previous_path(const fs::path& path) {
  fs::path previous = path;
  previous.replace_extension(".previous" + path.extension().string());
  return previous;
}

namespace {
constexpr const char* kDamagedHint = "difflab falls back to the previous checkpoint when there is one";
}

Error CheckpointDamaged(const std::string& message, const fs::path& path) {
  return RuntimeError(message, ErrorContext::in_file(path.string(), kDamagedHint));
}

bool is_damaged_checkpoint(const Error& error) { return error.context().hint == kDamagedHint; }

TrainingState load_checkpoint(const fs::path& path, DiffusionModel& model, torch::optim::Optimizer& optimizer,
                              const std::string& training_hash) {
  torch::serialize::InputArchive archive = open_checkpoint(path, model.device());
  c10::IValue saved_hash;
  if (!training_hash.empty() && archive.try_read("training_hash", saved_hash) && saved_hash.isString() &&
      saved_hash.toStringRef() != training_hash)
    throw RuntimeError(fmt::format("the checkpoint belongs to another training configuration (training hash {}), "
                                   "not this run's ({})", saved_hash.toStringRef(), training_hash),
                       ErrorContext::in_file(path.string(), "a checkpoint copied or left from another run: move it "
                                                            "away to train this run from the start"));
  read_weights(archive, model);
  torch::serialize::InputArchive optimizer_state;
  archive.read("optimizer", optimizer_state);
  optimizer.load(optimizer_state);
  torch::Tensor epoch, step, best_kid, cpu_rng_state;
  archive.read("epoch", epoch);
  archive.read("step", step);
  archive.read("best_kid", best_kid);
  archive.read("cpu_rng_state", cpu_rng_state);
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(cpu_rng_state.cpu());
  }
  if (model.device().is_cuda()) {
    torch::Tensor cuda_rng_state;
    archive.read("cuda_rng_state", cuda_rng_state);
    auto generator = at::globalContext().defaultGenerator(model.device());
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(cuda_rng_state.cpu());
  }
  TrainingState state{epoch.item<int64_t>(), step.item<int64_t>(), best_kid.item<double>(), 0, {}, {}, {}};
  c10::IValue ledger;
  if (archive.try_read("ledger", ledger) && ledger.isString()) state.ledger = ledger.toStringRef();
  torch::Tensor epoch_batches, epoch_order, epoch_sums;
  if (archive.try_read("epoch_batches", epoch_batches) && archive.try_read("epoch_order", epoch_order) &&
      archive.try_read("epoch_sums", epoch_sums)) {
    state.epoch_batches = epoch_batches.item<int64_t>();
    state.epoch_order = epoch_order;
    const torch::Tensor sums = epoch_sums.to(torch::kFloat64).contiguous();
    state.epoch_sums.assign(sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel());
  }
  return state;
}

void load_weights(const fs::path& path, DiffusionModel& model) {
  torch::serialize::InputArchive archive = open_checkpoint(path, model.device());
  read_weights(archive, model);
}

std::string read_checkpoint_config(const fs::path& path) {
  torch::serialize::InputArchive archive = open_checkpoint(path, torch::kCPU);
  c10::IValue config;
  if (!archive.try_read("config_toml", config) || !config.isString())
    throw RuntimeError("checkpoint holds no experiment configuration", ErrorContext::in_file(path.string()));
  return config.toStringRef();
}

}  // namespace difflab
