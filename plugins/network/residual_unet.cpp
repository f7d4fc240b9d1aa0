// residual_unet: exactly the seed's get_network — a U-Net of residual blocks that sees the noise
// variance through a sinusoidal embedding concatenated at the input. Keras -> LibTorch: NHWC ->
// NCHW; BatchNormalization(center=False, scale=False, momentum 0.99, epsilon 1e-3) ->
// BatchNorm2d(affine=false, momentum 0.01, eps 1e-3); "same" 3x3 -> padding 1; bilinear
// UpSampling2D -> align_corners=false; Conv2D kernels glorot-uniform, biases zero.
#include <torch/torch.h>

#include <optional>

#include "difflab/embedding.h"
#include "difflab/error.h"
#include "difflab/inference.h"
#include "difflab/network.h"
#include "difflab/plugin.h"
#include "difflab/precision.h"

using namespace difflab;
namespace F = torch::nn::functional;

namespace {

struct ResidualBlockImpl : torch::nn::Module {
  ResidualBlockImpl(int64_t input_width, int64_t width) {
    if (input_width != width) residual_conv = register_module("residual_conv", same_conv(input_width, width, 1));
    norm = register_module(
        "norm", torch::nn::BatchNorm2d(
                    torch::nn::BatchNorm2dOptions(input_width).affine(false).momentum(0.01).eps(1e-3)));
    conv1 = register_module("conv1", same_conv(input_width, width, 3));
    conv2 = register_module("conv2", same_conv(width, width, 3));
  }

  // The precision.h helpers keep this block at one pass per activation under CPU bf16 autocast
  // (the convolutions' inputs and outputs stay bf16, the residual stream float32); elsewhere they
  // are norm(x), torch::silu and +.
  // block([input, skip]) where skip (a U-Net's skip connection) is defined.
  torch::Tensor forward(const torch::Tensor& input, const torch::Tensor& skip = {}) {
    const BlockInput in = normalise_block_input(*norm, input, skip, /*residual_conv=*/!residual_conv.is_empty());
    const torch::Tensor residual = residual_conv ? residual_conv(in.residual) : in.residual;
    const torch::Tensor x = swish(conv1(in.normalised));
    return add_as_float(conv2(x), residual);
  }

  torch::nn::Conv2d residual_conv{nullptr}, conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
};
TORCH_MODULE(ResidualBlock);

namespace inf = difflab::inference;

// A residual block on the inference path: norm(x) -> conv1 + swish -> conv2 added to the residual,
// which the block's output buffer holds first (x itself, or its 1x1 convolution).
struct InferenceBlock {
  explicit InferenceBlock(ResidualBlockImpl& block)
      : norm(*block.norm),
        conv1(*block.conv1, inf::Conv::Post::swish),
        conv2(*block.conv2, inf::Conv::Post::add_to_output) {
    if (!block.residual_conv.is_empty()) residual_conv.emplace(*block.residual_conv);
  }

  // out = block(x), x the concatenation of `parts`; `normalised`, `joined` (x's channels, used for
  // a residual convolution of several parts) and `hidden` (out's channels) are scratch buffers.
  void operator()(const std::vector<inf::Activation>& parts, const inf::Activation& out,
                  const inf::Activation& normalised, const inf::Activation& joined, const inf::Activation& hidden) {
    if (!residual_conv) {
      norm(parts, normalised, &out);
    } else if (parts.size() == 1) {
      norm(parts, normalised);
      (*residual_conv)(parts[0], out);
    } else {
      norm(parts, normalised, &joined);
      (*residual_conv)(joined, out);
    }
    conv1(normalised, hidden);
    conv2(hidden, out);
  }

  inf::Normalise norm;
  inf::Conv conv1, conv2;
  std::optional<inf::Conv> residual_conv;
};

// The U-Net's layout, written once: forward()'s operations in order, each with its resolution
// level and channel counts, and which blocks hand a skip connection to which. The modules, forward()
// and the inference path's plan are all read off it, so a change of widths, block_depth or of the
// layout itself is made here alone.
struct Layout {
  enum class Kind { block, pool, upsample };
  enum class Stage { down, mid, up };  // the ModuleList a block belongs to (its parameters' names)
  struct Op {
    Kind kind;
    int64_t level;         // the resolution it produces: 0 = full size, k = 1/2^k
    int64_t in_channels;   // block: its input's (with the embedding or the skip it takes)
    int64_t out_channels;
    Stage stage = Stage::down;
    bool takes_embedding = false;  // the first block: [features, e]
    bool takes_skip = false;       // an up block: [x, the newest skip not yet taken]
    bool keeps_skip = false;       // a down block: its output is a skip for the up path
  };
  std::vector<Op> ops;
  int64_t out_channels = 0;  // the last block's (the output convolution's input)
};

// The seed's get_network: block_depth blocks per level on the way down (each one's output kept
// as a skip) with an average pool between levels, block_depth blocks at the lowest level, then
// per level an upsampling and block_depth blocks that each take the newest skip.
Layout unet_layout(const std::vector<int64_t>& widths, int64_t block_depth, int64_t embedding_dims) {
  using Kind = Layout::Kind;
  using Stage = Layout::Stage;
  const int64_t levels = static_cast<int64_t>(widths.size());
  Layout layout;
  std::vector<int64_t> skips;  // the channels of the skips not yet taken
  int64_t channels = widths[0] + embedding_dims;
  auto block = [&](int64_t level, Stage stage, bool takes_skip) {
    Layout::Op op{Kind::block, level, channels, widths[static_cast<size_t>(level)], stage};
    op.takes_embedding = layout.ops.empty();
    op.keeps_skip = stage == Stage::down;
    op.takes_skip = takes_skip;
    if (takes_skip) op.in_channels += skips.back(), skips.pop_back();
    if (op.keeps_skip) skips.push_back(op.out_channels);
    channels = op.out_channels;
    layout.ops.push_back(op);
  };
  for (int64_t level = 0; level + 1 < levels; ++level) {
    for (int64_t depth = 0; depth < block_depth; ++depth) block(level, Stage::down, false);
    layout.ops.push_back({Kind::pool, level + 1, channels, channels});
  }
  for (int64_t depth = 0; depth < block_depth; ++depth) block(levels - 1, Stage::mid, false);
  for (int64_t level = levels - 1; level-- > 0;) {
    layout.ops.push_back({Kind::upsample, level, channels, channels});
    for (int64_t depth = 0; depth < block_depth; ++depth) block(level, Stage::up, true);
  }
  layout.out_channels = channels;
  return layout;
}

}  // namespace

class ResidualUNet : public Network {
 public:
  ResidualUNet(const Params& params, const BuildContext& context)
      : widths_(params.integers("widths")),
        block_depth_(params.integer("block_depth")),
        embedding_dims_(params.integer("embedding_dims")),
        embedding_max_frequency_(params.real("embedding_max_frequency")),
        layout_((check_levels(context.image_size, widths_.size()), unet_layout(widths_, block_depth_, embedding_dims_))) {

    input_conv_ = register_module("input_conv", same_conv(context.image_channels, widths_[0], 1));
    for (const Layout::Op& op : layout_.ops) {
      if (op.kind != Layout::Kind::block) continue;
      ResidualBlock block(op.in_channels, op.out_channels);
      blocks_.push_back(block.get());
      (op.stage == Layout::Stage::down ? down_blocks_ : op.stage == Layout::Stage::mid ? mid_blocks_ : up_blocks_)
          ->push_back(block);
    }
    register_module("down_blocks", down_blocks_);
    register_module("mid_blocks", mid_blocks_);
    register_module("up_blocks", up_blocks_);
    output_conv_ = register_module("output_conv", same_conv(layout_.out_channels, context.image_channels, 1));

    torch::NoGradGuard no_grad;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* layer = module->as<torch::nn::Conv2d>()) {
        torch::nn::init::xavier_uniform_(layer->weight);  // Keras glorot_uniform
        torch::nn::init::zeros_(layer->bias);
      }
    }
    // The last convolution starts at zero: the network predicts the targets' mean (0) at first.
    torch::nn::init::zeros_(output_conv_->weight);
  }

  static ParamSchema schema() {
    return {
        ParamSpec::integers("widths", {32, 64, 96, 128}, "channels per resolution level")
            .at_least(1)
            .non_empty(),
        ParamSpec::integer("block_depth", 2, "residual blocks per level").at_least(1).at_most(64),
        ParamSpec::integer("embedding_dims", 32, "sinusoidal embedding size (even)").at_least(2),
        ParamSpec::real("embedding_max_frequency", 1000.0, "highest embedding frequency")
            .greater_than(1),
    };
  }

  static ParamIssue validate(const Params& params) {
    if (params.integer("embedding_dims") % 2 != 0)
      return {"embedding_dims", "embedding_dims must be even (half sines, half cosines)"};
    if (ParamIssue too_large = check_unet_size(params); !too_large.key.empty()) return too_large;
    return {};
  }

  std::unique_ptr<InferenceNetwork> prepare_inference() override;

  torch::Tensor forward(const torch::Tensor& noisy_images,
                        const torch::Tensor& noise_variances) override {
    // [B, E, 1, 1] -> [B, E, H, W]: nearest upsampling of a 1x1 map is a broadcast.
    torch::Tensor e = sinusoidal_embedding(noise_variances, embedding_dims_, embedding_max_frequency_)
                          .expand({-1, -1, noisy_images.size(2), noisy_images.size(3)});
    // The first block's input [features, e], never concatenated: the block takes both parts as a
    // U-Net's up block takes [x, skip] (its residual branch is a convolution, as features + e is
    // wider than widths[0]). Both are first put in the layout the fused operations (precision.h)
    // need: a one-channel input gives contiguous features even under channels_last, and the cast
    // to float32 and the change of layout are one pass.
    const auto format = weight_memory_format(*this);
    torch::Tensor features = input_conv_(noisy_images);
    features = features.to(features.is_cpu() ? torch::kFloat32 : features.scalar_type(), /*non_blocking=*/false,
                           /*copy=*/false, format);
    e = e.to(features.scalar_type()).contiguous(format);

    torch::Tensor x;
    std::vector<torch::Tensor> skips;
    size_t block = 0;
    for (const Layout::Op& op : layout_.ops) {
      if (op.kind == Layout::Kind::pool) {
        x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(2));
      } else if (op.kind == Layout::Kind::upsample) {
        x = upsample_bilinear_2x(x);
      } else if (op.takes_embedding) {
        x = blocks_[block++]->forward(features, e);
      } else if (op.takes_skip) {
        x = blocks_[block++]->forward(x, skips.back());
        skips.pop_back();
      } else {
        x = blocks_[block++]->forward(x);
      }
      if (op.keeps_skip) skips.push_back(x);
    }
    return output_conv_(x);
  }

 private:
  std::vector<int64_t> widths_;
  int64_t block_depth_;
  int64_t embedding_dims_;
  double embedding_max_frequency_;
  Layout layout_;
  torch::nn::Conv2d input_conv_{nullptr}, output_conv_{nullptr};
  torch::nn::ModuleList down_blocks_, mid_blocks_, up_blocks_;
  std::vector<ResidualBlockImpl*> blocks_;  // in the layout's order
  friend class ResidualUNetInference;
};

// forward() on the inference path (difflab/inference.h), every activation bf16 NHWC in buffers
// made once per input shape. A concatenation [x, skip] is never built on its own: the block that
// reads it normalises both parts in one pass, writing their concatenation only where a residual
// convolution needs it.
class ResidualUNetInference : public InferenceNetwork {
 public:
  explicit ResidualUNetInference(ResidualUNet& net)
      : layout_(net.layout_),
        widths_(net.widths_),
        embedding_dims_(net.embedding_dims_),
        embedding_max_frequency_(net.embedding_max_frequency_),
        input_conv_(*net.input_conv_),
        output_conv_(*net.output_conv_) {
    for (ResidualBlockImpl* block : net.blocks_) blocks_.emplace_back(*block);
  }

  torch::Tensor forward(const torch::Tensor& noisy_images, const torch::Tensor& noise_variances) override {
    torch::NoGradGuard no_grad;
    Plan& plan = plan_for(noisy_images.sizes().vec());
    inf::write(noisy_images.to(torch::kCPU, torch::kFloat32), plan.input);
    input_conv_(plan.input, plan.features);
    inf::write(sinusoidal_embedding(noise_variances.to(torch::kCPU, torch::kFloat32), embedding_dims_,
                                    embedding_max_frequency_),
               plan.embedding);
    size_t block = 0;
    for (const Step& step : plan.steps) {
      if (step.kind == Step::Kind::block) {
        blocks_[block++](step.parts, step.to, step.normalised, step.joined, step.hidden);
      } else if (step.kind == Step::Kind::pool) {
        inf::average_pool_2x(step.parts[0], step.to);
      } else {
        inf::upsample_bilinear_2x(step.parts[0], step.to);
      }
    }
    const inf::Activation& last = plan.steps.back().to;
    torch::Tensor out = torch::empty({last.batch(), last.height(), last.width(), output_conv_.out_channels()});
    output_conv_(last, out);
    return out.permute({0, 3, 1, 2});
  }

 private:
  struct Step {
    enum class Kind { block, pool, upsample } kind;
    std::vector<inf::Activation> parts;  // the input: a block's concatenated parts, or one
    inf::Activation to, normalised, joined, hidden;
  };
  struct Plan {
    std::vector<int64_t> shape;
    inf::Activation input, features, embedding;
    std::vector<Step> steps;
    std::vector<torch::Tensor> scratch;  // per resolution: the blocks' normalised, joined and hidden buffers
  };

  Plan& plan_for(const std::vector<int64_t>& shape) {
    for (Plan& plan : plans_)
      if (plan.shape == shape) return plan;
    plans_.push_back(build(shape));
    return plans_.back();
  }

  Plan build(const std::vector<int64_t>& shape) const {
    const int64_t batch = shape[0], levels = static_cast<int64_t>(widths_.size());
    auto allocate = [&](int64_t level, int64_t channels) {
      return inf::allocate(batch, shape[2] >> level, shape[3] >> level, channels);
    };
    Plan plan;
    plan.shape = shape;
    plan.input = allocate(0, shape[1]);
    plan.features = allocate(0, widths_[0]);
    plan.embedding = allocate(0, embedding_dims_);
    std::vector<std::pair<int64_t, Step>> blocks;  // (level, step) before the scratch is known
    auto block = [&](int64_t level, std::vector<inf::Activation> parts, int64_t width) {
      Step step{Step::Kind::block, std::move(parts), allocate(level, width), {}, {}, {}};
      blocks.emplace_back(level, step);
      plan.steps.push_back(step);
      return step.to;
    };

    std::vector<inf::Activation> skips;
    std::vector<inf::Activation> x{plan.features, plan.embedding};
    for (const Layout::Op& op : layout_.ops) {
      if (op.kind == Layout::Kind::block) {
        if (op.takes_skip) x.push_back(skips.back()), skips.pop_back();
        x = {block(op.level, x, op.out_channels)};
        if (op.keeps_skip) skips.push_back(x[0]);
      } else {
        const inf::Activation resized = allocate(op.level, op.out_channels);
        plan.steps.push_back({op.kind == Layout::Kind::pool ? Step::Kind::pool : Step::Kind::upsample, x, resized, {},
                              {}, {}});
        x = {resized};
      }
    }

    // Scratch: each resolution's widest need, the blocks' buffers dense views at its start.
    std::vector<int64_t> widest(static_cast<size_t>(levels), 0);
    for (const auto& [level, step] : blocks) {
      int64_t in = 0;
      for (const auto& part : step.parts) in += part.channels;
      widest[level] = std::max(widest[level], 2 * in + step.to.channels);
    }
    for (int64_t level = 0; level < levels; ++level)
      plan.scratch.push_back(torch::empty({batch * (shape[2] >> level) * (shape[3] >> level) * widest[level]},
                                          torch::dtype(torch::kBFloat16)));
    size_t index = 0;
    for (Step& step : plan.steps) {
      if (step.kind != Step::Kind::block) continue;
      const int64_t level = blocks[index++].first;
      const int64_t pixels = batch * step.to.height() * step.to.width();
      int64_t in = 0;
      for (const auto& part : step.parts) in += part.channels;
      const torch::Tensor& scratch = plan.scratch[level];
      auto view = [&](int64_t first, int64_t channels) {
        return inf::Activation{scratch.narrow(0, pixels * first, pixels * channels)
                                   .view({batch, step.to.height(), step.to.width(), channels}),
                               0, channels};
      };
      step.normalised = view(0, in);
      step.joined = view(in, in);
      step.hidden = view(2 * in, step.to.channels);
    }
    return plan;
  }

  Layout layout_;
  std::vector<int64_t> widths_;
  int64_t embedding_dims_;
  double embedding_max_frequency_;
  inf::Conv input_conv_, output_conv_;
  std::vector<InferenceBlock> blocks_;
  std::vector<Plan> plans_;
};

std::unique_ptr<InferenceNetwork> ResidualUNet::prepare_inference() {
  if (!inference::available() || is_training() || !input_conv_->weight.is_cpu()) return nullptr;
  return std::make_unique<ResidualUNetInference>(*this);
}

DIFFLAB_PLUGIN(network, "residual_unet", ResidualUNet, "1.0.0",
               "the seed's residual U-Net with a sinusoidal noise-variance embedding")
