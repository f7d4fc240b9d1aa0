// The fused CPU operations of precision.h against LibTorch's own operations and float64 formulas:
// values, gradients, running statistics, the layouts they accept and the fallbacks they take.
#include "difflab/precision.h"

#include <cstdio>
#include <mutex>
#include <set>
#include <thread>

#include "difflab/parallel.h"

#include <torch/torch.h>

#include "difflab/cpu.h"
#include "model/diffusion_model.h"
#include "test_support.h"

using namespace difflab;

namespace {

constexpr auto kChannelsLast = torch::MemoryFormat::ChannelsLast;

torch::nn::BatchNorm2d seed_norm(int64_t channels) {  // the seed's BatchNormalization
  return torch::nn::BatchNorm2d(
      torch::nn::BatchNorm2dOptions(channels).affine(false).momentum(0.01).eps(1e-3));
}

// Activations with a per-channel offset and scale, so that normalising them matters.
torch::Tensor activations(int64_t batch, int64_t channels, int64_t size) {
  torch::manual_seed(7);
  torch::Tensor offsets = torch::linspace(-3.0, 3.0, channels).view({1, channels, 1, 1});
  torch::Tensor scales = torch::linspace(0.5, 4.0, channels).view({1, channels, 1, 1});
  return (torch::randn({batch, channels, size, size}) * scales + offsets).contiguous(kChannelsLast);
}

double max_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Batch normalisation (no affine) in float64: (x - mean) / sqrt(var + eps), biased variance.
torch::Tensor reference_norm(const torch::Tensor& x, double eps) {
  torch::Tensor x64 = x.to(torch::kFloat64);
  torch::Tensor mean = x64.mean({0, 2, 3}, true);
  torch::Tensor variance = (x64 - mean).pow(2).mean({0, 2, 3}, true);
  return (x64 - mean) / torch::sqrt(variance + eps);
}

}  // namespace

TEST(FusedBatchNorm, MatchesFloat64FormulaAndLibTorchsRunningStatistics) {
  torch::Tensor x = activations(8, 24, 12);
  auto fused = seed_norm(24), plain = seed_norm(24);
  torch::Tensor y;
  {
    AutocastGuard autocast(torch::kCPU, true);
    y = batch_norm(*fused, x);
  }
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(y.is_contiguous(kChannelsLast));
  torch::Tensor expected = reference_norm(x, 1e-3);
  // bf16 keeps 8 significant bits: each value within half a unit in the last place.
  EXPECT_LT(((y.to(torch::kFloat64) - expected).abs() / expected.abs().clamp_min(1e-3)).max().item<double>(),
            1.0 / 256);

  plain(x);  // LibTorch's BatchNorm2d on the same batch updates the same statistics
  EXPECT_LT(max_error(fused->running_mean, plain->running_mean), 1e-6);
  EXPECT_LT(max_error(fused->running_var, plain->running_var), 1e-6);
  EXPECT_EQ(fused->num_batches_tracked.item<int64_t>(), 1);
}

TEST(FusedBatchNorm, StatisticsAreExactForLargeOffsets) {
  // A mean 1e4 times the spread: the shifted sums keep the variance exact where E[x^2] - E[x]^2
  // in float32 would lose it.
  torch::Tensor x = (activations(4, 8, 16) + 1e4).contiguous(kChannelsLast);
  auto norm = seed_norm(8);
  AutocastGuard autocast(torch::kCPU, true);
  torch::Tensor y = batch_norm(*norm, x);
  EXPECT_LT(max_error(y, reference_norm(x, 1e-3)), 0.05);
  EXPECT_NEAR(y.to(torch::kFloat64).pow(2).mean().item<double>(), 1.0, 0.01);
}

TEST(FusedBatchNorm, GradientMatchesLibTorchsBatchNorm) {
  torch::Tensor x = activations(8, 24, 12);
  torch::Tensor weights = torch::randn_like(x).to(torch::kBFloat16).to(torch::kFloat32);
  auto fused = seed_norm(24), plain = seed_norm(24);

  torch::Tensor x_fused = x.detach().requires_grad_();
  {
    AutocastGuard autocast(torch::kCPU, true);
    (batch_norm(*fused, x_fused).to(torch::kFloat32) * weights).sum().backward();
  }
  torch::Tensor x_plain = x.to(torch::kFloat64).detach().requires_grad_();
  plain->to(torch::kFloat64);
  (plain(x_plain) * weights.to(torch::kFloat64)).sum().backward();

  // The fused backward uses the bf16 output the convolution saw for x_hat: ~2^-8 relative.
  const double scale = x_plain.grad().abs().max().item<double>();
  EXPECT_LT(max_error(x_fused.grad(), x_plain.grad()) / scale, 0.02);
  // And it is a real gradient: zero mean per channel, orthogonal to x_hat (BN's invariances).
  EXPECT_LT(x_fused.grad().to(torch::kFloat64).sum({0, 2, 3}).abs().max().item<double>() / scale, 0.05);
}

TEST(FusedBatchNorm, ResidualBranchGetsTheInputAndAddsItsGradient) {
  torch::Tensor x = activations(4, 16, 8).requires_grad_();
  for (bool residual_conv : {false, true}) {
    auto norm = seed_norm(16);
    x.mutable_grad() = torch::Tensor();
    torch::Tensor residual_weights = torch::randn_like(x);
    BlockInput in;
    {
      AutocastGuard autocast(torch::kCPU, true);
      in = normalise_block_input(*norm, x, residual_conv);
    }
    EXPECT_EQ(in.residual.scalar_type(), residual_conv ? torch::kBFloat16 : torch::kFloat32);
    EXPECT_LE(max_error(in.residual, x), residual_conv ? 4.0 * 16 / 256 : 0.0);  // |x| < 16
    // Only the residual branch used: x's gradient is exactly that branch's.
    (in.residual.to(torch::kFloat32) * residual_weights).sum().backward();
    const torch::Tensor expected = residual_conv ? residual_weights.to(torch::kBFloat16) : residual_weights;
    EXPECT_LT(max_error(x.grad(), expected), 1e-6) << "residual_conv " << residual_conv;
  }
}

// A U-Net's [x, skip]: normalised as two parts, exactly what normalising their concatenation gives
// (outputs, running statistics), and each part gets its slice of the concatenation's gradient.
TEST(FusedBatchNorm, TwoPartsAreTheirConcatenation) {
  torch::Tensor x = activations(4, 24, 8).requires_grad_();
  torch::Tensor skip = (activations(4, 8, 8) * 3 + 1).contiguous(kChannelsLast).requires_grad_();
  torch::Tensor joined = torch::cat({x.detach(), skip.detach()}, 1).contiguous(kChannelsLast).requires_grad_();
  auto parts_norm = seed_norm(32), joined_norm = seed_norm(32);
  BlockInput parts, whole;
  {
    AutocastGuard autocast(torch::kCPU, true);
    parts = normalise_block_input(*parts_norm, x, skip, /*residual_conv=*/true);
    whole = normalise_block_input(*joined_norm, joined, /*residual_conv=*/true);
  }
  EXPECT_TRUE(torch::equal(parts.normalised, whole.normalised));
  EXPECT_TRUE(torch::equal(parts.residual, whole.residual));
  EXPECT_TRUE(parts.normalised.is_contiguous(kChannelsLast));
  EXPECT_TRUE(torch::equal(parts_norm->running_mean, joined_norm->running_mean));
  EXPECT_TRUE(torch::equal(parts_norm->running_var, joined_norm->running_var));
  EXPECT_EQ(parts_norm->num_batches_tracked.item<int64_t>(), 1);
  torch::manual_seed(3);
  const torch::Tensor weights = torch::randn_like(joined), residual_weights = torch::randn_like(joined);
  auto objective = [&](const BlockInput& in) {
    return (in.normalised.to(torch::kFloat32) * weights).sum() +
           (in.residual.to(torch::kFloat32) * residual_weights).sum();
  };
  objective(parts).backward();
  objective(whole).backward();
  EXPECT_TRUE(torch::equal(x.grad(), joined.grad().slice(1, 0, 24)));
  EXPECT_TRUE(torch::equal(skip.grad(), joined.grad().slice(1, 24, 32)));
  EXPECT_GT(skip.grad().abs().max().item<double>(), 0.1);
  // Outside autocast it is the plain concatenation through LibTorch's BatchNorm.
  BlockInput plain = normalise_block_input(*parts_norm, x, skip, /*residual_conv=*/true);
  EXPECT_EQ(plain.normalised.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(plain.residual, joined));
}

TEST(FusedBatchNorm, EvaluationUsesRunningStatistics) {
  torch::Tensor x = activations(4, 8, 8);
  auto norm = seed_norm(8);
  {
    torch::NoGradGuard no_grad;
    norm->running_mean.copy_(torch::linspace(-1.0, 1.0, 8));
    norm->running_var.copy_(torch::linspace(0.5, 2.0, 8));
  }
  norm->eval();
  torch::Tensor y;
  {
    AutocastGuard autocast(torch::kCPU, true);
    y = batch_norm(*norm, x);
  }
  torch::Tensor expected =
      (x.to(torch::kFloat64) - norm->running_mean.to(torch::kFloat64).view({1, 8, 1, 1})) /
      torch::sqrt(norm->running_var.to(torch::kFloat64).view({1, 8, 1, 1}) + 1e-3);
  EXPECT_LT(max_error(y, expected) / expected.abs().max().item<double>(), 1.0 / 256);
  EXPECT_EQ(norm->num_batches_tracked.item<int64_t>(), 0);
}

TEST(FusedBatchNorm, DoesNotDependOnTheThreadCount) {
  torch::Tensor x = activations(16, 32, 16).requires_grad_();
  torch::Tensor weights = torch::randn_like(x);
  auto run = [&](int threads) {
    torch::set_num_threads(threads);
    auto norm = seed_norm(32);
    x.mutable_grad() = torch::Tensor();
    AutocastGuard autocast(torch::kCPU, true);
    torch::Tensor y = batch_norm(*norm, x);
    (y.to(torch::kFloat32) * weights).sum().backward();
    return std::make_pair(y.to(torch::kFloat32), x.grad().clone());
  };
  const auto one = run(1), two = run(2);
  EXPECT_TRUE(torch::equal(one.first, two.first));
  EXPECT_TRUE(torch::equal(one.second, two.second));
}

TEST(FusedBatchNorm, FallsBackToLibTorchOutsideBf16AutocastOrChannelsLast) {
  torch::Tensor x = activations(4, 8, 8);
  auto norm = seed_norm(8), plain = seed_norm(8);
  torch::Tensor y = batch_norm(*norm, x);  // no autocast: LibTorch's BatchNorm, float32
  EXPECT_EQ(y.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(y, plain(x)));
  AutocastGuard autocast(torch::kCPU, true);
  EXPECT_EQ(batch_norm(*norm, x.contiguous()).scalar_type(), torch::kFloat32);  // NCHW: not fused
}

TEST(FusedSwish, MatchesFloat64SwishAndItsDerivative) {
  torch::Tensor x =
      torch::cat({torch::randn({4000}) * 4.0,
                  torch::tensor({-1000.0f, -100.0f, -80.0f, -20.0f, 0.0f, 20.0f, 80.0f, 100.0f, 1000.0f})})
          .to(torch::kBFloat16)
          .requires_grad_();
  torch::Tensor y = swish(x);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  torch::Tensor x64 = x.detach().to(torch::kFloat64);
  torch::Tensor s = torch::sigmoid(x64);
  torch::Tensor expected = x64 * s;
  // Relative to 1e-6 at least: results below FLT_MIN are 0.
  EXPECT_LT(((y.to(torch::kFloat64) - expected).abs() / expected.abs().clamp_min(1e-6)).max().item<double>(),
            1.0 / 256);
  torch::Tensor g = torch::linspace(-1.0, 1.0, x.numel()).to(torch::kBFloat16);
  y.backward(g);
  torch::Tensor expected_grad = g.to(torch::kFloat64) * s * (1.0 + x64 * (1.0 - s));  // d/dx x sigmoid(x)
  EXPECT_LT((x.grad().to(torch::kFloat64) - expected_grad).abs().max().item<double>(), 1.0 / 128);
  EXPECT_FALSE(torch::isnan(y).any().item<bool>());
  EXPECT_TRUE(torch::isnan(swish(torch::full({3}, NAN).to(torch::kBFloat16))).all().item<bool>());
  // float32 input: LibTorch's silu, unchanged.
  torch::Tensor x32 = torch::randn({100});
  EXPECT_TRUE(torch::equal(swish(x32), torch::silu(x32)));
}

// Every bf16 input: swish is the nearest bf16 to the float64 value (neither neighbouring bf16 is
// closer), and its gradient is the float64 derivative s (1 + x (1 - s)) to within bf16 rounding.
TEST(FusedSwish, IsTheNearestBf16ForEveryInput) {
  auto as_bf16 = [](const torch::Tensor& bits) { return bits.to(torch::kInt16).view(torch::kBFloat16); };
  torch::Tensor x = as_bf16(torch::arange(1 << 16, torch::kInt32)).requires_grad_();
  torch::Tensor y = swish(x);
  y.backward(torch::ones_like(y));
  torch::Tensor x64 = x.detach().to(torch::kFloat64);
  torch::Tensor s = torch::sigmoid(x64);
  torch::Tensor expected = x64 * s;
  const torch::Tensor checked = torch::isfinite(x64) & (expected.abs() >= 1.2e-38);
  ASSERT_GT(checked.sum().item<int64_t>(), 45000);  // all but NaNs, infinities and x below ~ -88
  torch::Tensor bits = y.detach().view(torch::kInt16).to(torch::kInt32);
  auto distance = [&](const torch::Tensor& b) { return (as_bf16(b).to(torch::kFloat64) - expected).abs(); };
  const torch::Tensor own = distance(bits);
  const torch::Tensor closer_neighbour = (distance(bits + 1) < own) | (distance(bits - 1) < own);
  EXPECT_EQ((closer_neighbour & checked).sum().item<int64_t>(), 0);
  torch::Tensor derivative = s * (1.0 + x64 * torch::sigmoid(-x64));
  torch::Tensor error = (x.grad().to(torch::kFloat64) - derivative).abs() / derivative.abs().clamp_min(1e-30);
  EXPECT_LT(error.masked_select(checked & (derivative.abs() >= 1.2e-38)).max().item<double>(), 1.0 / 256);
  // The limits: swish(-inf) = 0 and swish(inf) = inf, with derivatives 0 and 1.
  torch::Tensor infinities = torch::tensor({-INFINITY, INFINITY}).to(torch::kBFloat16).requires_grad_();
  torch::Tensor at_infinity = swish(infinities);
  at_infinity.backward(torch::ones_like(at_infinity));
  EXPECT_EQ(at_infinity[0].item<float>(), 0.0f);
  EXPECT_EQ(at_infinity[1].item<float>(), INFINITY);
  EXPECT_EQ(infinities.grad()[0].item<float>(), 0.0f);
  EXPECT_EQ(infinities.grad()[1].item<float>(), 1.0f);
}

TEST(FusedAdd, AddsInFloat32AndReturnsEachGradientInItsInputsDtype) {
  torch::Tensor a =
      torch::randn({2, 8, 4, 4}).contiguous(kChannelsLast).to(torch::kBFloat16).requires_grad_();
  torch::Tensor b = torch::randn({2, 8, 4, 4}).contiguous(kChannelsLast).requires_grad_();
  torch::Tensor sum = add_as_float(a, b);
  EXPECT_EQ(sum.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(sum, a.to(torch::kFloat32) + b));
  torch::Tensor g = torch::randn_like(sum);
  sum.backward(g);
  EXPECT_EQ(a.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(a.grad(), g.to(torch::kBFloat16)));  // round to nearest even, as LibTorch
  EXPECT_TRUE(torch::equal(b.grad(), g));

  torch::Tensor c = torch::randn({2, 8, 4, 4}).to(torch::kBFloat16);
  EXPECT_TRUE(
      torch::equal(add_as_float(a.detach(), c), a.detach().to(torch::kFloat32) + c.to(torch::kFloat32)));
  // Different layouts: the unfused sum.
  EXPECT_TRUE(torch::equal(add_as_float(a.detach(), b.detach().contiguous()),
                           a.detach().to(torch::kFloat32) + b.detach()));
}

TEST(FusedUpsample, MatchesLibTorchsBilinearInterpolationAndItsGradient) {
  namespace F = torch::nn::functional;
  for (int64_t size : {1, 2, 5, 8}) {
    torch::Tensor x = torch::randn({3, 6, size, size + 1}).contiguous(kChannelsLast).requires_grad_();
    torch::Tensor y = upsample_bilinear_2x(x);
    torch::Tensor x_plain = x.detach().to(torch::kFloat64).requires_grad_();
    torch::Tensor expected = F::interpolate(x_plain, F::InterpolateFuncOptions()
                                                         .scale_factor(std::vector<double>{2.0, 2.0})
                                                         .mode(torch::kBilinear)
                                                         .align_corners(false));
    ASSERT_EQ(y.sizes(), expected.sizes());
    EXPECT_LT(max_error(y, expected), 1e-5) << "size " << size;
    // The gradient arrives as a channel slice of a concatenation with a skip connection.
    torch::Tensor skip = torch::randn({3, 4, 2 * size, 2 * size + 2}).contiguous(kChannelsLast);
    torch::Tensor weights = torch::randn({3, 10, 2 * size, 2 * size + 2}, torch::kFloat64);
    (torch::cat({y, skip}, 1) * weights.to(torch::kFloat32)).sum().backward();
    (expected * weights.narrow(1, 0, 6)).sum().backward();
    EXPECT_LT(max_error(x.grad(), x_plain.grad()), 1e-4) << "size " << size;
  }
}

// difflab's loops give the same bits at every instruction set this CPU has (difflab/cpu.h): the
// batch norm, swish, addition and upsampling, forward and backward, at each level against the
// baseline x86-64 loops.
TEST(FusedKernels, GiveTheSameBitsAtEveryLevel) {
  auto run = [] {
    std::vector<torch::Tensor> out;
    torch::Tensor x = activations(4, 24, 9).requires_grad_();
    torch::Tensor skip = activations(4, 8, 18).requires_grad_();
    auto norm = seed_norm(24);
    AutocastGuard autocast(torch::kCPU, true);
    torch::Tensor y = swish(batch_norm(*norm, x));
    torch::Tensor up = upsample_bilinear_2x(y);
    torch::Tensor sum = add_as_float(up.narrow(1, 0, 8), skip.to(torch::kBFloat16));
    torch::manual_seed(3);
    (sum * torch::randn_like(sum)).sum().backward();
    for (const torch::Tensor& t : {y, up, sum, x.grad(), skip.grad(), norm->running_mean, norm->running_var})
      out.push_back(t.detach().to(torch::kFloat32).clone());
    return out;
  };
  const std::vector<torch::Tensor> baseline = [&] {
    ScopedKernelIsa level(KernelIsa::baseline);
    return run();
  }();
  for (KernelIsa isa : test::higher_kernel_isas()) {
    ScopedKernelIsa level(isa);
    const std::vector<torch::Tensor> results = run();
    for (size_t i = 0; i < results.size(); ++i)
      EXPECT_TRUE(torch::equal(results[i], baseline[i])) << kernel_isa_name(isa) << ", output " << i;
  }
}

// The fused kernels' loops run on LibTorch's OpenMP team, whichever compiler built them
// (difflab/parallel.h): with two threads both take a chunk, the chunks tile the range once, and an
// exception thrown in a worker's chunk reaches the caller.
TEST(ParallelFor, RunsOnLibTorchsThreadsAndRethrows) {
  const int before = torch::get_num_threads();
  torch::set_num_threads(2);
  std::mutex mutex;
  std::set<std::thread::id> threads;
  std::vector<int> visits(1000, 0);
  difflab::parallel_for(0, 1000, 1, [&](int64_t begin, int64_t end) {
    std::lock_guard<std::mutex> lock(mutex);
    threads.insert(std::this_thread::get_id());
    for (int64_t i = begin; i < end; ++i) ++visits[static_cast<size_t>(i)];
  });
  EXPECT_EQ(threads.size(), 2u) << "the loop ran on one thread: LibTorch's OpenMP runtime was not called";
  EXPECT_EQ(std::count(visits.begin(), visits.end(), 1), 1000);
  // Below the grain: the calling thread alone.
  threads.clear();
  difflab::parallel_for(0, 10, 100, [&](int64_t, int64_t) { threads.insert(std::this_thread::get_id()); });
  EXPECT_EQ(threads, std::set<std::thread::id>{std::this_thread::get_id()});
  EXPECT_THROW(difflab::parallel_for(0, 1000, 1,
                                     [&](int64_t begin, int64_t) {
                                       if (begin > 0) throw std::runtime_error("chunk");
                                     }),
               std::runtime_error);
  torch::set_num_threads(before);
}
