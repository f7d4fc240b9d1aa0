// Experiment files: every configuration error names the file, line and key, suggests a fix,
// and happens before anything runs; valid files resolve with defaults and overrides.
#include <cmath>
#include <fstream>
#include <set>

#include "config/experiment.h"
#include "config/settings.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::registry;

namespace {

Experiment parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return parse_experiment(text, "exp.toml", overrides, registry());
}

// Parses `text`, expects a config error, returns it.
Error config_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse(text, overrides);
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_EQ(error.exit_code(), 2);
    return error;
  }
  ADD_FAILURE() << "expected a config error for:\n" << text;
  return ConfigError("none");
}

}  // namespace

TEST(Experiment, FillsDefaultsForAnEmptyFile) {
  Experiment experiment = parse("");
  EXPECT_EQ(experiment.sections.size(), 9u);
  EXPECT_EQ(experiment.section("schedule").plugin, "cosine");
  EXPECT_DOUBLE_EQ(experiment.section("schedule").params.real("min_signal_rate"), 0.02);
  EXPECT_EQ(experiment.section("network").params.integers("widths"),
            (std::vector<int64_t>{32, 64, 96, 128}));
  EXPECT_EQ(experiment.section("training").params.integer("batch_size"), 64);
  EXPECT_DOUBLE_EQ(experiment.section("training").params.real("ema"), 0.999);
}

TEST(Experiment, SettingsAreTypedFromTheSameTableAsTheSchema) {
  const Experiment experiment =
      parse("[training]\nbatch_size = 16\nema = 0.99\n[evaluation]\nkid_protocol = \"none\"\n");
  const Settings settings = experiment.settings();
  EXPECT_EQ(settings.training.batch_size, 16);
  EXPECT_DOUBLE_EQ(settings.training.ema, 0.99);
  EXPECT_EQ(settings.evaluation.kid_protocol, KidProtocol::none);
  EXPECT_EQ(settings.evaluation.plot_diffusion_steps, 20);  // the schema's default
  EXPECT_EQ(settings.data.image_size, 64);
  EXPECT_EQ(settings.network.prediction, Quantity::noise);
  // Every key of the schema lands in the struct: a key read that the schema lacks is an Error
  // naming it, never std::out_of_range.
  for (const char* section : {"experiment", "data", "network", "loss", "training", "evaluation"})
    EXPECT_FALSE(framework_schema(section).empty()) << section;
  Params partial;
  partial.set("epochs", int64_t{1});
  Settings into;
  try {
    read_section("training", partial, into);
    FAIL() << "a missing key was read";
  } catch (const Error& error) {
    EXPECT_EQ(error.context().key, "batch_size") << error.what();
  }
  try {
    experiment.section("training").params.integer("batch_sise");
    FAIL() << "a misspelled key was read";
  } catch (const Error& error) {
    EXPECT_EQ(error.context().key, "batch_sise");
    EXPECT_NE(error.context().hint.find("did you mean \"batch_size\""), std::string::npos) << error.what();
  }
}

TEST(Experiment, OnlySectionsThatDefineTheNetworkAreInTheTrainingIdentity) {
  const Experiment base = parse("");
  std::set<std::string> defining;
  for (const auto& name : section_names())
    if (section_defines_training(name)) defining.insert(name);
  EXPECT_EQ(defining, (std::set<std::string>{"experiment", "data", "network", "schedule", "loss", "training"}));
  // Sampling, evaluation and the KID feature extractor change the run, not its trained network.
  for (const char* set : {"sampler.plugin=ddpm", "evaluation.kid_diffusion_steps=9", "features.plugin=classifier"}) {
    const Experiment changed = parse("", {set});
    EXPECT_NE(changed.config_hash(), base.config_hash()) << set;
    EXPECT_EQ(changed.training_hash(), base.training_hash()) << set;
  }
  for (const char* set : {"loss.plugin=mse", "schedule.plugin=linear", "training.batch_size=8", "data.image_size=32"})
    EXPECT_NE(parse("", {set}).training_hash(), base.training_hash()) << set;
}

TEST(Experiment, AcceptsIntegersForFloatKeys) {
  Experiment experiment = parse("[network]\nembedding_max_frequency = 500\n");
  EXPECT_DOUBLE_EQ(experiment.section("network").params.real("embedding_max_frequency"), 500.0);
}

TEST(Experiment, OverridesFromTheCommandLine) {
  Experiment experiment =
      parse("[training]\nepochs = 5\n", {"training.epochs=2", "loss.plugin=mse",
                                         "network.widths=[16, 32]", "experiment.name=ablation"});
  EXPECT_EQ(experiment.section("training").params.integer("epochs"), 2);
  EXPECT_EQ(experiment.section("loss").plugin, "mse");
  EXPECT_EQ(experiment.section("network").params.integers("widths"), (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(experiment.section("experiment").params.string("name"), "ablation");
}

TEST(Experiment, OverridingAPluginDropsTheOldPluginsParameters) {
  Experiment experiment = parse("[sampler]\nplugin = \"ddim\"\neta = 0.5\n[data]\nimage_size = 16\n",
                                {"sampler.plugin=ddpm", "sampler.variance=large", "data.plugin=synthetic"});
  EXPECT_EQ(experiment.section("sampler").plugin, "ddpm");
  EXPECT_EQ(experiment.section("sampler").params.string("variance"), "large");
  EXPECT_FALSE(experiment.section("sampler").params.has("eta"));
  EXPECT_EQ(experiment.section("data").params.integer("image_size"), 16);  // a framework key stays
  // Setting the same plugin again keeps its parameters.
  EXPECT_DOUBLE_EQ(parse("[sampler]\nplugin = \"ddim\"\neta = 0.5\n", {"sampler.plugin=ddim"})
                       .section("sampler").params.real("eta"), 0.5);
}

TEST(Experiment, ResolvedTomlRoundTripsWithTheSameHash) {
  Experiment experiment = parse("[schedule]\nplugin = \"linear\"\nmin_signal_rate = 0.05\n");
  Experiment again = parse(experiment.to_toml());
  EXPECT_EQ(again.to_toml(), experiment.to_toml());
  EXPECT_EQ(again.config_hash(), experiment.config_hash());
  EXPECT_NE(parse("").config_hash(), experiment.config_hash());
}

TEST(ExperimentErrors, SyntaxErrorHasLineAndColumn) {
  Error error = config_error("[training]\nepochs = 2\nbatch_size = = 3\n");
  EXPECT_EQ(error.context().file, "exp.toml");
  EXPECT_EQ(error.context().line, 3);
  EXPECT_GT(error.context().column, 0);
  EXPECT_NE(std::string(error.what()).find("exp.toml:3:"), std::string::npos) << error.what();
}

TEST(ExperimentErrors, UnknownSectionSuggestsTheNearest) {
  Error error = config_error("[training]\nepochs = 1\n\n[trainig]\nbatch_size = 3\n");
  EXPECT_EQ(error.context().line, 4);
  EXPECT_NE(error.context().hint.find("did you mean [training]"), std::string::npos);
}

TEST(ExperimentErrors, UnknownKeySuggestsTheNearest) {
  Error error = config_error("[schedule]\nplugin = \"cosine\"\nmin_signal_rte = 0.01\n");
  EXPECT_EQ(error.context().line, 3);
  EXPECT_EQ(error.context().key, "schedule.min_signal_rte");
  EXPECT_NE(error.context().hint.find("did you mean \"min_signal_rate\""), std::string::npos);
}

TEST(ExperimentErrors, KeyOfAnotherPluginIsUnknown) {
  // eta belongs to ddim, not to ddpm.
  Error error = config_error("[sampler]\nplugin = \"ddpm\"\neta = 0.5\n");
  EXPECT_EQ(error.context().key, "sampler.eta");
  EXPECT_NE(error.context().hint.find("variance"), std::string::npos);
}

TEST(ExperimentErrors, WrongTypeNamesExpectedAndActual) {
  Error error = config_error("[training]\nbatch_size = \"64\"\n");
  EXPECT_EQ(error.context().line, 2);
  EXPECT_EQ(error.context().key, "training.batch_size");
  EXPECT_NE(error.message().find("expected integer, got string"), std::string::npos);
  EXPECT_NE(config_error("[network]\nwidths = [32, 64.5]\n").message().find("array of integers"),
            std::string::npos);
}

TEST(ExperimentErrors, MinSignalRateZeroWouldDivideByZero) {
  Error error = config_error("[schedule]\nmin_signal_rate = 0.0\n");
  EXPECT_EQ(error.context().key, "schedule.min_signal_rate");
  EXPECT_EQ(error.context().line, 2);
  EXPECT_NE(error.message().find("out of range"), std::string::npos);
}

TEST(ExperimentErrors, MinSignalRateMustBeBelowMax) {
  Error error = config_error("[schedule]\nmin_signal_rate = 0.5\nmax_signal_rate = 0.4\n");
  EXPECT_EQ(error.context().key, "schedule.min_signal_rate");
  EXPECT_EQ(error.context().line, 2);
  config_error("[schedule]\nplugin = \"linear\"\nmin_signal_rate = 0.5\nmax_signal_rate = 0.5\n");
}

TEST(ExperimentErrors, NonPositiveBatchSizeAndOtherRanges) {
  EXPECT_EQ(config_error("[training]\nbatch_size = 0\n").context().key, "training.batch_size");
  EXPECT_EQ(config_error("[training]\nbatch_size = -64\n").context().key, "training.batch_size");
  EXPECT_EQ(config_error("[training]\nema = 1.0\n").context().key, "training.ema");
  EXPECT_EQ(config_error("[training]\nlearning_rate = 0\n").context().key, "training.learning_rate");
  EXPECT_EQ(config_error("[network]\nembedding_dims = 31\n").context().key, "network.embedding_dims");
  EXPECT_EQ(config_error("[experiment]\ndevice = \"tpu\"\n").context().key, "experiment.device");
}

TEST(ExperimentErrors, UnknownPluginListsTheAvailableOnes) {
  Error error = config_error("[schedule]\nplugin = \"cosin\"\n");
  EXPECT_EQ(error.context().line, 2);
  EXPECT_EQ(error.context().key, "schedule.plugin");
  EXPECT_NE(error.context().hint.find("did you mean \"cosine\""), std::string::npos);
  EXPECT_NE(error.context().hint.find("cosine, karras, linear, log_noise_linear"), std::string::npos) << error.context().hint;
}

TEST(ExperimentErrors, BadOverrideNamesTheOption) {
  Error error = config_error("", {"schedule.min_signal_rate=-1"});
  EXPECT_EQ(error.context().file, "--set");
  EXPECT_EQ(error.context().key, "schedule.min_signal_rate");
  EXPECT_EQ(config_error("", {"epochs=3"}).context().file, "--set");
  EXPECT_EQ(config_error("", {"trainig.epochs=3"}).context().hint.find("did you mean [training]") !=
                std::string::npos,
            true);
}

TEST(ExperimentErrors, MissingFileIsAConfigError) {
  try {
    load_experiment("/nonexistent/exp.toml", {}, registry());
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.exit_code(), 2);
    EXPECT_EQ(error.context().file, "/nonexistent/exp.toml");
  }
}

TEST(ExperimentErrors, MissingDatasetFilesNameThePathAndPackage) {
  Experiment experiment = parse("[data]\nplugin = \"fashion_mnist\"\npath = \"/nonexistent/fmnist\"\n");
  const Section& data = experiment.section("data");
  auto dataset = registry().create<Dataset>(Family::dataset, data.plugin, data.params,
                                            experiment.build_context(0));
  try {
    dataset->check_available();
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_EQ(error.context().key, "data.path");
    EXPECT_NE(error.message().find("/nonexistent/fmnist/train-images-idx3-ubyte.gz"), std::string::npos);
    EXPECT_NE(error.context().hint.find("dataset-fashion-mnist"), std::string::npos);
  }
}

TEST(ExperimentErrors, FileErrorsCarryTheRealPathAndLine) {
  difflab::test::TempDir dir;
  std::ofstream(dir / "bad.toml") << "[experiment]\nname = \"x\"\n\n[loss]\nplugin = 3\n";
  try {
    load_experiment(dir / "bad.toml", {}, registry());
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.context().file, (dir / "bad.toml").string());
    EXPECT_EQ(error.context().line, 5);
    EXPECT_EQ(error.context().key, "loss.plugin");
  }
}

namespace {
std::vector<SweepRun> sweep(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return parse_sweep(text, "sweep.toml", overrides, registry());
}
}  // namespace

TEST(Sweep, GridTimesSeedsInOrder) {
  auto runs = sweep("[sweep]\nmethod = \"grid\"\n\"loss.plugin\" = [\"mae\", \"mse\"]\n"
                    "\"schedule.min_signal_rate\" = [0.01, 0.05]\nseeds = [0, 1]\n");
  ASSERT_EQ(runs.size(), 8u);
  EXPECT_EQ(runs[0].point, "loss.plugin='mae', schedule.min_signal_rate=0.01, experiment.seed=0");
  EXPECT_EQ(runs[1].experiment.section("experiment").params.integer("seed"), 1);
  EXPECT_EQ(runs[7].experiment.section("loss").plugin, "mse");
  EXPECT_DOUBLE_EQ(runs[7].experiment.section("schedule").params.real("min_signal_rate"), 0.05);
  std::set<std::string> hashes;
  for (const auto& run : runs) hashes.insert(run.experiment.config_hash());
  EXPECT_EQ(hashes.size(), 8u);  // every point is its own run
}

TEST(Sweep, LinkedParametersVaryTogetherAndExcludeSkips) {
  auto runs = sweep(
      "[sweep]\n\"loss.plugin\" = [\"mae\", \"mse\"]\n"
      "exclude = [{ \"loss.plugin\" = \"mse\", \"sampler.plugin\" = \"ddpm\" }]\n"
      "[sweep.linked]\nsampler = [{ \"sampler.plugin\" = \"ddim\", \"sampler.eta\" = 0.5 },\n"
      "           { \"sampler.plugin\" = \"ddpm\", \"sampler.variance\" = \"large\" }]\n");
  ASSERT_EQ(runs.size(), 3u);  // 2 x 2, minus mse with ddpm
  for (const auto& run : runs) {
    const Section& sampler = run.experiment.section("sampler");
    if (sampler.plugin == "ddim") EXPECT_DOUBLE_EQ(sampler.params.real("eta"), 0.5);
    else EXPECT_EQ(sampler.params.string("variance"), "large");
    EXPECT_FALSE(run.experiment.section("loss").plugin == "mse" && sampler.plugin == "ddpm");
  }
}

TEST(Sweep, CommandLineOverridesWinAndAFileWithoutSweepIsOneRun) {
  auto runs = sweep("[sweep]\n\"training.epochs\" = [1, 2]\n", {"training.batch_size=8"});
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].experiment.section("training").params.integer("batch_size"), 8);
  auto single = sweep("[training]\nepochs = 3\n");
  ASSERT_EQ(single.size(), 1u);
  EXPECT_TRUE(single[0].point.empty());
  EXPECT_THROW(parse_experiment("[sweep]\n\"training.epochs\" = [1, 2]\n", "x.toml", {}, registry()), Error);
}

TEST(Sweep, ReportsEveryInvalidPointWithItsValues) {
  try {
    sweep("[sweep]\n\"schedule.min_signal_rate\" = [0.02, 0.0, -1.0]\n\"training.batch_size\" = [64, 0]\n");
    FAIL();
  } catch (const Error& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find("5 of 6 sweep points are invalid"), std::string::npos) << text;
    EXPECT_NE(text.find("schedule.min_signal_rate=0.0, training.batch_size=64"), std::string::npos) << text;
    EXPECT_NE(text.find("training.batch_size=0"), std::string::npos) << text;
    EXPECT_NE(text.find("sweep.toml [sweep]"), std::string::npos) << text;
  }
}

TEST(Sweep, MalformedSweepTablesAreConfigErrors) {
  EXPECT_EQ(config_error("[sweep]\nepochs = [1, 2]\n").context().key, "sweep.epochs");
  EXPECT_EQ(config_error("[sweep]\n\"training.epochs\" = 2\n").context().key, "sweep.training.epochs");
  EXPECT_EQ(config_error("[sweep]\nmethod = \"bayes\"\n").context().key, "sweep.method");
  EXPECT_EQ(config_error("[sweep]\nseeds = [\"a\"]\n").context().key, "sweep.seeds");
}

TEST(Sweep, RandomDrawsAreSeededDistinctAndInRange) {
  const std::string text =
      "[sweep]\nmethod = \"random\"\ntrials = 6\nseed = 7\nseeds = [0, 1]\n"
      "\"loss.plugin\" = { choice = [\"mae\", \"mse\"] }\n"
      "\"schedule.min_signal_rate\" = { uniform = [0.01, 0.05] }\n"
      "\"training.learning_rate\" = { log_uniform = [1e-4, 1e-2] }\n"
      "\"network.block_depth\" = { int_uniform = [1, 3] }\n";
  auto runs = sweep(text);
  ASSERT_EQ(runs.size(), 12u);  // 6 trials x 2 seeds
  std::set<std::string> hashes, depths, losses;
  double log_lr_sum = 0.0;
  for (size_t i = 0; i < runs.size(); ++i) {
    const Experiment& experiment = runs[i].experiment;
    hashes.insert(experiment.config_hash());
    EXPECT_EQ(experiment.section("experiment").params.integer("seed"), static_cast<int64_t>(i % 2));
    const double rate = experiment.section("schedule").params.real("min_signal_rate");
    EXPECT_GE(rate, 0.01);
    EXPECT_LE(rate, 0.05);
    const double lr = experiment.section("training").params.real("learning_rate");
    EXPECT_GE(lr, 1e-4);
    EXPECT_LE(lr, 1e-2);
    log_lr_sum += std::log10(lr);
    const int64_t depth = experiment.section("network").params.integer("block_depth");
    EXPECT_GE(depth, 1);
    EXPECT_LE(depth, 3);
    depths.insert(std::to_string(depth));
    losses.insert(experiment.section("loss").plugin);
  }
  EXPECT_EQ(hashes.size(), 12u);
  EXPECT_GE(depths.size(), 2u);  // 6 draws from 3 values: all-equal has probability 1/243
  EXPECT_EQ(losses.size(), 2u);
  EXPECT_GT(log_lr_sum / 12, -4.0);
  EXPECT_LT(log_lr_sum / 12, -2.0);

  // The same seed draws the same trials; another seed other ones.
  auto again = sweep(text);
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(again[i].point, runs[i].point);
  std::string other = text;
  other.replace(other.find("seed = 7"), 8, "seed = 8");
  auto different = sweep(other);
  EXPECT_NE(different[0].point, runs[0].point);
}

TEST(Sweep, RandomHonoursExcludeAndLinkedAndRefusesTooManyTrials) {
  auto runs = sweep(
      "[sweep]\nmethod = \"random\"\ntrials = 3\n\"loss.plugin\" = [\"mae\", \"mse\"]\n"
      "exclude = [{ \"loss.plugin\" = \"mse\", \"sampler.plugin\" = \"ddpm\" }]\n"
      "[sweep.linked]\nsampler = [{ \"sampler.plugin\" = \"ddim\", \"sampler.eta\" = 0.5 },\n"
      "           { \"sampler.plugin\" = \"ddpm\", \"sampler.variance\" = \"large\" }]\n");
  ASSERT_EQ(runs.size(), 3u);  // the whole allowed space: 4 combinations minus one excluded
  for (const auto& run : runs) {
    const Section& sampler = run.experiment.section("sampler");
    if (sampler.plugin == "ddim") {
      EXPECT_DOUBLE_EQ(sampler.params.real("eta"), 0.5);
    }
    EXPECT_FALSE(run.experiment.section("loss").plugin == "mse" && sampler.plugin == "ddpm");
  }
  const Error too_many = config_error("[sweep]\nmethod = \"random\"\ntrials = 3\n\"loss.plugin\" = [\"mae\", \"mse\"]\n");
  EXPECT_EQ(too_many.context().key, "sweep.trials");
  EXPECT_NE(std::string(too_many.what()).find("only 2 distinct trials"), std::string::npos);
}

TEST(Sweep, MalformedRandomSweepsAreConfigErrors) {
  EXPECT_EQ(config_error("[sweep]\nmethod = \"random\"\n\"loss.plugin\" = [\"mae\"]\n").context().key, "sweep.trials");
  EXPECT_EQ(config_error("[sweep]\ntrials = 3\n").context().key, "sweep.trials");  // grid
  EXPECT_EQ(config_error("[sweep]\n\"training.learning_rate\" = { uniform = [0.1, 0.2] }\n").context().key,
            "sweep.training.learning_rate");  // a distribution in a grid
  const std::string random = "[sweep]\nmethod = \"random\"\ntrials = 2\n";
  EXPECT_EQ(config_error(random + "\"training.learning_rate\" = { log_uniform = [0.0, 0.1] }\n").context().line, 4);
  EXPECT_EQ(config_error(random + "\"training.learning_rate\" = { uniform = [0.2, 0.1] }\n").context().key,
            "sweep.training.learning_rate");
  EXPECT_EQ(config_error(random + "\"network.block_depth\" = { int_uniform = [1.5, 3] }\n").context().key,
            "sweep.network.block_depth");
  EXPECT_EQ(config_error(random + "\"network.block_depth\" = { normal = [1, 3] }\n").context().key,
            "sweep.network.block_depth");
  // A drawn value the schema refuses is reported with the point that drew it.
  const Error invalid = config_error(random + "\"training.learning_rate\" = { uniform = [-1.0, -0.5] }\n");
  EXPECT_NE(std::string(invalid.what()).find("2 of 2 sweep points are invalid"), std::string::npos) << invalid.what();
}
