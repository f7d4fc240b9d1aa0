// DiffusionModel: the seed's train step, normaliser, EMA (with warm-up) and generation.
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "model/checkpoint.h"
#include "model/diffusion_model.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::make;

namespace {

std::unique_ptr<DiffusionModel> tiny_model(int64_t channels = 1, Objective objective = {}) {
  Params params;
  params.set("widths", std::vector<int64_t>{8, 16});
  params.set("block_depth", int64_t{1});
  params.set("embedding_dims", int64_t{8});
  BuildContext context{16, channels};
  return std::make_unique<DiffusionModel>(
      make<Network>(Family::network, "residual_unet", params, context),
      make<Network>(Family::network, "residual_unet", params, context),
      make<Schedule>(Family::schedule, "cosine"), make<Loss>(Family::loss, "mae"),
      make<Sampler>(Family::sampler, "ddim"), 16, channels, objective);
}

torch::Tensor synthetic_images(int64_t count) {
  Params params;
  params.set("train_count", count);
  return make<Dataset>(Family::dataset, "synthetic", params, {16, 1})->load().train;
}

torch::optim::AdamW optimizer_for(DiffusionModel& model) {
  return torch::optim::AdamW(model.network().parameters(),
                             torch::optim::AdamWOptions(1e-3).weight_decay(1e-4).eps(1e-7));
}

}  // namespace

TEST(EmaDecay, WarmsUpLikeDiffusers) {
  EXPECT_DOUBLE_EQ(ema_decay(0.999, 0, true), 0.1);           // (1 + 0) / (10 + 0)
  EXPECT_DOUBLE_EQ(ema_decay(0.999, 90, true), 0.91);         // 91 / 100
  EXPECT_DOUBLE_EQ(ema_decay(0.999, 1000000, true), 0.999);   // capped at ema
  EXPECT_DOUBLE_EQ(ema_decay(0.999, 0, false), 0.999);
}

TEST(DiffusionModel, NormalizerUsesPerChannelDatasetStatistics) {
  auto model = tiny_model(3);
  torch::manual_seed(0);
  torch::Tensor images = torch::rand({50, 3, 16, 16}) * torch::tensor({1.0f, 0.5f, 0.25f}).view({1, 3, 1, 1});
  model->adapt(images);
  torch::Tensor normalized = model->normalize(images);
  EXPECT_LT(normalized.mean({0, 2, 3}).abs().max().item<float>(), 1e-5f);
  EXPECT_LT((normalized.var({0, 2, 3}, /*unbiased=*/false) - 1).abs().max().item<float>(), 1e-4f);
  EXPECT_LT((model->denormalize(normalized) - images).abs().max().item<float>(), 1e-5f);
}

TEST(DiffusionModel, FirstMaeNoiseLossIsTheMeanAbsoluteValueOfUnitNoise) {
  // The last layer starts at zero, so pred_noises = 0 and the MAE is E|ε| = sqrt(2/π).
  auto model = tiny_model();
  torch::Tensor images = synthetic_images(64);
  model->adapt(images);
  auto optimizer = optimizer_for(*model);
  torch::manual_seed(1);
  StepLosses losses = model->train_step(images, optimizer);
  EXPECT_NEAR(losses.noise_loss.item<double>(), std::sqrt(2.0 / M_PI), 0.02);
}

TEST(DiffusionModel, TrainingReducesTheNoiseLoss) {
  auto model = tiny_model();
  torch::Tensor images = synthetic_images(64);
  model->adapt(images);
  auto optimizer = optimizer_for(*model);
  torch::manual_seed(2);
  auto mean_loss = [&](int steps) {
    double total = 0;
    for (int i = 0; i < steps; ++i) total += model->train_step(images, optimizer).noise_loss.item<double>();
    return total / steps;
  };
  double first = mean_loss(5);
  mean_loss(30);
  double last = mean_loss(5);
  EXPECT_LT(last, 0.8 * first) << "first " << first << ", last " << last;
}

TEST(DiffusionModel, EveryParameterisationAndTargetTrains) {
  const std::vector<Objective> objectives = {{Quantity::velocity, Quantity::velocity, 0.0},
                                             {Quantity::image, Quantity::image, 0.0},
                                             {Quantity::noise, Quantity::noise, 5.0},
                                             {Quantity::velocity, Quantity::noise, 5.0}};
  torch::Tensor images = synthetic_images(64);
  for (const Objective& objective : objectives) {
    torch::manual_seed(2);
    auto model = tiny_model(1, objective);
    model->adapt(images);
    auto optimizer = optimizer_for(*model);
    auto mean_loss = [&](int steps) {
      double total = 0;
      for (int i = 0; i < steps; ++i) total += model->train_step(images, optimizer).loss.item<double>();
      return total / steps;
    };
    const double first = mean_loss(5);
    mean_loss(40);
    const double last = mean_loss(5);
    EXPECT_LT(last, 0.85 * first) << to_string(objective.prediction) << " -> " << to_string(objective.target)
                                 << ", first " << first << ", last " << last;
  }
}

TEST(DiffusionModel, VelocityPredictionOfZeroMeansNoisyImageParts) {
  // The last layer starts at zero: v̂ = 0, so x̂₀ = s·x and ε̂ = n·x; the objective is the
  // velocity loss, and the reported losses are those of the derived components.
  auto model = tiny_model(1, {Quantity::velocity, Quantity::velocity, 0.0});
  torch::Tensor images = synthetic_images(64);
  model->adapt(images);
  auto optimizer = optimizer_for(*model);
  torch::manual_seed(1);
  StepLosses losses = model->train_step(images, optimizer);
  EXPECT_DOUBLE_EQ(losses.loss.item<double>(), losses.velocity_loss.item<double>());
  // MAE of v = s·ε − n·x₀ against 0, with normalised x₀ and unit ε: E|v| ≈ √(2/π) (unit variance).
  EXPECT_NEAR(losses.velocity_loss.item<double>(), std::sqrt(2.0 / M_PI), 0.1);
}

TEST(DiffusionModel, EmaMovesTowardsTheTrainedWeights) {
  auto model = tiny_model();
  torch::Tensor images = synthetic_images(32);
  model->adapt(images);
  auto optimizer = optimizer_for(*model);
  torch::Tensor before = model->ema_network().parameters()[0].clone();
  std::vector<torch::Tensor> buffers_before;
  for (const auto& buffer : model->ema_network().buffers()) buffers_before.push_back(buffer.clone());
  model->train_step(images, optimizer);
  torch::Tensor trained = model->network().parameters()[0].clone();
  model->update_ema(0.25);
  torch::Tensor expected = 0.25 * before + 0.75 * trained;
  EXPECT_LT((model->ema_network().parameters()[0] - expected).abs().max().item<float>(), 1e-6f);
  // BatchNorm moving statistics are averaged too (Keras' network.weights include them): every
  // floating-point buffer is 0.25 · its EMA value + 0.75 · the trained network's.
  const auto ema_buffers = model->ema_network().buffers(), trained_buffers = model->network().buffers();
  ASSERT_EQ(ema_buffers.size(), buffers_before.size());
  size_t averaged = 0;
  for (size_t i = 0; i < ema_buffers.size(); ++i) {
    if (!ema_buffers[i].is_floating_point()) continue;
    const torch::Tensor expected_buffer = 0.25 * buffers_before[i] + 0.75 * trained_buffers[i];
    EXPECT_LT((ema_buffers[i] - expected_buffer).abs().max().item<float>(), 1e-6f) << "buffer " << i;
    ++averaged;
  }
  EXPECT_GE(averaged, 2u);  // at least one BatchNorm's running mean and variance
  // The training step moved the running statistics, so the check above compared real changes.
  EXPECT_FALSE(torch::allclose(trained_buffers[0], buffers_before[0]));
}

TEST(DiffusionModel, DenormalizeInvertsNormalizeAndClampsToTheUnitRange) {
  auto model = tiny_model();
  model->adapt(synthetic_images(32));
  const torch::Tensor inside = torch::linspace(0.0, 1.0, 256).view({1, 1, 16, 16});
  EXPECT_LT((model->denormalize(model->normalize(inside)) - inside).abs().max().item<float>(), 1e-5f);
  // A prediction beyond the data's range is clamped to exactly 0 and 1, not wrapped or scaled.
  const torch::Tensor far = torch::tensor({-1e3f, 1e3f}).view({1, 1, 1, 2});
  const torch::Tensor clamped = model->denormalize(far);
  EXPECT_EQ(clamped[0][0][0][0].item<float>(), 0.0f);
  EXPECT_EQ(clamped[0][0][0][1].item<float>(), 1.0f);
}

TEST(DiffusionModel, GeneratesImagesOfTheDataShape) {
  auto model = tiny_model();
  model->adapt(synthetic_images(32));
  torch::Tensor images = model->generate(5, 3);
  EXPECT_EQ(images.sizes(), torch::IntArrayRef({5, 1, 16, 16}));
  EXPECT_GE(images.min().item<float>(), 0.0f);
  EXPECT_LE(images.max().item<float>(), 1.0f);
}

TEST(DiffusionModel, Bf16AutocastTrainsCloseToFloat32AndRestoresState) {
  DIFFLAB_SKIP_WITHOUT_CPU_BF16();
  torch::Tensor images = synthetic_images(32);
  double losses[2];
  for (int i = 0; i < 2; ++i) {
    torch::manual_seed(3);
    auto model = tiny_model();
    model->adapt(images);
    model->set_precision(i == 0 ? Precision::fp32 : Precision::bf16);
    auto optimizer = optimizer_for(*model);
    model->train_step(images, optimizer);
    losses[i] = model->train_step(images, optimizer).noise_loss.item<double>();
  }
  EXPECT_NEAR(losses[1], losses[0], 0.02);
  // Autocast is off again: a matrix product of float32 tensors stays float32.
  EXPECT_EQ(torch::mm(torch::ones({2, 2}), torch::ones({2, 2})).scalar_type(), torch::kFloat32);
}

TEST(Checkpoint, RoundTripRestoresWeightsOptimiserNormaliserStateAndGenerator) {
  difflab::test::TempDir dir;
  torch::Tensor images = synthetic_images(32);
  auto model = tiny_model();
  model->adapt(images);
  auto optimizer = optimizer_for(*model);
  model->train_step(images, optimizer);
  model->update_ema(0.5);
  torch::manual_seed(11);
  save_checkpoint(dir / "checkpoint.pt", *model, optimizer, TrainingState{3, 42, 0.25, 0, {}, {}}, "[experiment]\nname = \"x\"\n", "hash-a");
  torch::Tensor next_draw = torch::rand({4});

  auto restored = tiny_model();
  auto restored_optimizer = optimizer_for(*restored);
  torch::manual_seed(99);  // scrambled; the checkpoint puts the generator back
  TrainingState state = load_checkpoint(dir / "checkpoint.pt", *restored, restored_optimizer, "hash-a");
  EXPECT_EQ(state.epoch, 3);
  EXPECT_EQ(state.step, 42);
  EXPECT_DOUBLE_EQ(state.best_kid, 0.25);
  EXPECT_TRUE(torch::equal(torch::rand({4}), next_draw));
  EXPECT_TRUE(torch::equal(restored->mean(), model->mean()));
  EXPECT_TRUE(torch::equal(restored->variance(), model->variance()));
  for (auto [a, b] : {std::pair{&model->network(), &restored->network()},
                      std::pair{&model->ema_network(), &restored->ema_network()}}) {
    auto expected = a->named_parameters(), actual = b->named_parameters();
    for (const auto& item : expected) EXPECT_TRUE(torch::equal(actual[item.key()], item.value())) << item.key();
    auto expected_buffers = a->named_buffers(), actual_buffers = b->named_buffers();
    for (const auto& item : expected_buffers) EXPECT_TRUE(torch::equal(actual_buffers[item.key()], item.value())) << item.key();
  }
  // The optimiser continues identically: one more step on each gives the same weights.
  torch::manual_seed(5);
  model->train_step(images, optimizer);
  torch::manual_seed(5);
  restored->train_step(images, restored_optimizer);
  EXPECT_TRUE(torch::equal(model->network().parameters()[0], restored->network().parameters()[0]));
  EXPECT_EQ(read_checkpoint_config(dir / "checkpoint.pt"), "[experiment]\nname = \"x\"\n");
  EXPECT_THROW(read_checkpoint_config(dir / "missing.pt"), Error);
}
