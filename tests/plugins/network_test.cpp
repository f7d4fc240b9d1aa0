// The residual_unet plugin against the seed's get_network: trainable parameter counts and the
// sinusoidal embedding from the independent port (../shared/reference/seed_network.md), output
// shape, and exact zeros at initialisation.
#include <filesystem>
#include <torch/script.h>

#include "difflab/embedding.h"
#include "difflab/error.h"
#include "difflab/network.h"
#include "model/diffusion_model.h"
#include "plugin_host/registry.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::f64;
using difflab::test::make;

namespace {

int64_t trainable_parameters(torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& parameter : module.parameters())
    if (parameter.requires_grad()) count += parameter.numel();
  return count;
}

}  // namespace

TEST(ResidualUNet, HasTheSeedsParameterCount) {
  EXPECT_EQ(trainable_parameters(*make<Network>(Family::network, "residual_unet", {}, {64, 3})),
            1950627);
  EXPECT_EQ(trainable_parameters(*make<Network>(Family::network, "residual_unet", {}, {32, 1})),
            1950497);
}

TEST(ResidualUNet, PredictsExactZerosAtInitialisation) {
  auto network = make<Network>(Family::network, "residual_unet", {}, {32, 1});
  torch::Tensor noisy_images = torch::randn({4, 1, 32, 32});
  torch::Tensor output = network->forward(noisy_images, torch::rand({4, 1, 1, 1}));
  EXPECT_EQ(output.sizes(), noisy_images.sizes());
  EXPECT_EQ(output.abs().max().item<float>(), 0.0f);
}

TEST(ResidualUNet, OutputDependsOnInputAndNoiseLevelOnceTrained) {
  Params params;
  params.set("widths", std::vector<int64_t>{8, 16});
  params.set("block_depth", int64_t{1});
  auto network = make<Network>(Family::network, "residual_unet", params, {16, 3});
  {
    torch::NoGradGuard no_grad;  // stand-in for training: un-zero the last layer
    for (auto& parameter : network->parameters()) parameter.normal_(0.0, 0.1);
  }
  network->eval();
  torch::Tensor images = torch::randn({2, 3, 16, 16});
  torch::Tensor low = network->forward(images, torch::full({2, 1, 1, 1}, 0.1));
  torch::Tensor high = network->forward(images, torch::full({2, 1, 1, 1}, 0.9));
  EXPECT_EQ(low.sizes(), torch::IntArrayRef({2, 3, 16, 16}));
  EXPECT_GT((low - high).abs().max().item<float>(), 1e-4f);
}

// The fused bf16 path (precision.h) in context: the same weights and batch under bf16 autocast and
// channels_last give the float32 network's output and gradients up to bf16 rounding, and the
// one-channel input is put back into channels_last (weight_memory_format) so that every block fuses.
TEST(ResidualUNet, Bf16ChannelsLastMatchesFloat32) {
  DIFFLAB_SKIP_WITHOUT_CPU_BF16();
  auto make_network = [] {
    torch::manual_seed(3);
    auto network = make<Network>(Family::network, "residual_unet", {}, {32, 1});
    torch::NoGradGuard no_grad;  // stand-in for training: un-zero the last layer
    for (auto& parameter : network->named_parameters())
      if (parameter.key().find("output_conv") != std::string::npos) parameter.value().normal_(0.0, 0.05);
    return network;
  };
  auto reference = make_network(), mixed = make_network();
  EXPECT_EQ(weight_memory_format(*mixed), torch::MemoryFormat::Contiguous);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : mixed->parameters())
      if (parameter.dim() == 4)
        parameter.set_data(parameter.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
  EXPECT_EQ(weight_memory_format(*mixed), torch::MemoryFormat::ChannelsLast);

  torch::manual_seed(4);
  torch::Tensor images = torch::randn({16, 1, 32, 32});
  torch::Tensor variances = torch::rand({16, 1, 1, 1});
  torch::Tensor expected = reference->forward(images, variances);
  expected.pow(2).mean().backward();
  torch::Tensor output;
  {
    AutocastGuard autocast(torch::kCPU, true);
    output = mixed->forward(images.contiguous(torch::MemoryFormat::ChannelsLast), variances)
                 .to(torch::kFloat32);
  }
  output.pow(2).mean().backward();

  const double scale = expected.abs().max().item<double>();
  EXPECT_LT((output - expected).abs().max().item<double>() / scale, 0.05);
  for (const auto& name :
       {"down_blocks.0.conv1.weight", "mid_blocks.1.conv2.weight", "up_blocks.5.conv1.weight"}) {
    torch::Tensor a = reference->named_parameters()[name].grad().flatten();
    torch::Tensor b = mixed->named_parameters()[name].grad().flatten();
    EXPECT_GT(torch::cosine_similarity(a, b, 0).item<double>(), 0.98) << name;
  }
  // The running statistics moved the same way.
  torch::Tensor mean_a = reference->named_buffers()["down_blocks.0.norm.running_mean"];
  torch::Tensor mean_b = mixed->named_buffers()["down_blocks.0.norm.running_mean"];
  EXPECT_LT((mean_a - mean_b).abs().max().item<double>(), 1e-3 * (1.0 + mean_a.abs().max().item<double>()));
}

TEST(ResidualUNet, RejectsImageSizeNotDivisibleByItsDownsampling) {
  try {
    make<Network>(Family::network, "residual_unet", {}, {36, 1});  // 36 % 8 != 0
    FAIL() << "expected a config error";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_EQ(error.context().key, "network.widths");
  }
}

TEST(SinusoidalEmbedding, MatchesSeedGoldenValues) {
  const double expected[32] = {
      1.000000000000,  0.606815712574,  -0.720185270555, -0.029728114919, -0.467337558600,
      0.000000000000,  -0.235076407657, 0.982619962622,  -0.292963583477, -0.988714322036,
      -0.000000000000, -0.695144487954, -0.956417541433, -0.167549113792, -0.997756129690,
      -0.000000000000, 0.000000000000,  -0.794842557349, -0.693781792839, 0.999558021919,
      -0.884078959325, -1.000000000000, 0.971976894048,  -0.185628685977, 0.956123600146,
      0.149813181663,  1.000000000000,  -0.718870044492, 0.292002545261,  -0.985863730171,
      -0.066953010882, 1.000000000000};
  torch::Tensor embedding =
      sinusoidal_embedding(torch::full({1, 1, 1, 1}, 0.25, f64()), 32, 1000.0).flatten();
  ASSERT_EQ(embedding.numel(), 32);
  for (int64_t i = 0; i < 32; ++i)
    EXPECT_NEAR(embedding[i].item<double>(), expected[i], 1e-6) << "channel " << i;
}

namespace {
std::shared_ptr<Network> small_unet(std::vector<int64_t> attention_resolutions, double dropout = 0.0) {
  Params params;
  params.set("widths", std::vector<int64_t>{8, 16});
  params.set("block_depth", int64_t{1});
  params.set("embedding_dims", int64_t{8});
  params.set("groups", int64_t{4});
  params.set("attention_resolutions", std::move(attention_resolutions));
  params.set("dropout", dropout);
  return make<Network>(Family::network, "unet", params, {16, 1});
}
}  // namespace

TEST(UNet, StartsAtZeroKeepsTheShapeAndAttendsWhereAsked) {
  auto plain = small_unet({});
  torch::Tensor noisy_images = torch::randn({2, 1, 16, 16});
  torch::Tensor output = plain->forward(noisy_images, torch::rand({2, 1, 1, 1}));
  EXPECT_EQ(output.sizes(), noisy_images.sizes());
  EXPECT_EQ(output.abs().max().item<float>(), 0.0f);
  // Attention at side 8 (the 16-wide level): one block after each of its block_depth (1) blocks,
  // GroupNorm (2·16) + qkv (16·48 + 48) + projection (16·16 + 16) = 1,120 parameters.
  EXPECT_EQ(trainable_parameters(*small_unet({8})) - trainable_parameters(*plain), 1120);
  // At side 16 (the 8-wide level): a down and an up block, 2 x (16 + 8·24 + 24 + 8·8 + 8) = 608.
  EXPECT_EQ(trainable_parameters(*small_unet({16})) - trainable_parameters(*plain), 608);
}

TEST(UNet, EveryParameterLearnsIncludingTheEmbeddingAndAttention) {
  auto network = small_unet({8, 16});
  torch::optim::Adam optimizer(network->parameters(), 1e-2);
  const torch::Tensor noisy_images = torch::randn({4, 1, 16, 16}), target = torch::randn({4, 1, 16, 16});
  const torch::Tensor variances = torch::rand({4, 1, 1, 1});
  for (int step = 0; step < 3; ++step) {  // past the zero-initialised layers
    optimizer.zero_grad();
    (network->forward(noisy_images, variances) - target).pow(2).mean().backward();
    optimizer.step();
  }
  optimizer.zero_grad();
  (network->forward(noisy_images, variances) - target).pow(2).mean().backward();
  for (const auto& named : network->named_parameters()) {
    ASSERT_TRUE(named.value().grad().defined()) << named.key();
    EXPECT_GT(named.value().grad().abs().sum().item<double>(), 0.0) << named.key();
  }
  // The noise level reaches the output through the embedding in every block.
  torch::NoGradGuard no_grad;
  network->eval();
  EXPECT_GT((network->forward(noisy_images, torch::full({4, 1, 1, 1}, 0.1)) -
             network->forward(noisy_images, torch::full({4, 1, 1, 1}, 0.9)))
                .abs()
                .max()
                .item<float>(),
            1e-4f);
}

TEST(UNet, DropoutOnlyWhileTraining) {
  auto network = small_unet({}, 0.5);
  torch::NoGradGuard no_grad;
  for (auto& parameter : network->parameters()) parameter.uniform_(-0.3, 0.3);  // a non-zero output
  const torch::Tensor noisy_images = torch::randn({2, 1, 16, 16}), variances = torch::rand({2, 1, 1, 1});
  network->train();
  EXPECT_GT((network->forward(noisy_images, variances) - network->forward(noisy_images, variances)).abs().max().item<float>(), 0.0f);
  network->eval();
  EXPECT_EQ((network->forward(noisy_images, variances) - network->forward(noisy_images, variances)).abs().max().item<float>(), 0.0f);
}

TEST(UNet, RefusesGroupsThatDoNotDivideTheWidths) {
  const PluginInfo& info = difflab::test::registry().get(Family::network, "unet");
  Params params;
  for (const auto& spec : info.schema) params.set(spec.name, spec.default_value);
  EXPECT_TRUE(info.validate(params).key.empty());
  params.set("groups", int64_t{5});
  EXPECT_EQ(info.validate(params).key, "groups");
}

namespace {
// A TorchScript module made here (torch::jit::Module::define compiles TorchScript source):
// one 3×3 convolution of the noisy images and the noise variance as a second channel.
std::string scripted_conv(const std::filesystem::path& path, bool keep_shape = true) {
  torch::jit::Module module("TinyConv");
  torch::manual_seed(0);
  module.register_parameter("weight", torch::randn({1, 2, 3, 3}) * 0.1, false);
  module.register_parameter("bias", torch::zeros({1}), false);
  module.define(std::string(R"(
def forward(self, noisy_images, noise_variances):
    variances = noise_variances.expand(noisy_images.size(0), 1, noisy_images.size(2), noisy_images.size(3))
    x = torch.cat([noisy_images, variances], 1)
    return torch.conv2d(x, self.weight, self.bias, [1, 1], [)") + (keep_shape ? "1, 1" : "0, 0") + "])\n");
  module.save(path.string());
  return path.string();
}
}  // namespace

TEST(TorchScriptNetwork, RunsTheScriptedForwardAndTrainsItsParameters) {
  difflab::test::TempDir dir;
  Params params;
  params.set("model", scripted_conv(dir / "tiny.pt"));
  auto network = make<Network>(Family::network, "torchscript", params, {8, 1});
  ASSERT_EQ(network->parameters().size(), 2u);  // weight and bias, registered with the network
  const torch::Tensor noisy_images = torch::randn({3, 1, 8, 8}), variances = torch::rand({3, 1, 1, 1});
  const torch::Tensor expected = torch::conv2d(
      torch::cat({noisy_images, variances.expand({3, 1, 8, 8})}, 1), network->named_parameters()["weight"],
      network->named_parameters()["bias"], 1, 1);
  EXPECT_LT((network->forward(noisy_images, variances) - expected).abs().max().item<float>(), 1e-6f);
  // The optimiser updates the scripted module's own tensors: its output follows.
  torch::optim::SGD optimizer(network->parameters(), 0.1);
  const torch::Tensor before = network->forward(noisy_images, variances).detach();
  network->forward(noisy_images, variances).pow(2).mean().backward();
  optimizer.step();
  EXPECT_GT((network->forward(noisy_images, variances) - before).abs().max().item<float>(), 1e-4f);
  // channels_last and back (what difflab's placement does) keep it working.
  for (auto& parameter : network->parameters())
    if (parameter.dim() == 4) parameter.set_data(parameter.data().contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_EQ(network->forward(noisy_images, variances).sizes(), noisy_images.sizes());
}

TEST(TorchScriptNetwork, RefusesMissingFilesAndModulesThatChangeTheShape) {
  difflab::test::TempDir dir;
  Params params;
  params.set("model", (dir / "absent.pt").string());
  EXPECT_THROW(make<Network>(Family::network, "torchscript", params, {8, 1}), Error);
  params.set("model", scripted_conv(dir / "shrinks.pt", false));
  try {
    make<Network>(Family::network, "torchscript", params, {8, 1});
    FAIL() << "a module that returns [1, 1, 6, 6] for [1, 1, 8, 8] was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.context().key, "network.model");
    EXPECT_NE(std::string(error.what()).find("must return the input's shape"), std::string::npos) << error.what();
  }
}
