// One run's training, step by step (RunTrainer), and what it needs around it: the interrupt
// guard, the progress line, KID of an epoch and the run's folder.
#include "training/run_trainer.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <limits>
#include <sstream>
#include <torch/torch.h>
#include <unistd.h>

#include "difflab/cache.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "model/checkpoint.h"
#include "process/crash_point.h"
#include "process/stop_request.h"
#include "difflab/files.h"
#include "training/distributed.h"
#include "training/fid.h"
#include "training/image_io.h"
#include "training/kid.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The sum of a network's absolute parameter values (the data-parallel test seam's checksum).
double checksum(Network& network) {
  double sum = 0.0;
  for (const auto& parameter : network.parameters()) sum += parameter.abs().sum().item<double>();
  return sum;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t total = static_cast<int64_t>(seconds + 0.5);
  if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
  return fmt::format("{}m{:02}s", total / 60, total % 60);
}

Progress::Progress() : terminal_(isatty(STDERR_FILENO) != 0) {}

void Progress::update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double noise_loss,
                      double images_per_second, double eta_seconds) {
  auto now = Clock::now();
  double since = std::chrono::duration<double>(now - last_).count();
  if (step != steps && since < (terminal_ ? 0.25 : 15.0)) return;
  last_ = now;
  std::string line = fmt::format("epoch {}/{}  step {}/{}  n_loss {:.4f}  {:.1f} images/s  ETA {}", epoch, epochs,
                                 step, steps, noise_loss, images_per_second, format_duration(eta_seconds));
  if (terminal_) {
    fmt::print(stderr, "\r{:<90}", line);
    if (step == steps) fmt::print(stderr, "\r{:<90}\r", "");
  } else {
    fmt::print(stderr, "{}\n", line);
  }
  std::fflush(stderr);
}

// The epoch's sample metrics for its line: "val_kid 0.1234  val_fid 12.3  ...".
std::string sample_text(const EpochEvaluation& evaluated) {
  std::string text;
  if (evaluated.kid) text += fmt::format("val_kid {:.4f}  ", evaluated.kid->mean);
  for (const SampleMetricRecord& sample : evaluated.samples) text += fmt::format("val_{} {:.4g}  ", sample.metric, sample.value);
  return text;
}

torch::Tensor real_features(const Experiment& experiment, FeatureExtractor& features, const torch::Tensor& images,
                            int64_t batch_size) {
  std::string key;
  for (const char* name : {"features", "data"}) {
    const Section& section = experiment.section(name);
    key += fmt::format("[{}]\nplugin = {}\n", name, section.plugin);
    for (const auto& [param, value] : section.params.items()) key += param + " = " + format_value(value) + "\n";
  }
  const torch::Tensor bytes = images.to(torch::kCPU).contiguous();
  const uint64_t content = fnv1a(bytes.data_ptr(), static_cast<size_t>(bytes.numel() * bytes.element_size()),
                                 fnv1a(key + fmt::format("{}\n{}\n", fmt::join(bytes.sizes(), "x"), std::string(bytes.dtype().name()))));
  const fs::path file = cache_root("") / "real-features" / fmt::format("{:016x}.pt", content);
  CacheLock lock(file);  // the sweep's other workers wait, then read it
  if (fs::exists(file)) {
    try {
      torch::Tensor cached;
      torch::load(cached, file.string());
      fmt::print("real features: {} images, {} dimensions, read from {}\n", cached.size(0), cached.size(1), file.string());
      return cached;
    } catch (const c10::Error&) {
      fmt::print(stderr, "difflab: warning: {}: unreadable cache entry, computing the real features again\n",
                 file.string());
    }
  }
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size)
    parts.push_back(features.extract(images.slice(0, start, start + batch_size)));
  torch::Tensor real = torch::cat(parts).to(torch::kCPU).contiguous();
  std::ostringstream serialized;  // in memory: a full disk is a warning, not a crash
  torch::save(real, serialized);
  if (store_cache_entry(file, serialized.str()))
    fmt::print("real features: {} images, {} dimensions, computed and cached in {}\n", real.size(0), real.size(1),
               file.string());
  return real;
}

SampleEvaluation evaluate_samples(const Experiment& experiment, const Settings& settings, DiffusionModel& model,
                                  FeatureExtractor& features, const torch::Tensor& validation_images,
                                  torch::Tensor& real) {
  const EvaluationSettings& evaluation = settings.evaluation;
  const int64_t batch_size = settings.training.batch_size;
  const int64_t all_batches = validation_images.size(0) / batch_size;
  const int64_t batches = evaluation.kid_batches > 0 ? std::min(all_batches, evaluation.kid_batches) : all_batches;
  KidRecord record;
  record.protocol = to_string(evaluation.kid_protocol);
  record.features = experiment.section("features").plugin;
  record.sampler = experiment.section("sampler").plugin;
  record.diffusion_steps = evaluation.kid_diffusion_steps;
  record.real_count = record.generated_count = batches * batch_size;
  if (batches < 1)
    throw RuntimeError(fmt::format("KID needs at least one validation batch of {} images, the "
                                   "validation split has {}", batch_size, validation_images.size(0)));
  if (!real.defined() || real.size(0) != batches * batch_size)
    real = real_features(experiment, features, validation_images.slice(0, 0, batches * batch_size), batch_size);
  std::vector<torch::Tensor> generated_features;
  model.reset_evaluations();
  for (int64_t batch = 0; batch < batches; ++batch)
    generated_features.push_back(features.extract(model.generate(batch_size, record.diffusion_steps)));
  record.nfe = model.evaluations() / batches;
  return measure_samples(settings, record, real, torch::cat(generated_features));
}

SampleEvaluation measure_samples(const Settings& settings, KidRecord record, const torch::Tensor& real,
                                 const torch::Tensor& generated) {
  const EvaluationSettings& evaluation = settings.evaluation;
  const int64_t batch_size = settings.training.batch_size;
  SampleEvaluation result;
  const auto sample = [&](const std::string& metric, double value, int64_t k) {
    result.samples.push_back({metric, value, record.features, record.sampler, record.diffusion_steps, record.nfe,
                              record.real_count, record.generated_count, k, "epoch"});
  };
  std::optional<PrdcEstimate> prdc_estimate;  // precision, recall, density and coverage: one pass
  for (const std::string& metric : evaluation.metrics) {
    if (metric == "kid") {
      if (evaluation.kid_protocol == KidProtocol::per_batch) {
        record.mean = kid_per_batch(real, generated, batch_size);
      } else {
        KidEstimate estimate = kid_subsets(real, generated, evaluation.kid_subsets, evaluation.kid_subset_size,
                                           static_cast<uint64_t>(settings.experiment.seed));
        record.mean = estimate.mean;
        record.std = estimate.std;
      }
      result.kid = record;
      result.metrics.emplace_back("val_kid", record.mean);
      continue;
    }
    double value = 0.0;
    int64_t k = 0;
    if (metric == "fid") {
      value = fid(real, generated);
    } else {
      if (!prdc_estimate) prdc_estimate = prdc(real, generated, evaluation.pr_k, evaluation.dc_k);
      const bool manifold = metric == "precision" || metric == "recall";
      k = manifold ? evaluation.pr_k : evaluation.dc_k;
      value = metric == "precision" ? prdc_estimate->precision
              : metric == "recall"  ? prdc_estimate->recall
              : metric == "density" ? prdc_estimate->density
                                    : prdc_estimate->coverage;
    }
    sample(metric, value, k);
    result.metrics.emplace_back("val_" + metric, value);
  }
  return result;
}

fs::path run_folder(const Experiment& experiment, const ExperimentSettings& settings, int64_t run_id, bool fresh) {
  std::string safe;
  for (char c : settings.name)
    safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  const fs::path base = fs::path(settings.output_dir) / fmt::format("{}-run{}", safe, run_id);
  const fs::path unique =
      fs::path(settings.output_dir) / fmt::format("{}-run{}-{}", safe, run_id, experiment.config_hash().substr(0, 8));
  if (fs::exists(unique) || (fresh && fs::exists(base) && !fs::is_empty(base))) return unique;
  return base;
}

RunTrainer::RunTrainer(const RunContext& run, torch::Device device)
    : run_(run),
      model_(*run.components.model),
      training_(run.settings.training),
      evaluation_(run.settings.evaluation),
      checkpoint_path_(run.run_dir / "checkpoint.pt"),
      run_start_(Clock::now()) {
  if (leader()) fs::create_directories(run.run_dir);
  if (evaluation_.kid_protocol != KidProtocol::none && leader()) run.components.features->prepare(run.data);
  model_.adapt(run.data.train);
  place_model(model_, run.experiment, device);
  if (leader() && run.settings.experiment.precision == PrecisionSetting::automatic)
    fmt::print("difflab: precision {} ({})\n", model_.precision() == Precision::bf16 ? "bf16" : "fp32",
               resolve_precision(run.experiment, device).reason);
  optimizer_ = make_optimizer(model_, run.experiment);
  if (fs::exists(checkpoint_path_) || fs::exists(previous_path(checkpoint_path_))) resume(device);
  for (const auto& buffer : model_.network().buffers())
    if (buffer.is_floating_point()) float_buffers_.push_back(buffer);
  if (run.options.distributed) align_ranks();
  // One epoch = `repetitions` shuffled passes; the incomplete last batch is dropped.
  const int64_t full_steps = run.data.train.size(0) * run.data.repetitions / training_.batch_size;
  steps_per_epoch_ = training_.steps_per_epoch > 0 ? std::min(full_steps, training_.steps_per_epoch) : full_steps;
  // The same initial noise every epoch (its own generator, so that resuming does not shift the
  // training draws), so that grids show the model's progress.
  const torch::Tensor& train = run.data.train;
  grid_noise_ = torch::randn({evaluation_.grid_rows * evaluation_.grid_cols, train.size(1), train.size(2), train.size(3)},
                             at::detail::createCPUGenerator(static_cast<uint64_t>(run.settings.experiment.seed)));
}

RunResult RunTrainer::run() {
  RunResult result;
  result.run_id = run_.run_id;
  // Resumed after a complete epoch of an adaptive sweep: its verdict again, at the epochs whose
  // rows the resume restored and at the last (a trial waiting at its rung stays there; a decision
  // recorded before stands).
  if (state_.epoch > 0 && state_.epoch < training_.epochs && run_.options.verdict) {
    EpochVerdict verdict;
    if (leader())
      for (int64_t epoch = first_verdict_epoch_; epoch <= state_.epoch && verdict.kind == EpochVerdict::Kind::go_on;
           ++epoch)
        verdict = run_.options.verdict(*run_.store, run_.run_id, epoch);
    if (stops(shared(verdict), state_.epoch, result)) return result;
  }
  for (int64_t epoch = state_.epoch + 1; epoch <= training_.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    const EpochLosses losses = train_epoch(epoch);
    result.noise_loss = losses.noise_loss;
    result.image_loss = losses.image_loss;
    if (!leader()) {  // rank 0 evaluates, records and decides; every rank continues from its random state
      state_.epoch = epoch;
      const EpochVerdict verdict = run_.options.verdict ? shared({}) : EpochVerdict{};
      run_.options.distributed->share_random_state();
      if (run_.options.after_epoch) run_.options.after_epoch(epoch);
      if (stops(verdict, epoch, result)) return result;
      continue;
    }
    const EpochEvaluation evaluated = evaluate(epoch);
    crash_point("epoch.grid");
    const EpochVerdict verdict = record(epoch, evaluated,
                                        {{"loss", losses.loss},
                                         {"n_loss", losses.noise_loss},
                                         {"i_loss", losses.image_loss},
                                         {"v_loss", losses.velocity_loss},
                                         {"train_images_per_second", steps_per_epoch_ * training_.batch_size / losses.train_seconds},
                                         {"epoch_seconds", seconds_since(epoch_start)}});
    result.last_grid = evaluated.grid_path;
    print_epoch(epoch, losses, evaluated);
    if (run_.options.distributed) run_.options.distributed->share_random_state();
    if (run_.options.after_epoch) run_.options.after_epoch(epoch);
    if (stops(verdict, epoch, result)) return result;
  }
  // A run that reuses another run's trained network (it differs only in sampling or evaluation
  // settings) is evaluated once, after its last epoch; again after a crash if that did not finish.
  if (run_.trained_by && leader() && run_.store->metrics(run_.run_id).empty()) {
    const EpochEvaluation evaluated = evaluate(state_.epoch);
    record(state_.epoch, evaluated, {});
    result.last_grid = evaluated.grid_path;
    fmt::print("evaluated: val_n_loss {:.4f}  val_i_loss {:.4f}  {}{}  grid {}\n", evaluated.val_noise_loss,
               evaluated.val_image_loss, sample_text(evaluated),
               format_duration(seconds_since(run_start_)), evaluated.grid_path.string());
    std::fflush(stdout);
  }
  return result;
}


void RunTrainer::resume(torch::Device device) {
  const std::string training_hash = run_.experiment.training_hash();
  const fs::path previous = previous_path(checkpoint_path_);
  // No checkpoint.pt but a previous one: the process stopped between the two renames of a save.
  fs::path from = fs::exists(checkpoint_path_) ? checkpoint_path_ : previous;
  try {
    state_ = load_checkpoint(from, model_, *optimizer_, training_hash);
  } catch (const Error& error) {
    if (!is_damaged_checkpoint(error) || from == previous || !fs::exists(previous)) throw;
    fmt::print("difflab: {}: {}; resuming from the previous checkpoint {}\n", from.string(), error.message(),
               previous.string());
    from = previous;
    state_ = load_checkpoint(from, model_, *optimizer_, training_hash);
  }
  place_model(model_, run_.experiment, device);  // loading may change memory formats
  first_verdict_epoch_ = state_.epoch;
  if (leader() && !run_.trained_by) first_verdict_epoch_ = check_resumed_rows();
  if (run_.trained_by) {
    state_.best_kid = std::numeric_limits<double>::infinity();  // this run's sampler's, not the trainer's
    fmt::print("difflab: run {} evaluates the network trained by run {} (same training configuration)\n",
               run_.run_id, *run_.trained_by);
  } else if (leader()) {
    fmt::print("difflab: resuming run {} after epoch {}{} (step {}) from {}\n", run_.run_id, state_.epoch,
               state_.epoch_batches > 0 ? fmt::format(" and {} batches of epoch {}", state_.epoch_batches, state_.epoch + 1)
                                        : "",
               state_.step, checkpoint_path_.string());
  }
}

// One epoch of train steps over a fresh shuffle of the training images, or the rest of the epoch
// a checkpoint written inside it had started. A signal stops it after the current step, with a
// checkpoint of how far it got.
EpochLosses RunTrainer::train_epoch(int64_t epoch) {
  const auto epoch_start = Clock::now();
  const int64_t batch_size = training_.batch_size, train_count = run_.data.train.size(0);
  torch::Tensor order;
  EpochLosses sums;
  int64_t first_batch = 0;
  if (state_.epoch_batches > 0) {
    order = state_.epoch_order;
    first_batch = state_.epoch_batches;
    sums.loss = state_.epoch_sums.at(0);
    sums.noise_loss = state_.epoch_sums.at(1);
    sums.image_loss = state_.epoch_sums.at(2);
    sums.velocity_loss = state_.epoch_sums.at(3);
    state_.epoch_batches = 0;
    state_.epoch_order = torch::Tensor();
    state_.epoch_sums.clear();
  } else {
    std::vector<torch::Tensor> passes;
    for (int64_t pass = 0; pass < run_.data.repetitions; ++pass)
      passes.push_back(torch::randperm(train_count, torch::kLong));
    order = torch::cat(passes);  // reshuffled every epoch
  }
  for (int64_t batch = first_batch; batch < steps_per_epoch_; ++batch) {
    if (stop_requested()) {
      if (run_.heartbeat && run_.heartbeat->lost())
        throw RuntimeError(fmt::format("run {} was claimed by another process after this one's lease "
                                       "ran out; stopping without touching it", run_.run_id));
      if (batch > first_batch && leader()) save_inside_epoch(order, batch, sums);
      StopRequest::throw_if_requested();
      throw Error(ErrorKind::interrupted, "interrupted: another rank of the run was interrupted");
    }
    const torch::Tensor indices = order.slice(0, batch * batch_size, (batch + 1) * batch_size);
    const double decay = ema_decay(training_.ema, state_.step, training_.ema_warmup);
    const StepLosses losses = step(run_.data.train.index_select(0, indices), decay);
    model_.update_ema_buffers(decay);  // after the statistics are synchronised
    ++state_.step;
    const double loss = losses.loss.item<double>(), noise_loss = losses.noise_loss.item<double>();
    if (!std::isfinite(loss) || !std::isfinite(noise_loss)) fail_diverged(epoch, loss, noise_loss);
    sums.loss += loss;
    sums.noise_loss += noise_loss;
    sums.image_loss += losses.image_loss.item<double>();
    sums.velocity_loss += losses.velocity_loss.item<double>();
    const double images_per_second = (batch + 1 - first_batch) * batch_size / seconds_since(epoch_start);
    const double remaining_steps =
        static_cast<double>((training_.epochs - epoch) * steps_per_epoch_ + steps_per_epoch_ - batch - 1);
    if (leader())
      progress_.update(epoch, training_.epochs, batch + 1, steps_per_epoch_, sums.noise_loss / (batch + 1),
                       images_per_second, remaining_steps * batch_size / images_per_second);
    if (leader() && training_.log_every_steps > 0 && state_.step % training_.log_every_steps == 0) {
      const double done = static_cast<double>(batch + 1);  // sums cover the epoch's batches so far
      run_.store->record_steps(run_.run_id, epoch, state_.step,
                               {{"loss", sums.loss / done}, {"n_loss", sums.noise_loss / done},
                                {"i_loss", sums.image_loss / done}});
    }
    if (run_.options.after_step) run_.options.after_step(state_.step);
  }
  const double steps = static_cast<double>(steps_per_epoch_);
  return {sums.loss / steps, sums.noise_loss / steps, sums.image_loss / steps, sums.velocity_loss / steps,
          seconds_since(epoch_start)};
}

bool RunTrainer::stop_requested() {
  bool stop = StopRequest::signal() != 0 || (run_.heartbeat && run_.heartbeat->lost());
  ProcessGroup* group = run_.options.distributed;
  if (group == nullptr) return stop;
  try {
    return group->max(stop ? 1 : 0) > 0;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw PeersLost(group->describe_failure(error));
  }
}

StepLosses RunTrainer::step(const torch::Tensor& images, double ema_decay) {
  ProcessGroup* group = run_.options.distributed;
  if (group == nullptr) return model_.train_step(images, *optimizer_, nullptr, ema_decay);
  StepShard shard;
  shard.rank = group->rank();
  shard.world = group->world();
  shard.synchronise = [&](StepLosses& losses) {
    try {
      group->average_gradients(model_.network().parameters());
      torch::Tensor measured = torch::stack({losses.loss.to(torch::kFloat64), losses.noise_loss.to(torch::kFloat64),
                                             losses.image_loss.to(torch::kFloat64),
                                             losses.velocity_loss.to(torch::kFloat64)});
      group->average({measured});
      losses = {measured[0], measured[1], measured[2], measured[3]};
    } catch (const std::exception& error) {
      throw PeersLost(group->describe_failure(error));
    }
  };
  StepLosses losses = model_.train_step(images, *optimizer_, &shard, ema_decay);
  try {
    // BatchNorm statistics: rank 0's on every rank (as DDP's broadcast_buffers), or their mean.
    if (!float_buffers_.empty()) {
      torch::NoGradGuard no_grad;
      std::vector<torch::Tensor> flat_parts;
      for (const auto& buffer : float_buffers_) flat_parts.push_back(buffer.reshape({-1}));
      torch::Tensor flat = torch::cat(flat_parts);
      if (group->options().sync_batchnorm_statistics) group->average({flat});
      else group->broadcast({flat});
      int64_t offset = 0;
      for (auto& buffer : float_buffers_) {
        buffer.copy_(flat.slice(0, offset, offset + buffer.numel()).view_as(buffer));
        offset += buffer.numel();
      }
    }
  } catch (const std::exception& error) {
    throw PeersLost(group->describe_failure(error));
  }
  if (run_.options.report_parameter_checksums) {
    fmt::print("checksum rank {} step {} network {:.17g} ema {:.17g}\n", group->rank(), state_.step + 1,
               checksum(model_.network()), checksum(model_.ema_network()));
    std::fflush(stdout);
  }
  return losses;
}

void RunTrainer::align_ranks() {
  ProcessGroup& group = *run_.options.distributed;
  torch::NoGradGuard no_grad;
  if (run_.options.perturb_initial_weights_by_rank && group.rank() > 0) {
    auto generator = at::detail::createCPUGenerator(static_cast<uint64_t>(1000 + group.rank()));
    for (auto& parameter : model_.network().parameters())
      parameter.add_(torch::randn(parameter.sizes(), generator).to(parameter.device(), parameter.dtype()) * 0.1);
  }
  if (run_.options.report_parameter_checksums) {
    fmt::print("checksum rank {} step {} network {:.17g} (before the broadcast)\n", group.rank(), state_.step,
               checksum(model_.network()));
  }
  try {
    std::vector<torch::Tensor> state;
    for (auto* network : {&model_.network(), &model_.ema_network()}) {
      for (const auto& parameter : network->parameters()) state.push_back(parameter);
      for (const auto& buffer : network->buffers()) state.push_back(buffer);
    }
    group.broadcast(state);
    group.share_random_state();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw PeersLost(group.describe_failure(error));
  }
  if (run_.options.report_parameter_checksums) {
    fmt::print("checksum rank {} step {} network {:.17g} (after the broadcast)\n", group.rank(), state_.step,
               checksum(model_.network()));
    std::fflush(stdout);
  }
}

void RunTrainer::save_inside_epoch(const torch::Tensor& order, int64_t batches, const EpochLosses& sums) {
  TrainingState inside = state_;
  inside.epoch_batches = batches;
  inside.epoch_order = order;
  inside.epoch_sums = {sums.loss, sums.noise_loss, sums.image_loss, sums.velocity_loss};
  save_checkpoint(checkpoint_path_, model_, *optimizer_, inside, run_.experiment.to_toml(),
                  run_.experiment.training_hash());
  fmt::print("difflab: run {} stopped by signal {} at step {} ({} of epoch {}'s {} batches); checkpoint {}\n",
             run_.run_id, StopRequest::signal(), state_.step, batches, state_.epoch + 1, steps_per_epoch_,
             checkpoint_path_.string());
  std::fflush(stdout);
}

void RunTrainer::fail_diverged(int64_t epoch, double loss, double noise_loss) {
  if (leader())
    run_.store->close_run(run_.run_id, RunStatus::diverged,
                      fmt::format("noise loss is {} (objective {}) at epoch {}, step {}", noise_loss, loss, epoch,
                                  state_.step));
  throw RuntimeError(fmt::format("run {} diverged: noise loss {} (objective {}) at step {}", run_.run_id,
                                 noise_loss, loss, state_.step));
}

EpochEvaluation RunTrainer::evaluate(int64_t epoch) {
  EpochEvaluation evaluated;
  validation_losses(evaluated);
  // A sample grid from the EMA network.
  evaluated.grid_path = run_.run_dir / fmt::format("epoch-{:03}.png", epoch);
  write_image_grid(evaluated.grid_path, model_.generate_from(grid_noise_, evaluation_.plot_diffusion_steps),
                   evaluation_.grid_rows, evaluation_.grid_cols, evaluation_.grid_scale);
  evaluated.artifacts = {{"sample_grid", evaluated.grid_path.string(), epoch},
                         {"checkpoint", checkpoint_path_.string(), epoch}};
  // KID every kid_every epochs and after the last; the best checkpoint by KID is kept (the
  // seed's ModelCheckpoint on val_kid).
  if (evaluation_.kid_protocol != KidProtocol::none && (epoch % evaluation_.kid_every == 0 || epoch == training_.epochs)) {
    SampleEvaluation sampled = evaluate_samples(run_.experiment, run_.settings, model_, *run_.components.features,
                                                run_.data.validation, real_features_);
    evaluated.kid = sampled.kid;
    evaluated.samples = sampled.samples;
    evaluated.metrics.insert(evaluated.metrics.end(), sampled.metrics.begin(), sampled.metrics.end());
    // best.pt by evaluation.best_by; the checkpoint's best_kid holds its best value so far,
    // oriented so that lower is better (a metric maximized is stored negated).
    const auto best = std::find_if(sampled.metrics.begin(), sampled.metrics.end(),
                                   [&](const auto& m) { return m.first == evaluation_.best_by; });
    if (best != sampled.metrics.end()) {
      const bool higher_is_better = std::any_of(sample_metrics().begin(), sample_metrics().end(), [&](const auto& m) {
        return "val_" + m.first == evaluation_.best_by && m.second;
      });
      const double oriented = higher_is_better ? -best->second : best->second;
      evaluated.new_best = oriented < state_.best_kid;
      if (evaluated.new_best) {
        state_.best_kid = oriented;
        evaluated.artifacts.push_back({"best_checkpoint", (run_.run_dir / "best.pt").string(), epoch});
      }
    }
  }
  return evaluated;
}

// The EMA network's losses on validation batches (the seed's val_n_loss, val_i_loss).
void RunTrainer::validation_losses(EpochEvaluation& evaluated) {
  const int64_t batch_size = training_.batch_size;
  const int64_t all_batches = run_.data.validation.size(0) / batch_size;
  const int64_t batches =
      evaluation_.validation_batches > 0 ? std::min(all_batches, evaluation_.validation_batches) : all_batches;
  if (batches == 0) return;
  double loss = 0.0, velocity_loss = 0.0;
  for (int64_t batch = 0; batch < batches; ++batch) {
    const StepLosses losses =
        model_.test_step(run_.data.validation.slice(0, batch * batch_size, (batch + 1) * batch_size));
    loss += losses.loss.item<double>() / batches;
    evaluated.val_noise_loss += losses.noise_loss.item<double>() / batches;
    evaluated.val_image_loss += losses.image_loss.item<double>() / batches;
    velocity_loss += losses.velocity_loss.item<double>() / batches;
  }
  evaluated.metrics.insert(evaluated.metrics.begin(), {{"val_loss", loss},
                                                       {"val_n_loss", evaluated.val_noise_loss},
                                                       {"val_i_loss", evaluated.val_image_loss},
                                                       {"val_v_loss", velocity_loss}});
}

// The end of an epoch (docs/architecture.md, "The end of an epoch"). Until the checkpoint is in
// place the epoch is not complete: a process killed before it trains the epoch again from the
// previous checkpoint, to the same bits, and records the same rows again (INSERT OR REPLACE) and
// finds its decision recorded (it stands). Once the checkpoint is there, everything the epoch
// writes is already durable where the next process looks: the database, or the shard that
// publish() copies it to.
EpochVerdict RunTrainer::record(int64_t epoch, const EpochEvaluation& evaluated,
                                std::vector<std::pair<std::string, double>> metrics) {
  metrics.insert(metrics.end(), evaluated.metrics.begin(), evaluated.metrics.end());
  // 1. The epoch's rows, in one transaction.
  run_.store->record_epoch(run_.run_id, epoch, state_.step, metrics, evaluated.artifacts, evaluated.kid,
                           evaluated.samples);
  crash_point("epoch.rows");
  // 2. The sweep's decision at this epoch, from the rows just recorded.
  EpochVerdict verdict;
  if (run_.options.verdict && !run_.trained_by) {
    verdict = shared(run_.options.verdict(*run_.store, run_.run_id, epoch));
    crash_point("epoch.decision");
  }
  // 3. Rows and decision where they outlive this process (a cluster task's shard).
  if (run_.options.publish) {
    run_.options.publish();
    crash_point("epoch.published");
  }
  // 4. best.pt and 5. the checkpoint: one serialisation, carrying the ledger of every epoch.
  state_.epoch = epoch;
  ledger_.epochs.erase(std::remove_if(ledger_.epochs.begin(), ledger_.epochs.end(),
                                      [epoch](const EpochRows& rows) { return rows.epoch >= epoch; }),
                       ledger_.epochs.end());
  ledger_.epochs.push_back({epoch, state_.step, metrics, evaluated.artifacts, evaluated.kid, evaluated.samples});
  ledger_.decisions = run_.store->decisions(run_.run_id);
  state_.ledger = write_ledger(ledger_);
  const std::string bytes = checkpoint_bytes(model_, *optimizer_, state_, run_.experiment.to_toml(),
                                             run_.experiment.training_hash());
  if (evaluated.new_best) {
    write_file_atomically(run_.run_dir / "best.pt", bytes);
    crash_point("epoch.best");
  }
  install_checkpoint(checkpoint_path_, bytes);
  crash_point("epoch.checkpoint");
  return verdict;
}

int64_t RunTrainer::check_resumed_rows() {
  ledger_ = read_ledger(state_.ledger, checkpoint_path_.string());
  int64_t recorded = 0;  // the database's last epoch with rows
  for (const MetricRecord& metric : run_.store->metrics(run_.run_id)) recorded = std::max(recorded, metric.epoch);
  const std::string database = run_.store->path().string();
  if (recorded > state_.epoch + 1) {
    fmt::print("difflab: run {}: the database {} holds epochs up to {}, the checkpoint {} is after epoch {}: epochs "
               "{} to {} are trained again from it and their rows recorded again\n",
               run_.run_id, database, recorded, checkpoint_path_.string(), state_.epoch, state_.epoch + 1, recorded);
  } else if (recorded < state_.epoch) {
    // The database fell behind the checkpoint (restored from an older copy): its rows come back
    // from the checkpoint's ledger, or the resume is refused; an epoch is never skipped.
    std::vector<int64_t> missing;
    for (int64_t epoch = recorded + 1; epoch <= state_.epoch; ++epoch)
      if (!ledger_.find(epoch)) missing.push_back(epoch);
    if (!missing.empty())
      throw RuntimeError(
          fmt::format("run {}: the checkpoint is after epoch {}, and the database {} holds the run's rows up to epoch {} "
                      "only; the checkpoint does not carry the rows of epoch{} {} (it was written before checkpoints "
                      "carried them), so resuming would skip them",
                      run_.run_id, state_.epoch, database, recorded, missing.size() > 1 ? "s" : "",
                      fmt::join(missing, ", ")),
          ErrorContext::in_file(checkpoint_path_.string(),
                                fmt::format("restore the database (or the sweep's shard) that holds those epochs, or "
                                            "move {} away to train the run again from the start",
                                            run_.run_dir.string())));
    for (int64_t epoch = recorded + 1; epoch <= state_.epoch; ++epoch) {
      const EpochRows& rows = *ledger_.find(epoch);
      run_.store->record_epoch(run_.run_id, epoch, rows.step, rows.metrics, rows.artifacts, rows.kid, rows.samples);
    }
    fmt::print("difflab: run {}: the database {} held epochs up to {} and the checkpoint {} is after epoch {}: "
               "restored the rows of epochs {} to {} from the checkpoint\n",
               run_.run_id, database, recorded, checkpoint_path_.string(), state_.epoch, recorded + 1, state_.epoch);
  }
  // Decisions the database lacks, after their rows: as they were taken (a recorded one stands).
  std::vector<int64_t> decided;
  for (const DecisionRecord& decision : run_.store->decisions(run_.run_id)) decided.push_back(decision.rung);
  int64_t restored = 0;
  for (DecisionRecord decision : ledger_.decisions) {
    if (std::find(decided.begin(), decided.end(), decision.rung) != decided.end()) continue;
    decision.run_id = run_.run_id;
    restored += run_.store
                    ->decide(decision.run_id, decision.rung, decision.epoch, decision.metric,
                             [] { return std::vector<RungPeer>(); },
                             [&](const RungView&) { return std::optional(decision); })
                    .has_value();
  }
  if (restored > 0)
    fmt::print("difflab: run {}: restored {} sweep decision{} from the checkpoint into {}\n", run_.run_id, restored,
               restored > 1 ? "s" : "", database);
  std::fflush(stdout);
  return recorded < state_.epoch ? recorded + 1 : state_.epoch;
}

EpochVerdict RunTrainer::shared(EpochVerdict verdict) {
  if (ProcessGroup* group = run_.options.distributed)
    verdict.kind = static_cast<EpochVerdict::Kind>(group->max(static_cast<int64_t>(verdict.kind)));
  return verdict;
}

// A verdict that stops the run closes it: pruned, or interrupted while it waits at a rung.
bool RunTrainer::stops(const EpochVerdict& verdict, int64_t epoch, RunResult& result) {
  if (verdict.kind == EpochVerdict::Kind::go_on) return false;
  const bool pruned = verdict.kind == EpochVerdict::Kind::prune;
  result.outcome = pruned ? RunOutcome::pruned : RunOutcome::paused;
  result.detail = verdict.message;
  if (leader()) {
    run_.store->close_run(run_.run_id, pruned ? RunStatus::pruned : RunStatus::interrupted, verdict.message);
    crash_point("epoch.closed");
    fmt::print("difflab: run {} {} after epoch {}: {}\n", run_.run_id, pruned ? "pruned" : "waits", epoch,
               verdict.message);
    std::fflush(stdout);
  }
  return true;
}

void RunTrainer::print_epoch(int64_t epoch, const EpochLosses& losses, const EpochEvaluation& evaluated) const {
  fmt::print("epoch {}/{}: n_loss {:.4f}  i_loss {:.4f}  val_n_loss {:.4f}  val_i_loss {:.4f}  "
             "{}{:.1f} images/s  {}  grid {}\n",
             epoch, training_.epochs, losses.noise_loss, losses.image_loss, evaluated.val_noise_loss,
             evaluated.val_image_loss, sample_text(evaluated),
             steps_per_epoch_ * training_.batch_size / losses.train_seconds,
             format_duration(seconds_since(run_start_)), evaluated.grid_path.string());
  std::fflush(stdout);
}

}  // namespace difflab
