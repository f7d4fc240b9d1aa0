// FusedAdamW (model/fused_adamw.h) against LibTorch's AdamW: the same parameters, moments and
// EMA to float32 rounding, through the CPU loop and through the whole-buffer tensor operations;
// checkpoints that move between the two; buffers rebuilt when a storage is replaced.
#include <sstream>

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

// Through the model: backward accumulates into the flat gradient buffer (built once), and the
// fused step with the EMA matches LibTorch's AdamW followed by update_ema.
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
  FusedAdamW fused(fused_model->network().parameters(), options());
  torch::optim::AdamW adamw(reference_model->network().parameters(), options());
  for (int64_t step = 0; step < 6; ++step) {
    const double decay = ema_decay(0.999, step, true);
    torch::manual_seed(100 + step);
    fused_model->train_step(images, fused, nullptr, decay);
    fused_model->update_ema_buffers(decay);
    EXPECT_TRUE(fused.last_step_fused());
    torch::manual_seed(100 + step);
    reference_model->train_step(images, adamw);
    reference_model->update_ema(decay);
  }
  EXPECT_EQ(fused.flattenings(), 1);
  Network &net = fused_model->network(), &ema = fused_model->ema_network();
  Network &reference_net = reference_model->network(), &reference_ema = reference_model->ema_network();
  EXPECT_LT(max_relative_difference(net.parameters(), reference_net.parameters()), 1e-5);
  EXPECT_LT(max_relative_difference(ema.parameters(), reference_ema.parameters()), 1e-5);
  EXPECT_LT(max_relative_difference(ema.buffers(), reference_ema.buffers()), 1e-5);
}
