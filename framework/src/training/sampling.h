// `difflab sample`: images from a trained run or a checkpoint, with any sampler.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
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

}  // namespace difflab
