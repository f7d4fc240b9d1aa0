// The framework's sections, key by key: each key's spec (type, default, range, doc) next to the
// member of Settings it fills. framework_schema() and read_section() are both read off this
// table.
#include "config/settings.h"

#include <functional>
#include <map>
#include <stdexcept>
#include <variant>

#include "difflab/error.h"

namespace difflab {
namespace {

// One framework key: its spec, and how its resolved value lands in Settings.
struct Field {
  ParamSpec spec;
  std::function<void(const Params&, Settings&)> read;
};

template <class Section, class T>
Field field(Section Settings::*section, T Section::*member, ParamSpec spec) {
  const std::string name = spec.name;
  return {std::move(spec), [section, member, name](const Params& params, Settings& settings) {
            const T* value = std::get_if<T>(&params.get(name));
            if (value == nullptr)
              throw RuntimeError("resolved value of the wrong type (" + format_value(params.get(name)) + ")",
                                 ErrorContext::for_key({}, name));
            settings.*section.*member = *value;
          }};
}

// The words of a choice-valued key and the values they stand for.
template <class E>
using Choices = std::vector<std::pair<const char*, E>>;

const Choices<DeviceSetting> kDevices = {{"auto", DeviceSetting::automatic}, {"cpu", DeviceSetting::cpu},
                                         {"cuda", DeviceSetting::cuda}};
const Choices<PrecisionSetting> kPrecisions = {
    {"auto", PrecisionSetting::automatic}, {"fp32", PrecisionSetting::fp32}, {"bf16", PrecisionSetting::bf16}};
const Choices<Quantity> kQuantities = {{"noise", Quantity::noise}, {"image", Quantity::image},
                                       {"velocity", Quantity::velocity}};
const Choices<LossWeighting> kWeightings = {{"none", LossWeighting::none}, {"min_snr", LossWeighting::min_snr}};
const Choices<KidProtocol> kKidProtocols = {
    {"per_batch", KidProtocol::per_batch}, {"subsets", KidProtocol::subsets}, {"none", KidProtocol::none}};

template <class E>
const char* word_of(const Choices<E>& choices, E value) {
  for (const auto& [word, choice] : choices)
    if (choice == value) return word;
  return "?";
}

// A string key whose value is one of `choices`, landing in Settings as the enum.
template <class Section, class E>
Field choice(Section Settings::*section, E Section::*member, ParamSpec spec, const Choices<E>& choices) {
  std::vector<std::string> words;
  for (const auto& [word, value] : choices) words.emplace_back(word);
  spec.one_of(words);
  const std::string name = spec.name;
  return {std::move(spec), [section, member, name, &choices](const Params& params, Settings& settings) {
            const std::string* text = std::get_if<std::string>(&params.get(name));
            for (const auto& [word, value] : choices)
              if (text != nullptr && *text == word) {
                settings.*section.*member = value;
                return;
              }
            throw RuntimeError("resolved value not among the choices (" + format_value(params.get(name)) + ")",
                               ErrorContext::for_key({}, name));
          }};
}

const std::map<std::string, std::vector<Field>>& section_fields() {
  static const std::map<std::string, std::vector<Field>> fields = {
      {"experiment",
       std::vector<Field>({
           field(&Settings::experiment, &ExperimentSettings::name, ParamSpec::string("name", "experiment", "name of the experiment, recorded on each run")),
           field(&Settings::experiment, &ExperimentSettings::database, ParamSpec::string("database", "results/difflab.sqlite",
                             "SQLite results database (relative to the working directory)")
               .is_path()),
           field(&Settings::experiment, &ExperimentSettings::output_dir, ParamSpec::string("output_dir", "runs",
                             "folder for sample grids and checkpoints (one sub-folder per run)")
               .is_path()),
           field(&Settings::experiment, &ExperimentSettings::seed, ParamSpec::integer("seed", 42, "seed of every random generator").at_least(0)),
           choice(&Settings::experiment, &ExperimentSettings::device, ParamSpec::string("device", "auto", "where to train; auto = cuda when available"),
                  kDevices),
           choice(&Settings::experiment, &ExperimentSettings::precision, ParamSpec::string("precision", "auto",
                             "bf16 = bfloat16 autocast on the CPU; auto = bf16 where the CPU computes it natively "
                             "(AVX512-BF16, AMX), else fp32"),
                  kPrecisions),
           field(&Settings::experiment, &ExperimentSettings::channels_last, ParamSpec::boolean("channels_last", false, "NHWC memory format for conv speed")),
           field(&Settings::experiment, &ExperimentSettings::threads, ParamSpec::integer("threads", 0, "CPU threads; 0 = all cores").at_least(0)),
           field(&Settings::experiment, &ExperimentSettings::plugin_paths, ParamSpec::strings("plugin_paths", {},
                              "extra plugin folders (relative to the experiment file)")),
       })},
      {"data", std::vector<Field>({field(&Settings::data, &DataSettings::image_size, ParamSpec::integer("image_size", 64,
                                               "side of the square images the network sees")
                                .at_least(4)
                                .at_most(4096))})},
      {"network", std::vector<Field>({choice(&Settings::network, &NetworkSettings::prediction, ParamSpec::string("prediction", "noise",
                                                  "what the network outputs: noise (the seed's), image or "
                                                  "velocity v = s·ε − n·x₀"),
                                                  kQuantities)})},
      {"schedule", {}},
      {"loss", std::vector<Field>({
                   choice(&Settings::loss, &LossSettings::target, ParamSpec::string("target", "noise",
                                     "what the training loss compares: noise (the seed's), image or velocity"),
                          kQuantities),
                   choice(&Settings::loss, &LossSettings::weighting, ParamSpec::string("weighting", "none", "per-sample loss weights: none or min_snr (Hang et al. 2023)"),
                          kWeightings),
                   field(&Settings::loss, &LossSettings::min_snr_gamma, ParamSpec::real("min_snr_gamma", 5.0, "γ of min-SNR-γ weighting").greater_than(0)),
               })},
      {"sampler", {}},
      {"features", {}},
      {"training",
       std::vector<Field>({
           field(&Settings::training, &TrainingSettings::epochs, ParamSpec::integer("epochs", 1, "passes over the training set").at_least(1).at_most(1000000)),
           field(&Settings::training, &TrainingSettings::batch_size, ParamSpec::integer("batch_size", 64, "images per training step").at_least(1).at_most(1 << 20)),
           field(&Settings::training, &TrainingSettings::steps_per_epoch, ParamSpec::integer("steps_per_epoch", 0,
                              "cap on steps per epoch; 0 = the whole training set")
               .at_least(0)),
           field(&Settings::training, &TrainingSettings::learning_rate, ParamSpec::real("learning_rate", 1e-3, "AdamW learning rate").greater_than(0)),
           field(&Settings::training, &TrainingSettings::weight_decay, ParamSpec::real("weight_decay", 1e-4, "AdamW decoupled weight decay").at_least(0)),
           field(&Settings::training, &TrainingSettings::ema, ParamSpec::real("ema", 0.999, "decay of the exponential moving average of weights")
               .at_least(0)
               .less_than(1)),
           field(&Settings::training, &TrainingSettings::ema_warmup, ParamSpec::boolean("ema_warmup", true,
                              "decay = min(ema, (1+step)/(10+step)); needed for short runs")),
           field(&Settings::training, &TrainingSettings::log_every_steps, ParamSpec::integer("log_every_steps", 50,
                              "record the training losses (the epoch's running means) every N steps, for learning "
                              "curves within an epoch; 0 = per epoch only; not part of a run's identity")
               .at_least(0)),
       })},
      {"evaluation",
       std::vector<Field>({
           field(&Settings::evaluation, &EvaluationSettings::kid_diffusion_steps, ParamSpec::integer("kid_diffusion_steps", 5, "sampling steps for KID").at_least(1)),
           field(&Settings::evaluation, &EvaluationSettings::plot_diffusion_steps, ParamSpec::integer("plot_diffusion_steps", 20, "sampling steps for the image grid")
               .at_least(1)),
           field(&Settings::evaluation, &EvaluationSettings::sample_batch_size, ParamSpec::integer("sample_batch_size", 16,
                              "images per sampling batch for KID, grids and difflab sample, independent of "
                              "training.batch_size (16: the fastest on a 2-core AMX CPU, README \"Evaluation speed\"); "
                              "0 = all at once")
               .at_least(0)),
           field(&Settings::evaluation, &EvaluationSettings::grid_rows, ParamSpec::integer("grid_rows", 3, "rows of the per-epoch image grid").at_least(1).at_most(100)),
           field(&Settings::evaluation, &EvaluationSettings::grid_cols, ParamSpec::integer("grid_cols", 6, "columns of the per-epoch image grid").at_least(1).at_most(100)),
           field(&Settings::evaluation, &EvaluationSettings::grid_scale, ParamSpec::integer("grid_scale", 2, "pixel upscaling of the grid PNG").at_least(1).at_most(16)),
           field(&Settings::evaluation, &EvaluationSettings::validation_batches, ParamSpec::integer("validation_batches", 8,
                              "validation batches for val losses each epoch; 0 = all")
               .at_least(0)),
           choice(&Settings::evaluation, &EvaluationSettings::kid_protocol, ParamSpec::string("kid_protocol", "per_batch",
                             "per_batch = the seed's (each validation batch against a generated "
                             "batch), subsets = clean-fid's, none = no KID"),
                  kKidProtocols),
           field(&Settings::evaluation, &EvaluationSettings::kid_batches, ParamSpec::integer("kid_batches", 8,
                              "validation batches (and as many generated) for KID; 0 = all")
               .at_least(0)),
           field(&Settings::evaluation, &EvaluationSettings::kid_every, ParamSpec::integer("kid_every", 1, "compute KID every N epochs (and after the last)")
               .at_least(1)),
           field(&Settings::evaluation, &EvaluationSettings::kid_subsets, ParamSpec::integer("kid_subsets", 100, "subsets protocol: number of random subsets")
               .at_least(1)),
           field(&Settings::evaluation, &EvaluationSettings::kid_subset_size, ParamSpec::integer("kid_subset_size", 1000,
                              "subsets protocol: rows per subset (capped at the sample count)")
               .at_least(2)),
           field(&Settings::evaluation, &EvaluationSettings::metrics, ParamSpec::strings("metrics", {"kid"},
                              "sample metrics every kid_every epochs, from the same real and generated features "
                              "(kid_batches x batch_size of each; kid_protocol = \"none\" turns all off): kid, fid, "
                              "precision, recall, density, coverage; recorded as val_<name>")
               .one_of({"kid", "fid", "precision", "recall", "density", "coverage"})
               .non_empty()),
           field(&Settings::evaluation, &EvaluationSettings::best_by, ParamSpec::string("best_by", "val_kid",
                              "the sample metric that picks best.pt (lowest; highest for precision, recall, density, "
                              "coverage); it must be one of metrics")
               .one_of({"val_kid", "val_fid", "val_precision", "val_recall", "val_density", "val_coverage"})),
           field(&Settings::evaluation, &EvaluationSettings::pr_k, ParamSpec::integer("pr_k", 3,
                              "nearest neighbours of precision and recall (Kynkaenniemi et al. 2019)")
               .at_least(1)),
           field(&Settings::evaluation, &EvaluationSettings::dc_k, ParamSpec::integer("dc_k", 5,
                              "nearest neighbours of density and coverage (Naeem et al. 2020)")
               .at_least(1)),
       })},
  };
  return fields;
}

const std::vector<Field>& fields_of(const std::string& section) {
  const auto& all = section_fields();
  auto it = all.find(section);
  if (it == all.end()) throw std::logic_error("difflab: no section [" + section + "]");
  return it->second;
}

}  // namespace

const char* to_string(DeviceSetting value) { return word_of(kDevices, value); }
const char* to_string(PrecisionSetting value) { return word_of(kPrecisions, value); }
const char* to_string(KidProtocol value) { return word_of(kKidProtocols, value); }
const char* to_string(LossWeighting value) { return word_of(kWeightings, value); }

const ParamSchema& framework_schema(const std::string& section) {
  static const std::map<std::string, ParamSchema> schemas = [] {
    std::map<std::string, ParamSchema> result;
    for (const auto& [name, fields] : section_fields())
      for (const auto& field : fields) result[name].push_back(field.spec);
    for (const auto& [name, fields] : section_fields()) result[name];  // sections without keys
    return result;
  }();
  fields_of(section);  // a logic error for a name that is no section
  return schemas.at(section);
}

void read_section(const std::string& section, const Params& params, Settings& settings) {
  for (const auto& field : fields_of(section)) field.read(params, settings);
}

const std::vector<std::pair<std::string, bool>>& sample_metrics() {
  static const std::vector<std::pair<std::string, bool>> metrics = {
      {"kid", false}, {"fid", false}, {"precision", true}, {"recall", true}, {"density", true}, {"coverage", true}};
  return metrics;
}

}  // namespace difflab
