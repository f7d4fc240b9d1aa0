// Running one experiment end to end: build components -> train -> evaluate -> record.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace difflab {

class Experiment;
class PluginRegistry;

struct RunResult {
  int64_t run_id = 0;
  double noise_loss = 0.0;  // mean over the last epoch
  double image_loss = 0.0;
  std::filesystem::path last_grid;
  bool skipped = false;  // the configuration had finished before: nothing was trained
};

struct RunOptions {
  bool new_run = false;  // start a new run even if this configuration has one already
};

// Trains and records the run in the experiment's database. Running the same configuration
// again resumes it from its last checkpoint if it was killed or interrupted, and does nothing if
// it finished. Errors are recorded on the run row (status failed) and rethrown.
RunResult run_experiment(const Experiment& experiment, const PluginRegistry& registry,
                         const RunOptions& options = {});

struct BenchResult {
  double train_images_per_second = 0.0;
  double sample_images_per_second = 0.0;
  double peak_rss_mb = 0.0;
};

// Times `steps` training steps (after warm-up) and one sampling pass of the experiment's
// network on random images of the experiment's shape. Writes nothing.
BenchResult bench_experiment(const Experiment& experiment, const PluginRegistry& registry,
                             int64_t steps);

}  // namespace difflab
