// KID against clean-fid's kernel_distance on the reference feature matrices
// (tests/data/kid_reference), for both protocols, and the `pixels` extractor.
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <torch/script.h>

#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "test_support.h"
#include "training/kid.h"

using namespace difflab;

namespace {

torch::Tensor read_csv(const std::string& name) {
  std::ifstream file(std::string(DIFFLAB_TEST_SOURCE_DIR) + "/tests/data/kid_reference/" + name);
  std::vector<double> values;
  int64_t rows = 0;
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty()) continue;
    std::stringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) values.push_back(std::stod(cell));
    ++rows;
  }
  EXPECT_GT(rows, 0) << name;
  return torch::tensor(values, difflab::test::f64()).view({rows, -1});
}

// A number of expected.json (clean-fid's values, float64), read from the reference file itself.
double expected(const std::string& key) {
  std::ifstream file(std::string(DIFFLAB_TEST_SOURCE_DIR) + "/tests/data/kid_reference/expected.json");
  const std::string json((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::smatch match;
  if (!std::regex_search(json, match, std::regex("\"" + key + "\": *(-?[0-9.eE+-]+)"))) {
    ADD_FAILURE() << "expected.json has no number " << key;
    return std::nan("");
  }
  return std::stod(match[1].str());
}

const double kKidAllRows = expected("kid_all_rows");
const double kKidSameSet = expected("kid_same_set");
const double kKidPerBatch40 = expected("kid_per_batch_40");

}  // namespace

TEST(Kid, MatchesCleanFidOnAllRows) {
  torch::Tensor a = read_csv("features_a.csv"), b = read_csv("features_b.csv");
  ASSERT_EQ(a.sizes(), torch::IntArrayRef({120, 16}));
  EXPECT_NEAR(kid_mmd2(a, b), kKidAllRows, 1e-10);
  EXPECT_NEAR(kid_mmd2(b, a), kKidAllRows, 1e-10);  // symmetric
}

TEST(Kid, OfASetAgainstItselfMatchesCleanFid) {
  // Unbiased: the cross term keeps the diagonal that the within-set terms leave out, so the
  // estimate of a set against itself is negative, exactly as clean-fid computes it.
  torch::Tensor a = read_csv("features_a.csv");
  EXPECT_NEAR(kid_mmd2(a, a), kKidSameSet, 1e-10);
}

TEST(Kid, PerBatchProtocolMatchesTheSeedsAverage) {
  torch::Tensor a = read_csv("features_a.csv"), b = read_csv("features_b.csv");
  EXPECT_NEAR(kid_per_batch(a, b, 40), kKidPerBatch40, 1e-10);
}

TEST(Kid, SubsetsOfTheWholeSetEqualTheFullEstimate) {
  torch::Tensor a = read_csv("features_a.csv"), b = read_csv("features_b.csv");
  // Subsets of all 120 rows are permutations: every subset gives the full estimate.
  KidEstimate kid = kid_subsets(a, b, 5, 1000, 0);
  EXPECT_EQ(kid.subset_size, 120);
  EXPECT_NEAR(kid.mean, kKidAllRows, 1e-10);
  EXPECT_LT(kid.std, 1e-10);
}

TEST(Kid, SmallerSubsetsAreSeededAndScatterAroundTheFullEstimate) {
  torch::Tensor a = read_csv("features_a.csv"), b = read_csv("features_b.csv");
  KidEstimate first = kid_subsets(a, b, 100, 50, 7);
  KidEstimate again = kid_subsets(a, b, 100, 50, 7);
  KidEstimate other = kid_subsets(a, b, 100, 50, 8);
  EXPECT_EQ(first.mean, again.mean);
  EXPECT_NE(first.mean, other.mean);
  EXPECT_GT(first.std, 0.0);
  // The unbiased estimator's subset mean stays within a few standard errors of the full value.
  EXPECT_NEAR(first.mean, kKidAllRows, 4.0 * first.std / std::sqrt(100.0) + 0.05);
}

TEST(PixelFeatures, FlattenImagesInTheUnitRange) {
  auto pixels = difflab::test::make<FeatureExtractor>(Family::features, "pixels");
  torch::Tensor images = torch::rand({3, 2, 4, 5});
  torch::Tensor features = pixels->extract(images);
  EXPECT_EQ(features.sizes(), torch::IntArrayRef({3, 40}));
  EXPECT_TRUE(torch::equal(features[1], images[1].flatten()));
}

namespace {
// A TorchScript model built in the test: per-channel means, times a parameter.
std::string channel_mean_model(const difflab::test::TempDir& dir) {
  torch::jit::Module module("ChannelMeans");
  module.register_parameter("scale", torch::full({1}, 2.0), /*is_buffer=*/false);
  module.define(R"(
    def forward(self, images):
        return images.mean(dim=[2, 3]) * self.scale
  )");
  const std::string path = (dir / "means.pt").string();
  module.save(path);
  return path;
}
}  // namespace

TEST(TorchScriptFeatures, ResizesRescalesAndRunsTheModel) {
  difflab::test::TempDir dir;
  Params params;
  params.set("model", channel_mean_model(dir));
  params.set("input_size", int64_t{8});
  params.set("input_range", std::string("-1_1"));
  auto features = difflab::test::make<FeatureExtractor>(Family::features, "torchscript", params);
  // Grayscale 0.75 everywhere: repeated to 3 channels, scaled to 2·0.75 − 1 = 0.5, times 2.
  torch::Tensor result = features->extract(torch::full({5, 1, 32, 32}, 0.75));
  ASSERT_EQ(result.sizes(), torch::IntArrayRef({5, 3}));
  EXPECT_LT((result - 1.0).abs().max().item<float>(), 1e-5f);

  params.set("input_range", std::string("0_255"));
  auto bytes = difflab::test::make<FeatureExtractor>(Family::features, "torchscript", params);
  EXPECT_NEAR(bytes->extract(torch::full({1, 3, 8, 8}, 0.5))[0][1].item<float>(), 255.0f, 1e-3f);
}

TEST(TorchScriptFeatures, MissingModelIsAConfigErrorWithAHint) {
  Params params;
  params.set("model", std::string("/nonexistent/inception.pt"));
  try {
    difflab::test::make<FeatureExtractor>(Family::features, "torchscript", params);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_EQ(error.context().key, "features.model");
    EXPECT_NE(error.context().hint.find("export_inception.py"), std::string::npos);
  }
}

TEST(ClassifierFeatures, LearnTheLabelsSeparateTheClassesAndAreCached) {
  difflab::test::TempDir cache;
  Params data_params;
  data_params.set("train_count", int64_t{512});
  data_params.set("validation_count", int64_t{200});
  ImageSplits data =
      difflab::test::make<Dataset>(Family::dataset, "synthetic", data_params, {16, 1})->load();
  Params params;
  params.set("cache_dir", cache.path().string());
  params.set("width", int64_t{8});
  params.set("feature_dims", int64_t{16});
  params.set("epochs", int64_t{6});
  params.set("batch_size", int64_t{32});
  auto features = difflab::test::make<FeatureExtractor>(Family::features, "classifier", params, {16, 1});
  features->prepare(data);

  // Small and large discs of the validation split, in equal numbers.
  torch::Tensor small = data.validation.index({data.validation_labels == 0});
  torch::Tensor large = data.validation.index({data.validation_labels == 1});
  const int64_t half = std::min(small.size(0), large.size(0)) / 2;
  ASSERT_GE(half, 20);
  torch::Tensor small_a = features->extract(small.slice(0, 0, half));
  torch::Tensor small_b = features->extract(small.slice(0, half, 2 * half));
  torch::Tensor large_a = features->extract(large.slice(0, 0, half));
  EXPECT_EQ(small_a.size(1), 16);
  const double within = kid_mmd2(small_a, small_b);
  const double across = kid_mmd2(small_a, large_a);
  EXPECT_GT(across, 10.0 * std::abs(within)) << "within " << within << ", across " << across;

  // A second extractor on the same data loads the cached network: identical features.
  int64_t cached_networks = 0;
  for (const auto& entry : std::filesystem::directory_iterator(cache / "classifier"))
    cached_networks += entry.path().extension() == ".pt" ? 1 : 0;
  ASSERT_EQ(cached_networks, 1);
  auto cached = difflab::test::make<FeatureExtractor>(Family::features, "classifier", params, {16, 1});
  cached->prepare(data);
  EXPECT_TRUE(torch::equal(cached->extract(small.slice(0, 0, half)), small_a));
}

TEST(ClassifierFeatures, NeedLabels) {
  ImageSplits unlabelled{torch::rand({8, 1, 16, 16}), torch::rand({4, 1, 16, 16})};
  auto features = difflab::test::make<FeatureExtractor>(Family::features, "classifier", {}, {16, 1});
  EXPECT_THROW(features->prepare(unlabelled), Error);
}
