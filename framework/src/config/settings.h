// The framework's own keys of an experiment, typed: one struct per section, read once from the
// resolved experiment (Experiment::settings()). The table that fills each struct (settings.cpp)
// is also the section's schema, so a key cannot be documented and read under two names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "difflab/quantity.h"
#include "difflab/params.h"

namespace difflab {

// The choice-valued keys, parsed once here (the key's one_of list is made from the same table);
// to_string gives the experiment file's word back.
enum class DeviceSetting { automatic, cpu, cuda };
enum class PrecisionSetting { automatic, fp32, bf16 };
enum class KidProtocol { per_batch, subsets, none };
enum class LossWeighting { none, min_snr };
const char* to_string(DeviceSetting value);
const char* to_string(PrecisionSetting value);
const char* to_string(KidProtocol value);
const char* to_string(LossWeighting value);

struct ExperimentSettings {
  std::string name;
  std::string database;
  std::string output_dir;
  int64_t seed = 0;
  DeviceSetting device = DeviceSetting::automatic;
  PrecisionSetting precision = PrecisionSetting::automatic;  // model/components.h: resolve_precision
  bool channels_last = false;
  int64_t threads = 0;  // 0 = all cores
  std::vector<std::string> plugin_paths;
};

struct DataSettings {
  int64_t image_size = 0;
};

struct NetworkSettings {
  Quantity prediction = Quantity::noise;
};

struct LossSettings {
  Quantity target = Quantity::noise;
  LossWeighting weighting = LossWeighting::none;
  double min_snr_gamma = 0.0;
};

struct TrainingSettings {
  int64_t epochs = 0;
  int64_t batch_size = 0;
  int64_t steps_per_epoch = 0;  // 0 = the whole training set
  double learning_rate = 0.0;
  double weight_decay = 0.0;
  double ema = 0.0;
  bool ema_warmup = true;
  int64_t log_every_steps = 0;  // 0 = only per epoch; not part of a run's identity
};

struct EvaluationSettings {
  int64_t kid_diffusion_steps = 0;
  int64_t plot_diffusion_steps = 0;
  int64_t sample_batch_size = 0;  // images per sampling batch; 0 = all at once
  int64_t grid_rows = 0;
  int64_t grid_cols = 0;
  int64_t grid_scale = 0;
  int64_t validation_batches = 0;  // 0 = all
  KidProtocol kid_protocol = KidProtocol::per_batch;
  int64_t kid_batches = 0;         // 0 = all
  int64_t kid_every = 0;
  int64_t kid_subsets = 0;
  int64_t kid_subset_size = 0;
  // The sample metrics computed every kid_every epochs from the same real and generated features
  // (training/fid.h): kid, fid, precision, recall, density, coverage; recorded as val_<name>.
  std::vector<std::string> metrics;
  std::string best_by;  // the metric (val_kid, val_fid, ...) that picks best.pt
  int64_t pr_k = 0, dc_k = 0;
  bool has_metric(const std::string& name) const {
    for (const auto& metric : metrics)
      if (metric == name) return true;
    return false;
  }
};

// The sample metrics evaluation.metrics may name, and whether a higher value is better.
const std::vector<std::pair<std::string, bool>>& sample_metrics();

struct Settings {
  ExperimentSettings experiment;
  DataSettings data;
  NetworkSettings network;
  LossSettings loss;
  TrainingSettings training;
  EvaluationSettings evaluation;
};

// The schema of a section's framework keys (empty for sections that have none, e.g. [sampler]);
// a logic error for a name that is not a section.
const ParamSchema& framework_schema(const std::string& section);

// Reads every section's framework keys from resolved parameters (`params_of(section)`); a
// runtime Error naming the key if one is missing or of another type.
template <class ParamsOf>
Settings read_settings(ParamsOf params_of);

// Non-template core of read_settings: one section's params into its struct.
void read_section(const std::string& section, const Params& params, Settings& settings);

template <class ParamsOf>
Settings read_settings(ParamsOf params_of) {
  Settings settings;
  for (const char* section : {"experiment", "data", "network", "loss", "training", "evaluation"})
    read_section(section, params_of(section), settings);
  return settings;
}

}  // namespace difflab
