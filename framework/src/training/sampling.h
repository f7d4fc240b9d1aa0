// `difflab sample`: images from a trained run or a checkpoint, with any sampler.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace difflab {

class PluginRegistry;

struct SampleRequest {
  // Where the model comes from: a checkpoint file, or a run of a results database (its latest
  // checkpoint, or its best by KID with `best`).
  std::filesystem::path checkpoint;
  std::filesystem::path database;
  int64_t run_id = 0;
  bool best = false;
  // Applied to the run's resolved experiment, e.g. "sampler.plugin=ddpm", "sampler.eta=0.5".
  std::vector<std::string> overrides;

  int64_t num_images = 16;
  int64_t diffusion_steps = 0;  // 0 = the run's plot_diffusion_steps
  uint64_t seed = 0;
  std::filesystem::path out_dir;  // one PNG per image
  std::filesystem::path grid;     // one grid PNG
  bool interpolate = false;       // spherical interpolation between two initial noises
  bool steps_strip = false;       // the same initial noise with 1 to 20 steps
};

// Generates and writes what `request` asks for; returns the files written.
std::vector<std::filesystem::path> sample_images(const SampleRequest& request, PluginRegistry& registry);

// `difflab evaluate`: the sample metrics of a run's latest (or best) checkpoint with any number of
// samples — a paper table's 10,000 or 50,000 — recorded in sample_metrics with source "evaluate"
// and the checkpoint's epoch, beside the run's own per-epoch rows.
struct EvaluateRequest {
  std::filesystem::path database;
  int64_t run_id = 0;
  bool best = false;
  int64_t samples = 0;          // real and generated images each; 0 = the whole validation split
  int64_t diffusion_steps = 0;  // 0 = the run's kid_diffusion_steps
  std::vector<std::string> overrides;  // e.g. "evaluation.metrics=[\"fid\"]", "sampler.plugin=ddpm"
};
struct EvaluateResult {
  int64_t epoch = 0;
  std::filesystem::path checkpoint;
  std::vector<std::pair<std::string, double>> metrics;  // val_<name>
  int64_t samples = 0;
};
EvaluateResult evaluate_run(const EvaluateRequest& request, PluginRegistry& registry);

}  // namespace difflab
