// FusedAdamW (model/fused_adamw.h) against LibTorch's AdamW: the same parameters, moments and
// EMA to float32 rounding, through the CPU loop and through the whole-buffer tensor operations;
// checkpoints that move between the two; buffers rebuilt when a storage is replaced.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "difflab/cpu.h"
#include "model/adamw_kernel.h"
#include "model/diffusion_model.h"
#include "model/fused_adamw.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::make;

namespace {

// Conv weights in channels_last (as training stores them), a bias, a matrix: the kinds of tensors
// a network hands the optimiser.
std::vector<torch::Tensor> parameters(uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> made{
      torch::randn({24, 16, 3, 3}).contiguous(torch::MemoryFormat::ChannelsLast), torch::randn({24}),
      torch::randn({5, 7}) * 0.1, torch::randn({1000}) * 0.01, torch::randn({3, 24, 1, 1})};
  for (auto& tensor : made) tensor.set_requires_grad(true);
  return made;
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone().set_requires_grad(t.requires_grad()));
  return out;
}

// Gradient `step` for each parameter, the same for every optimiser, written in place where the
// parameter has one (as backward accumulates into a zeroed gradient).
void set_gradients(const std::vector<torch::Tensor>& tensors, int64_t step) {
  torch::manual_seed(1000 + step);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors.size(); ++i) {
    torch::Tensor t = tensors[i];
    // Large and small, and for one tensor near eps (1e-7), where the denominator's eps counts.
    torch::Tensor g = torch::randn(t.sizes()) * (step % 3 == 0 ? 10.0 : 0.01) * (i == 3 ? 1e-6 : 1.0);
    if (t.grad().defined())
      t.mutable_grad().copy_(g);
    else
      t.mutable_grad() = g;
  }
}

torch::optim::AdamWOptions options() { return torch::optim::AdamWOptions(1e-2).weight_decay(0.05).eps(1e-7); }

// The largest difference relative to the largest value, over every tensor.
double max_relative_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = b[i].abs().max().item<double>();
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / std::max(scale, 1e-30));
  }
  return worst;
}

// `steps` steps of each optimiser on the same gradients; the fused one's parameters, its EMA
// (decay 0.9 from step 1, 0 at step 0, as a warm-up starts) and LibTorch's, with LibTorch's EMA.
struct Compared {
  double parameters, ema, moved;
  bool fused;
};
Compared compare(int64_t steps, bool tensor_operations) {
  std::vector<torch::Tensor> reference = parameters(7), fused_parameters = copies(reference);
  std::vector<torch::Tensor> reference_ema = copies(reference), fused_ema = copies(reference);
  for (auto& t : reference_ema) t.set_requires_grad(false);
  for (auto& t : fused_ema) t.set_requires_grad(false);
  const std::vector<torch::Tensor> initial = copies(reference);
  torch::optim::AdamW adamw(reference, options());
  FusedAdamW fused(fused_parameters, options());
  fused.use_tensor_operations(tensor_operations);
  bool all_fused = true;
  for (int64_t step = 0; step < steps; ++step) {
    const double decay = step == 0 ? 0.0 : 0.9;
    set_gradients(reference, step);
    adamw.step();
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < reference.size(); ++i)
        decay == 0.0 ? reference_ema[i].copy_(reference[i]) : reference_ema[i].lerp_(reference[i], 1.0 - decay);
    }
    set_gradients(fused_parameters, step);
    fused.step_with_ema(fused_ema, decay);
    all_fused = all_fused && fused.last_step_fused();
  }
  return {max_relative_difference(fused_parameters, reference), max_relative_difference(fused_ema, reference_ema),
          max_relative_difference(reference, initial), all_fused};
}

}  // namespace

// Both routes agree with torch::optim::AdamW to a few float32 roundings (2^-23 = 1.2e-7 relative)
// after 40 steps, while the parameters themselves moved by far more than that.
TEST(FusedAdamW, MatchesLibTorchAdamWThroughTheCpuLoop) {
  const Compared result = compare(40, /*tensor_operations=*/false);
  EXPECT_TRUE(result.fused);
  EXPECT_LT(result.parameters, 2e-6);
  EXPECT_LT(result.ema, 2e-6);
  EXPECT_GT(result.moved, 1e-2);
}

TEST(FusedAdamW, MatchesLibTorchAdamWThroughTensorOperations) {
  const Compared result = compare(40, /*tensor_operations=*/true);
  EXPECT_TRUE(result.fused);
  EXPECT_LT(result.parameters, 2e-6);
  EXPECT_LT(result.ema, 2e-6);
}

TEST(FusedAdamW, PlainStepIsAdamW) {
  std::vector<torch::Tensor> reference = parameters(3), fused_parameters = copies(reference);
  torch::optim::AdamW adamw(reference, options());
  FusedAdamW fused(fused_parameters, options());
  for (int64_t step = 0; step < 10; ++step) {
    set_gradients(reference, step);
    adamw.step();
    set_gradients(fused_parameters, step);
    fused.step();
    EXPECT_TRUE(fused.last_step_fused());
  }
  EXPECT_LT(max_relative_difference(fused_parameters, reference), 1e-6);
  EXPECT_EQ(fused.flattenings(), 1);
  int64_t count = 0;
  for (const auto& t : reference) count += t.numel();
  EXPECT_EQ(fused.flat_size(), count);
}

// The checkpoint is AdamW's own: saved by one, loaded by the other, the next steps agree; the
// archive is no larger (the parameters' views do not drag the flat buffers into it).
TEST(FusedAdamW, CheckpointsMoveBetweenFusedAndLibTorch) {
  std::vector<torch::Tensor> fused_parameters = parameters(11), reference = copies(fused_parameters);
  FusedAdamW fused(fused_parameters, options());
  torch::optim::AdamW adamw(reference, options());
  for (int64_t step = 0; step < 5; ++step) {
    set_gradients(fused_parameters, step);
    fused.step();
    set_gradients(reference, step);
    adamw.step();
  }
  std::ostringstream fused_bytes, reference_bytes;
  {
    torch::serialize::OutputArchive archive;
    fused.save(archive);
    archive.save_to(fused_bytes);
    torch::serialize::OutputArchive other;
    adamw.save(other);
    other.save_to(reference_bytes);
  }
  EXPECT_LT(fused_bytes.str().size(), reference_bytes.str().size() * 11 / 10);

  // Fused -> LibTorch, and LibTorch -> fused, each on copies of the other's parameters.
  std::vector<torch::Tensor> into_libtorch = copies(fused_parameters), into_fused = copies(reference);
  torch::optim::AdamW loaded_adamw(into_libtorch, options());
  FusedAdamW loaded_fused(into_fused, options());
  {
    std::istringstream in(fused_bytes.str());
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    loaded_adamw.load(archive);
    std::istringstream in_reference(reference_bytes.str());
    torch::serialize::InputArchive other;
    other.load_from(in_reference);
    loaded_fused.load(other);
  }
  for (int64_t step = 5; step < 12; ++step) {
    for (auto* tensors : {&fused_parameters, &reference, &into_libtorch, &into_fused}) set_gradients(*tensors, step);
    fused.step();
    adamw.step();
    loaded_adamw.step();
    loaded_fused.step();
    EXPECT_TRUE(loaded_fused.last_step_fused());
  }
  EXPECT_LT(max_relative_difference(into_libtorch, reference), 1e-6);
  EXPECT_LT(max_relative_difference(into_fused, reference), 1e-6);
  EXPECT_LT(max_relative_difference(fused_parameters, reference), 1e-6);
}

// A tensor whose storage is replaced (a checkpoint loaded into the module, a move) is taken back
// into the buffers at the next step, values and all.
TEST(FusedAdamW, RebuildsItsBuffersWhenAStorageIsReplaced) {
  std::vector<torch::Tensor> fused_parameters = parameters(5), reference = copies(fused_parameters);
  FusedAdamW fused(fused_parameters, options());
  torch::optim::AdamW adamw(reference, options());
  for (int64_t step = 0; step < 6; ++step) {
    if (step == 3) {
      torch::NoGradGuard no_grad;
      fused_parameters[0].set_data(fused_parameters[0].detach().clone() + 0.5);
      reference[0].add_(0.5);
    }
    set_gradients(fused_parameters, step);
    fused.step();
    set_gradients(reference, step);
    adamw.step();
  }
  EXPECT_EQ(fused.flattenings(), 2);
  EXPECT_LT(max_relative_difference(fused_parameters, reference), 1e-6);
}

// Where it cannot fuse (amsgrad), it is AdamW's own step, exactly.
TEST(FusedAdamW, FallsBackToAdamWWhereItCannotFuse) {
  std::vector<torch::Tensor> fused_parameters = parameters(9), reference = copies(fused_parameters);
  FusedAdamW fused(fused_parameters, options().amsgrad(true));
  torch::optim::AdamW adamw(reference, options().amsgrad(true));
  for (int64_t step = 0; step < 4; ++step) {
    set_gradients(fused_parameters, step);
    fused.step();
    EXPECT_FALSE(fused.last_step_fused());
    set_gradients(reference, step);
    adamw.step();
  }
  for (size_t i = 0; i < reference.size(); ++i) EXPECT_TRUE(torch::equal(fused_parameters[i], reference[i]));
}

// One step's float32 error, per element, of any implementation of AdamW + the EMA lerp that rounds
// each operation once (with or without fused multiply-adds, in any order of the products): the
// bound of a first-order error analysis, u = 2^-24 the unit roundoff, on the exact step computed
// in float64 from the same float32 inputs and the same float32 scalars. Two implementations each
// within it differ by at most twice it.
//   M = b1 m + (1-b1) g          |dM| <= u (|b1 m| + |(1-b1) g| + |M|)      two products, a sum
//   V = b2 v + (1-b2) g^2        |dV| <= 3u V                               all terms >= 0
//   D = sqrt(V) / c2 + eps       |dD| <= 4.5u D     (3u/2 from V, u each: sqrt, division, sum)
//   U = s M / D                  |dU| <= s |dM| / D + 6.5u |U|   (4.5u from D, u each: /, *)
//   P = p d - U                  |dP| <= u |p d| + u |P| + |dU|
//   E = lerp(e, P, w)            |dE| <= 2 |dP| + 2u |P - e| + u |E|     (either of lerp's forms)
// (Kingma & Ba 2015, alg. 1; Loshchilov & Hutter 2019, alg. 2; Higham 2002, sec. 3.1.)
struct StepBound {
  torch::Tensor first, second, parameter, ema;  // float64, per element
};
StepBound adamw_step_bound(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m,
                           const torch::Tensor& v, const torch::Tensor& e, int64_t step, double decay) {
  const double u = std::ldexp(1.0, -24);
  const auto f = [](double value) { return static_cast<double>(static_cast<float>(value)); };
  const torch::optim::AdamWOptions o = options();
  const auto [beta1, beta2] = o.betas();
  const double b1 = f(beta1), one_minus_b1 = f(1.0 - beta1), b2 = f(beta2), one_minus_b2 = f(1.0 - beta2);
  const double c2 = f(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)))), eps = f(o.eps());
  const double s = f(o.lr() / (1.0 - std::pow(beta1, static_cast<double>(step))));
  const double d = f(1.0 - o.lr() * o.weight_decay()), w = f(1.0 - decay);
  const torch::Tensor P0 = p.to(torch::kFloat64), G = g.to(torch::kFloat64), E0 = e.to(torch::kFloat64);
  const torch::Tensor M0 = m.defined() ? m.to(torch::kFloat64) : torch::zeros_like(P0);
  const torch::Tensor V0 = v.defined() ? v.to(torch::kFloat64) : torch::zeros_like(P0);
  const torch::Tensor M = b1 * M0 + one_minus_b1 * G, V = b2 * V0 + one_minus_b2 * G * G;
  const torch::Tensor D = V.sqrt() / c2 + eps, U = s * M / D, P = P0 * d - U, E = E0 + w * (P - E0);
  const torch::Tensor dM = u * ((b1 * M0).abs() + (one_minus_b1 * G).abs() + M.abs());
  const torch::Tensor dP = u * (P0 * d).abs() + u * P.abs() + s * dM / D + 6.5 * u * U.abs();
  return {dM, 3 * u * V, dP, 2 * dP + 2 * u * (P - E0).abs() + u * E.abs()};
}

// Where two float32 tensors differ by more than `bound` (float64, per element): how many elements.
int64_t beyond(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bound) {
  const torch::Tensor difference = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs();
  return (difference > bound).sum().item<int64_t>();
}

void copy_values(const std::vector<torch::Tensor>& from, const std::vector<torch::Tensor>& to) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
}

// Through the model: backward accumulates into the flat gradient buffer (built once), and the
// fused step with the EMA does what LibTorch's AdamW followed by update_ema does, step by step.
//
// Why step by step: LibTorch's own AdamW rounds differently on different CPUs. Its vectorised
// kernels (ATEN_CPU_CAPABILITY avx2, avx512) fuse some multiply-adds and not others, its scalar
// ones (default) none; so it differs from the fused pass by one or two roundings of a step, and
// training through the network amplifies such differences from step to step (a 1e-7 change in a
// weight moves a gradient, which AdamW's normalisation turns into a whole step where the gradient
// is near zero). Chained over 6 steps they reached 1.7e-5 of the largest weight on an AMD EPYC,
// where LibTorch runs its AVX2 kernels; no float32 error analysis bounds a chaotic product, so
// the comparison is per step, each from the same state: the two models get the same gradients bit
// for bit, and each value lies within twice the per-step bound above of the other.
//
// The fused pass itself is compiled without contraction and gives the same bits at every
// instruction set (FusedAdamWKernel.GivesTheSameBitsAtEveryLevel); it used to be compiled with
// GCC's default -ffp-contract=fast for C++, under which its AVX2 and AVX-512 copies fused the
// multiply-adds and the baseline one did not.
TEST(FusedAdamW, TrainsTheModelLikeAdamWWithTheEmaInTheSamePass) {
  auto model = [] {
    Params params;
    params.set("widths", std::vector<int64_t>{8, 16});
    params.set("block_depth", int64_t{1});
    params.set("embedding_dims", int64_t{8});
    BuildContext context{16, 1};
    torch::manual_seed(21);
    return std::make_unique<DiffusionModel>(
        make<Network>(Family::network, "residual_unet", params, context),
        make<Network>(Family::network, "residual_unet", params, context), make<Schedule>(Family::schedule, "cosine"),
        make<Loss>(Family::loss, "mae"), make<Sampler>(Family::sampler, "ddim"), 16, 1);
  };
  auto fused_model = model(), reference_model = model();
  torch::manual_seed(4);
  const torch::Tensor images = torch::rand({8, 1, 16, 16});
  for (auto* m : {fused_model.get(), reference_model.get()}) {
    m->adapt(images);
    m->to(torch::kCPU, /*channels_last=*/true);
  }
  Network &net = fused_model->network(), &ema = fused_model->ema_network();
  Network &reference_net = reference_model->network(), &reference_ema = reference_model->ema_network();
  FusedAdamW fused(net.parameters(), options());
  torch::optim::AdamW adamw(reference_net.parameters(), options());
  for (int64_t step = 0; step < 6; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    // The reference starts from the fused model's state.
    copy_values(net.parameters(), reference_net.parameters());
    copy_values(net.buffers(), reference_net.buffers());
    copy_values(ema.parameters(), reference_ema.parameters());
    copy_values(ema.buffers(), reference_ema.buffers());
    if (step > 0) {
      std::stringstream bytes;
      torch::serialize::OutputArchive out;
      fused.save(out);
      out.save_to(bytes);
      torch::serialize::InputArchive in;
      in.load_from(bytes);
      adamw.load(in);
    }
    const std::vector<torch::Tensor> before = copies(net.parameters()), ema_before = copies(ema.parameters());
    std::vector<std::pair<torch::Tensor, torch::Tensor>> moments_before;
    for (size_t i = 0; i < before.size(); ++i) {
      auto [first, second] = fused.moments(i);
      moments_before.emplace_back(first.defined() ? first.clone() : first, second.defined() ? second.clone() : second);
    }

    const double decay = ema_decay(0.999, step, true);
    torch::manual_seed(100 + step);
    fused_model->train_step(images, fused, nullptr, decay);
    fused_model->update_ema_buffers(decay);
    EXPECT_TRUE(fused.last_step_fused());
    torch::manual_seed(100 + step);
    reference_model->train_step(images, adamw);
    reference_model->update_ema(decay);

    const auto parameters = net.parameters(), reference_parameters = reference_net.parameters();
    const auto ema_parameters = ema.parameters(), reference_ema_parameters = reference_ema.parameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
      SCOPED_TRACE("parameter " + std::to_string(i));
      ASSERT_TRUE(torch::equal(parameters[i].grad(), reference_parameters[i].grad()));
      const StepBound bound = adamw_step_bound(before[i], parameters[i].grad(), moments_before[i].first,
                                               moments_before[i].second, ema_before[i], step + 1, decay);
      const auto [first, second] = fused.moments(i);
      const auto& state = static_cast<const torch::optim::AdamWParamState&>(
          *adamw.state().at(c10::guts::to_string(reference_parameters[i].unsafeGetTensorImpl())));
      EXPECT_EQ(beyond(parameters[i], reference_parameters[i], 2 * bound.parameter), 0);
      EXPECT_EQ(beyond(first, state.exp_avg(), 2 * bound.first), 0);
      EXPECT_EQ(beyond(second, state.exp_avg_sq(), 2 * bound.second), 0);
      EXPECT_EQ(beyond(ema_parameters[i], reference_ema_parameters[i], 2 * bound.ema), 0);
    }
    // The batch statistics come from the same forward pass, their EMA from the same lerp.
    const auto buffers = ema.buffers(), reference_buffers = reference_ema.buffers();
    for (size_t i = 0; i < buffers.size(); ++i) EXPECT_TRUE(torch::equal(buffers[i], reference_buffers[i]));
  }
  EXPECT_EQ(fused.flattenings(), 1);
}

// The fused pass at every instruction set this CPU has gives the same bits as the baseline one,
// on values that exercise both of lerp's forms, eps and large and tiny gradients.
TEST(FusedAdamWKernel, GivesTheSameBitsAtEveryLevel) {
  torch::manual_seed(5);
  const int64_t n = 4099;  // not a multiple of any vector width: the tails run too
  const torch::Tensor g = torch::randn({n}) * torch::pow(10.0, torch::randint(-9, 2, {n}).to(torch::kFloat32));
  const torch::Tensor p0 = torch::randn({n}), m0 = torch::randn({n}) * 0.1, v0 = torch::rand({n}) * 0.01,
                      e0 = torch::randn({n});
  for (const float ema_weight : {0.1f, 0.9f}) {
    AdamWScalars scalars{};
    scalars.decay_factor = 1.0f - 1e-2f * 0.05f;
    scalars.beta1 = 0.9f;
    scalars.one_minus_beta1 = 0.1f;
    scalars.beta2 = 0.999f;
    scalars.one_minus_beta2 = 0.001f;
    scalars.bias_correction2_sqrt = 0.0547f;
    scalars.eps = 1e-7f;
    scalars.step_size = -0.0341f;
    scalars.ema_weight = ema_weight;
    std::vector<KernelIsa> levels = test::higher_kernel_isas();
    levels.insert(levels.begin(), KernelIsa::baseline);
    std::vector<std::vector<torch::Tensor>> results;
    for (KernelIsa isa : levels) {
      ScopedKernelIsa level(isa);
      std::vector<torch::Tensor> t{p0.clone(), m0.clone(), v0.clone(), e0.clone()};
      adamw_ema_pass(t[0].data_ptr<float>(), g.data_ptr<float>(), t[1].data_ptr<float>(), t[2].data_ptr<float>(),
                     t[3].data_ptr<float>(), n, scalars);
      results.push_back(t);
    }
    for (size_t level = 1; level < results.size(); ++level)
      for (size_t k = 0; k < 4; ++k) EXPECT_TRUE(torch::equal(results[level][k], results[0][k])) << level << " " << k;
  }
}

// Where LibTorch's kernels run unvectorised (ATEN_CPU_CAPABILITY=default: the isa_default
// label), they round each operation exactly as the fused pass does, so even chained training
// agrees bit for bit.
TEST(FusedAdamW, MatchesScalarLibTorchBitForBit) {
  if (aten_cpu_capability() != "DEFAULT") {
    GTEST_SKIP() << "LibTorch runs its " << aten_cpu_capability() << " kernels here (ctest -L isa_default runs this)";
  }
  const Compared result = compare(40, /*tensor_operations=*/false);
  EXPECT_EQ(result.parameters, 0.0);
  EXPECT_EQ(result.ema, 0.0);
}
