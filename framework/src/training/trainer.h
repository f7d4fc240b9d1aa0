// Running one experiment end to end: build components -> train -> evaluate -> record.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace difflab {

class Experiment;
class PluginRegistry;
class ProcessGroup;
struct Settings;
struct SweepRun;
class ResultsStore;
struct SplitCounts;
struct SweepTrialRecord;
struct AdaptiveSweep;

enum class RunOutcome {
  trained,          // trained (from scratch, or resumed) to the end
  finished_before,  // the configuration had finished before: nothing was trained
  failed_before,    // it failed or diverged before (RunOptions::retry_failed to run it again)
  busy,             // another live process is running it
  pruned,           // an adaptive sweep stopped it at a rung
  pruned_before,    // it had been pruned before: its decision stands, nothing was trained
  paused,           // it waits at a rung for the rung's decision (synchronous successive halving)
};

// What an adaptive sweep says of a run after one of its epochs (RunOptions::verdict).
struct EpochVerdict {
  enum class Kind { go_on, prune, pause };
  Kind kind = Kind::go_on;
  std::string message;  // the run's error text: why it was pruned, or where it waits
};

struct RunResult {
  RunOutcome outcome = RunOutcome::trained;
  int64_t run_id = 0;       // the run trained, or the one that made this command skip
  double noise_loss = 0.0;  // mean over the last epoch
  double image_loss = 0.0;
  std::filesystem::path last_grid;
  std::string detail;      // why it was skipped, for the terminal
  int64_t trained_by = 0;  // > 0: only evaluated, with the network that run trained
};

struct RunOptions {
  bool new_run = false;       // start a new run even if this configuration has one already
  bool retry_failed = false;  // run a configuration again whose last run failed or diverged
  int64_t threads = 0;        // LibTorch threads; 0 = [experiment] threads (not part of identity)
  std::string variant;        // the sweep point without its seed, recorded on the run row
  std::string announce;       // printed once the run is claimed (a sweep worker's header)
  // The sweep the run belongs to, recorded with it (sweeps, sweep_trials); null: none.
  std::shared_ptr<const SweepTrialRecord> sweep_trial;
  // Called after each epoch's checkpoint is written (the command line's test seam; see cli.cpp).
  std::function<void(int64_t epoch)> after_epoch;
  // Called at the end of each epoch after its rows and decision are recorded and before its
  // checkpoint (RunTrainer::record): makes the database durable where it must outlive this
  // process, e.g. a cluster task's local shard copied into the sweep folder.
  std::function<void()> publish;
  // An adaptive sweep's decision after each epoch's rows are recorded, before its checkpoint (rank
  // 0 asks it, through the run's own connection to its database; the other ranks follow): go on, stop as
  // pruned, or stop and wait at a rung (closed as interrupted with the message, so that the same
  // command resumes it once promoted). A process never opens a second connection to a database
  // it writes: closing one releases the POSIX locks of all (sqlite.org/howtocorrupt.html 2.2.1).
  std::function<EpochVerdict(ResultsStore& store, int64_t run_id, int64_t epoch)> verdict;
  // Called after each optimiser step, with the steps done so far (the same seam).
  std::function<void(int64_t step)> after_step;
  // Where the run is recorded and its folder made, instead of the experiment's database and
  // output_dir (a Slurm task's shard). Neither is part of the run's identity then: the config hash
  // stays the experiment's.
  std::string database;
  std::string output_dir;
  // Data-parallel training: this process is one rank of the group. Rank 0 alone reads and writes
  // the database, checkpoints, grids and KID; the others follow its decisions.
  ProcessGroup* distributed = nullptr;
  // Test seams (set by the command line from the environment): print every rank's parameter
  // checksums after each step; make each rank's initial weights differ before rank 0's are
  // broadcast.
  bool report_parameter_checksums = false;
  bool perturb_initial_weights_by_rank = false;
};

// Trains and records the run in the experiment's database. Running the same configuration
// again resumes it from its last checkpoint if it was killed or interrupted, does nothing if it
// finished (or failed, unless retry_failed), and leaves it to its process if another live
// process is running it. The run is claimed atomically, so that any number of processes can
// work through the same configurations. Errors are recorded on the run row (status failed) and
// rethrown.
RunResult run_experiment(const Experiment& experiment, const PluginRegistry& registry,
                         const RunOptions& options = {});

// What a run checks of its data before it writes anything: a training batch fits in the training
// split and, with KID or an adaptive sweep's val_* metric, an evaluation batch in the validation
// split. Throws a config Error naming the key (also used by `difflab check`).
void check_data_fits(const Experiment& experiment, const Settings& settings, int64_t train_count,
                     int64_t validation_count, const AdaptiveSweep* adaptive = nullptr);

// That the data, decoded to float32 at image_size, fits in this machine's memory: a config Error
// naming data.image_size otherwise, with the bytes it would need (before anything is allocated).
void check_data_memory(const Experiment& experiment, const Settings& settings, int64_t channels,
                       const SplitCounts& counts);

// That one training step's activations (measured on one image, times the batch size) fit in this
// machine's memory; a config Error naming training.batch_size otherwise. Leaves the network, its
// statistics and the random generator as they were.
struct Components;
void check_batch_fits(const Experiment& experiment, const Settings& settings, Components& components);

// That every run's data is there (Dataset::check_available: files, folders; nothing decoded).
// Throws a config Error naming the key.
void check_data_available(const std::vector<SweepRun>& runs, const PluginRegistry& registry);

// Everything `run` checks before it writes anything, for every run of a sweep: the data is there
// and its splits' sizes (from the dataset's counts(), without decoding, where it can tell; else
// loaded) fit in memory and hold a batch, the components build, a training step fits. Throws a config Error naming the
// key (difflab check; a sweep runs it before its first point).
void check_before_running(const std::vector<SweepRun>& runs, const PluginRegistry& registry);

struct BenchResult {
  std::vector<int64_t> batch_shape;  // [batch, channels, height, width]
  std::string precision;             // "bf16 (auto: ...)": what ran, and why
  std::string cpu;                   // difflab/cpu.h's cpu_description(): the paths chosen at run time
  double train_images_per_second = 0.0;
  // The share of a training step that the optimiser step and the EMA update take (timed alone,
  // repeated on the last step's gradients).
  double optimizer_share = 0.0;
  // Sampling as evaluation samples (batches of evaluation.sample_batch_size, the inference path
  // where the network has one), with plot_diffusion_steps and kid_diffusion_steps; and with
  // plot_diffusion_steps through Network::forward in one batch (what sampling was before).
  int64_t plot_steps = 0, kid_steps = 0, sample_batch_size = 0;
  bool inference_path = false;
  double sample_images_per_second = 0.0;
  double kid_sample_images_per_second = 0.0;
  double forward_sample_images_per_second = 0.0;
  double peak_rss_mb = 0.0;
  // The sample metrics' share of an epoch (evaluation.metrics every kid_every epochs): per
  // evaluation, generating kid_batches x batch_size images, extracting their features and
  // computing the metrics from features of the extractor's size (random ones: the cost does not
  // depend on the values); against an epoch's training (steps_per_epoch, or the training split).
  // metrics_share < 0: not measured (kid_protocol "none", or an extractor that must be prepared
  // on the data first, as the classifier).
  double metrics_share = -1.0;
  double evaluation_seconds = 0.0, generation_seconds = 0.0, features_seconds = 0.0, metric_seconds = 0.0;
  double epoch_train_seconds = 0.0;
  int64_t metric_samples = 0, feature_dims = 0, kid_every = 1;
  std::string metrics_names;  // "kid, fid"
  std::string metrics_note;
  // With `profile`: the operators that took the most time per training step (name, self ms
  // per step, calls per step), slowest first.
  struct Operator {
    std::string name;
    double self_ms_per_step = 0.0;
    double calls_per_step = 0.0;
  };
  std::vector<Operator> profile, sample_profile;  // per training step; per sampling step
  double profiled_ms_per_step = 0.0;         // all operators' self time per training step
  double profiled_ms_per_sample_step = 0.0;  // per network evaluation while sampling
};

// Times `steps` training steps (after warm-up) and one sampling pass of the experiment's
// network on random images of the experiment's shape. With `profile`, then profiles `steps` more
// training steps operator by operator. Writes nothing. With `distributed`, every rank trains on a
// batch of its own (the experiment's batch size) with averaged gradients; the images per second
// are all the ranks', and only rank 0 samples.
BenchResult bench_experiment(const Experiment& experiment, const PluginRegistry& registry,
                             int64_t steps, bool profile = false, int64_t threads = 0,
                             ProcessGroup* distributed = nullptr);

}  // namespace difflab
