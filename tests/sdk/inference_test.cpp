// The inference path (difflab/inference.h) against the float32 forward pass it replaces: the
// residual_unet's prediction, whole sampling passes, weights snapshotted and prepared again when
// the EMA moves, buffers made once per shape, and the building blocks' own checks.
#include <torch/torch.h>

#include "difflab/cpu.h"
#include "difflab/inference.h"
#include "difflab/network.h"
#include "model/diffusion_model.h"
#include "training/op_profile.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::make;

namespace {

#define SKIP_WITHOUT_INFERENCE_PATH()                                                                    \
  if (!inference::available())                                                                            \
  GTEST_SKIP() << "no inference path in this build or CPU (needs libdnnl-dev and AVX-512 BF16 or AMX)"

// A residual_unet with trained-looking weights: random output layer, and running statistics moved
// away from (0, 1) by a few training-mode passes over inputs of mean 0.5 and std 2.
std::shared_ptr<Network> trained_looking(const Params& params, BuildContext context, uint64_t seed) {
  torch::manual_seed(seed);
  auto network = make<Network>(Family::network, "residual_unet", params, context);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : network->named_parameters())
      if (parameter.key().find("output_conv") != std::string::npos) parameter.value().normal_(0.0, 0.05);
    network->train();
    for (int i = 0; i < 20; ++i)
      network->forward(torch::randn({8, context.image_channels, context.image_size, context.image_size}) * 2.0 + 0.5,
                       torch::rand({8, 1, 1, 1}));
  }
  network->eval();
  return network;
}

// A DiffusionModel of two small residual_unets (network and EMA) for 16x16x1 images, with DDIM.
DiffusionModel small_model(std::vector<int64_t> widths, uint64_t network_seed, uint64_t ema_seed) {
  Params params;
  params.set("widths", widths);
  params.set("block_depth", int64_t{1});
  params.set("embedding_dims", int64_t{8});
  return DiffusionModel(trained_looking(params, {16, 1}, network_seed), trained_looking(params, {16, 1}, ema_seed),
                        make<Schedule>(Family::schedule, "cosine"), make<Loss>(Family::loss, "mae"),
                        make<Sampler>(Family::sampler, "ddim"), 16, 1);
}

// max |a - b| / max |b|
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() /
         b.to(torch::kFloat64).abs().max().item<double>();
}

}  // namespace

// bf16 activations and weights, float32 accumulation: the prediction is the float32 forward
// pass's up to bf16 rounding, about as far from it as bf16 autocast's forward pass (which keeps the
// residual stream in float32). For the seed's network at 32x32x1, and for a small one at 16x16x3
// whose widths (12, 20) are not multiples of 16, and for an odd layout (3 levels, block_depth 3,
// two channels): the plan is read off the same layout as the modules and forward().
TEST(InferencePath, ResidualUNetMatchesTheFloat32ForwardPass) {
  SKIP_WITHOUT_INFERENCE_PATH();
  Params small;
  small.set("widths", std::vector<int64_t>{12, 20});
  small.set("block_depth", int64_t{1});
  small.set("embedding_dims", int64_t{6});
  Params odd;
  odd.set("widths", std::vector<int64_t>{8, 24, 16});
  odd.set("block_depth", int64_t{3});
  odd.set("embedding_dims", int64_t{4});
  for (const auto& [params, context] : {std::pair{Params{}, BuildContext{32, 1}}, std::pair{small, BuildContext{16, 3}},
                                        std::pair{odd, BuildContext{16, 2}}}) {
    auto network = trained_looking(params, context, 7);
    torch::Tensor images = torch::randn({6, context.image_channels, context.image_size, context.image_size});
    torch::Tensor variances = torch::rand({6, 1, 1, 1});
    torch::Tensor expected;
    {
      torch::NoGradGuard no_grad;
      expected = network->forward(images, variances);
    }
    std::unique_ptr<InferenceNetwork> fast = network->prepare_inference();
    ASSERT_NE(fast, nullptr);
    torch::Tensor output = fast->forward(images, variances);
    EXPECT_EQ(output.sizes(), expected.sizes());
    EXPECT_EQ(output.scalar_type(), torch::kFloat32);
    torch::Tensor autocast_output;
    {
      torch::NoGradGuard no_grad;
      AutocastGuard autocast(torch::kCPU, true);
      autocast_output = network->forward(images, variances).to(torch::kFloat32);
    }
    const double error = relative_error(output, expected), autocast_error = relative_error(autocast_output, expected);
    std::printf("vs the float32 forward pass, %ldx%ldx%ld: inference path %.4f, bf16 autocast %.4f (relative)\n",
                context.image_size, context.image_size, context.image_channels, error, autocast_error);
    EXPECT_LT(error, 0.05);
    EXPECT_LT(error, 2.0 * autocast_error);
    EXPECT_GT(error, 0.0);  // it does run in bf16
    // A second call with the same shape reuses the plan and gives the same numbers.
    EXPECT_TRUE(torch::equal(fast->forward(images, variances), output));
  }
}

// The path's own loops (normalisation, swish, pooling, upsampling) give the same prediction, bit
// for bit, at every instruction set this CPU has (difflab/cpu.h); the convolutions are oneDNN's
// and the same at every level.
TEST(InferencePath, GivesTheSameBitsAtEveryLevelOfDifflabsLoops) {
  SKIP_WITHOUT_INFERENCE_PATH();
  Params params;
  params.set("widths", std::vector<int64_t>{12, 20, 32});
  params.set("block_depth", int64_t{2});
  params.set("embedding_dims", int64_t{6});
  auto network = trained_looking(params, {16, 3}, 9);
  torch::manual_seed(2);
  const torch::Tensor images = torch::randn({3, 3, 16, 16}), variances = torch::rand({3, 1, 1, 1});
  auto predict = [&](KernelIsa isa) {
    ScopedKernelIsa level(isa);
    return network->prepare_inference()->forward(images, variances);
  };
  const torch::Tensor baseline = predict(KernelIsa::baseline);
  for (KernelIsa isa : test::higher_kernel_isas()) {
    EXPECT_TRUE(torch::equal(predict(isa), baseline)) << kernel_isa_name(isa);
  }
}

TEST(InferencePath, TrainingModeAndFloat32ExperimentsKeepTheForwardPass) {
  SKIP_WITHOUT_INFERENCE_PATH();
  auto network = trained_looking({}, {32, 1}, 1);
  network->train();
  EXPECT_EQ(network->prepare_inference(), nullptr);
  network->eval();
  EXPECT_NE(network->prepare_inference(), nullptr);
}

// The steady state allocates no activation: what one sampling step allocates (the float32
// prediction it returns, the embedding and the input's conversion) is the same for 1 and 6 steps
// and below the size of one level-0 activation buffer.
TEST(InferencePath, BuffersAreMadeOncePerShape) {
  SKIP_WITHOUT_INFERENCE_PATH();
  auto network = trained_looking({}, {32, 1}, 2);
  std::unique_ptr<InferenceNetwork> fast = network->prepare_inference();
  torch::Tensor images = torch::randn({16, 1, 32, 32}), variances = torch::rand({16, 1, 1, 1});
  fast->forward(images, variances);  // makes the plan
  auto steps = [&](int count) {
    return peak_allocated_bytes([&] {
      for (int i = 0; i < count; ++i) fast->forward(images, variances);
    });
  };
  const int64_t one = steps(1), six = steps(6);
  if (one < 0) GTEST_SKIP() << "this LibTorch has no allocation profiler";
  const int64_t activation_bytes = 16 * 32 * 32 * 32 * 2;  // one bf16 [16, 32, 32, 32] buffer
  std::printf("allocated per step: %ld bytes at most (1 step), %ld (6 steps)\n", one, six);
  EXPECT_EQ(one, six);
  EXPECT_LT(one, activation_bytes);
  // A new batch size makes a second plan; the first stays valid.
  fast->forward(images.slice(0, 0, 4), variances.slice(0, 0, 4));
  EXPECT_EQ(steps(1), one);
}

// Sampling through DiffusionModel: the inference path is used for the EMA network, its samples are
// the forward pass's up to bf16 rounding, and it follows the EMA weights when they change.
TEST(InferencePath, SamplingFollowsTheEmaWeightsAndMatchesTheForwardPass) {
  SKIP_WITHOUT_INFERENCE_PATH();
  DiffusionModel model = small_model({16, 32}, 3, 4);
  model.set_precision(Precision::bf16);
  model.update_ema(0.0);  // EMA = network (seed 3)
  torch::Tensor noise = torch::randn({8, 1, 16, 16});
  auto sample = [&](bool fast) {
    model.set_inference_path(fast);
    torch::Tensor images = model.generate_from(noise, 10);
    EXPECT_EQ(model.used_inference_path(), fast);
    return images;
  };
  const torch::Tensor slow_before = sample(false), fast_before = sample(true);
  const double pixel_error = (fast_before - slow_before).abs().max().item<double>();
  std::printf("10 DDIM steps, inference path vs bf16 autocast forward: max pixel difference %.4f of [0, 1]\n",
              pixel_error);
  EXPECT_LT(pixel_error, 0.05);

  // The EMA moves to other weights: the prepared network must not be the stale one.
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : model.network().parameters()) parameter.add_(torch::randn_like(parameter) * 0.05);
  }
  model.update_ema(0.5);
  const torch::Tensor slow_after = sample(false), fast_after = sample(true);
  const double change = (slow_after - slow_before).abs().mean().item<double>();
  const double after_error = (fast_after - slow_after).abs().mean().item<double>();
  std::printf("after the EMA moved: mean pixel change %.4f, inference path off by %.4f on average\n", change,
              after_error);
  EXPECT_LT(after_error, 0.1 * change);
}

// Sampling in batches: a deterministic sampler gives the same images for any sampling batch size.
TEST(InferencePath, SampleBatchSizeDoesNotChangeDeterministicSamples) {
  DiffusionModel model = small_model({8, 16}, 5, 5);
  torch::Tensor noise = torch::randn({10, 1, 16, 16});
  model.set_sample_batch_size(0);
  model.reset_evaluations();
  const torch::Tensor whole = model.generate_from(noise, 4);
  EXPECT_EQ(model.evaluations(), 4);  // DDIM: one network evaluation a step
  model.set_sample_batch_size(3);  // 3 + 3 + 3 + 1
  model.reset_evaluations();
  const torch::Tensor batched = model.generate_from(noise, 4);
  EXPECT_EQ(model.evaluations(), 4);  // per image, as kid.nfe records it: not 4 batches x 4
  EXPECT_EQ(batched.sizes(), whole.sizes());
  EXPECT_LT((batched - whole).abs().max().item<double>(), 1e-5);
}

TEST(InferencePath, BuildingBlocksRefuseWrongShapesAndSlicesForConvolutions) {
  SKIP_WITHOUT_INFERENCE_PATH();
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(8, 4, 3).padding(1));
  inference::Conv prepared(*conv);
  const inference::Activation wide = inference::allocate(2, 4, 4, 12);
  inference::write(torch::randn({2, 12, 4, 4}), wide);
  const inference::Activation out = inference::allocate(2, 4, 4, 4);
  EXPECT_THROW(prepared(wide, out), c10::Error);                 // 12 channels, not 8
  EXPECT_THROW(prepared(wide.slice(0, 8), out), c10::Error);     // a slice: oneDNN's slow path
  EXPECT_THROW(wide.slice(10, 4), c10::Error);                   // beyond the buffer
  const inference::Activation dense = inference::allocate(2, 4, 4, 8);
  inference::write(torch::randn({2, 8, 4, 4}), dense);
  prepared(dense, out);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = conv->forward(dense.view().to(torch::kFloat32));
  }
  EXPECT_LT(relative_error(out.view().to(torch::kFloat32), expected), 0.02);
  // Pooling and upsampling, into a channel slice.
  const inference::Activation half = inference::allocate(2, 2, 2, 12);
  inference::average_pool_2x(dense, half.slice(4, 8));
  EXPECT_LT(relative_error(half.slice(4, 8).view().to(torch::kFloat32),
                           torch::avg_pool2d(dense.view().to(torch::kFloat32), 2)),
            0.01);
  EXPECT_THROW(inference::average_pool_2x(dense, out), c10::Error);
}
