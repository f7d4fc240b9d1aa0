// unet: the DDPM-style U-Net variant of the seed's network (Ho et al. 2020, appendix B; Nichol &
// Dhariwal 2021): the noise-variance embedding goes through an MLP and is added inside every
// residual block (instead of being concatenated once at the input), GroupNorm instead of
// BatchNorm, dropout in the blocks, and multi-head self-attention after the blocks of the
// resolutions listed in attention_resolutions. Same level structure as residual_unet: blocks and
// skips per level, average pooling down, bilinear upsampling and skip concatenation up, the last
// convolution initialised to zero.
#include <algorithm>
#include <cmath>
#include <torch/torch.h>

#include "difflab/embedding.h"
#include "difflab/error.h"
#include "difflab/network.h"
#include "difflab/plugin.h"
#include "difflab/precision.h"

using namespace difflab;
namespace F = torch::nn::functional;

namespace {

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels));
}

// GroupNorm → SiLU → conv, + the embedding's projection, GroupNorm → SiLU → dropout → conv,
// + the (1×1-projected) input.
struct UNetBlockImpl : torch::nn::Module {
  UNetBlockImpl(int64_t input_width, int64_t width, int64_t embedding_width, int64_t groups, double dropout) {
    if (input_width != width) residual_conv = register_module("residual_conv", same_conv(input_width, width, 1));
    norm1 = register_module("norm1", group_norm(groups, input_width));
    conv1 = register_module("conv1", same_conv(input_width, width, 3));
    embedding = register_module("embedding", torch::nn::Linear(embedding_width, width));
    norm2 = register_module("norm2", group_norm(groups, width));
    drop = register_module("dropout", torch::nn::Dropout(dropout));
    conv2 = register_module("conv2", same_conv(width, width, 3));
  }

  torch::Tensor forward(const torch::Tensor& input, const torch::Tensor& embedded) {
    const torch::Tensor residual = residual_conv ? float_activations(residual_conv(input)) : input;
    torch::Tensor x = float_activations(conv1(torch::silu(norm1(input))));
    x = x + float_activations(embedding(embedded)).unsqueeze(-1).unsqueeze(-1);
    x = float_activations(conv2(drop(torch::silu(norm2(x)))));
    return x + residual;
  }

  torch::nn::Conv2d residual_conv{nullptr}, conv1{nullptr}, conv2{nullptr};
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear embedding{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(UNetBlock);

// Multi-head self-attention over the H·W positions (Vaswani et al. 2017), with a residual
// connection; the output projection starts at zero, so a new block is the identity.
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t width, int64_t groups, int64_t heads) : heads(heads) {
    norm = register_module("norm", group_norm(groups, width));
    qkv = register_module("qkv", same_conv(width, 3 * width, 1));
    projection = register_module("projection", same_conv(width, width, 1));
  }

  torch::Tensor forward(const torch::Tensor& input) {
    const int64_t batch = input.size(0), width = input.size(1), positions = input.size(2) * input.size(3);
    const int64_t head_width = width / heads;
    const torch::Tensor qkv_values = float_activations(qkv(norm(input))).reshape({batch, 3, heads, head_width, positions});
    const torch::Tensor queries = qkv_values.select(1, 0), keys = qkv_values.select(1, 1),
                        values = qkv_values.select(1, 2);  // [B, heads, d, HW]
    // softmax(Qᵀ K / √d) over keys: [B, heads, HW, HW]
    const torch::Tensor weights =
        torch::softmax(torch::matmul(queries.transpose(-1, -2), keys) / std::sqrt(static_cast<double>(head_width)), -1);
    const torch::Tensor attended = torch::matmul(values, weights.transpose(-1, -2));  // [B, heads, d, HW]
    return input + float_activations(projection(attended.reshape(input.sizes())));
  }

  int64_t heads;
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d qkv{nullptr}, projection{nullptr};
};
TORCH_MODULE(Attention);

}  // namespace

class UNet : public Network {
 public:
  UNet(const Params& params, const BuildContext& context)
      : widths_(params.integers("widths")),
        block_depth_(params.integer("block_depth")),
        embedding_dims_(params.integer("embedding_dims")),
        embedding_max_frequency_(params.real("embedding_max_frequency")) {
    check_levels(context.image_size, widths_.size());
    const int64_t groups = params.integer("groups"), heads = params.integer("heads");
    const double dropout = params.real("dropout");
    const std::vector<int64_t> attention_resolutions = params.integers("attention_resolutions");
    auto attends = [&](size_t level) {
      const int64_t resolution = context.image_size >> level;
      return std::find(attention_resolutions.begin(), attention_resolutions.end(), resolution) !=
             attention_resolutions.end();
    };
    const int64_t embedding_width = 4 * widths_[0];
    embedding_in_ = register_module("embedding_in", torch::nn::Linear(embedding_dims_, embedding_width));
    embedding_out_ = register_module("embedding_out", torch::nn::Linear(embedding_width, embedding_width));
    input_conv_ = register_module("input_conv", same_conv(context.image_channels, widths_[0], 3));

    // Each block is followed by attention (or by an empty slot) so that forward() walks both lists.
    int64_t channels = widths_[0];
    std::vector<int64_t> skip_channels;
    auto add = [&](torch::nn::ModuleList& blocks, torch::nn::ModuleList& attentions, int64_t width, size_t level) {
      blocks->push_back(UNetBlock(channels, width, embedding_width, groups, dropout));
      channels = width;
      if (attends(level)) {
        attentions->push_back(Attention(width, groups, heads));
      } else {
        attentions->push_back(torch::nn::Identity());
      }
    };
    for (size_t level = 0; level + 1 < widths_.size(); ++level)
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        add(down_blocks_, down_attention_, widths_[level], level);
        skip_channels.push_back(channels);
      }
    for (int64_t depth = 0; depth < block_depth_; ++depth)
      add(mid_blocks_, mid_attention_, widths_.back(), widths_.size() - 1);
    for (size_t level = widths_.size() - 1; level-- > 0;)
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        channels += skip_channels.back();
        skip_channels.pop_back();
        add(up_blocks_, up_attention_, widths_[level], level);
      }
    register_module("down_blocks", down_blocks_);
    register_module("down_attention", down_attention_);
    register_module("mid_blocks", mid_blocks_);
    register_module("mid_attention", mid_attention_);
    register_module("up_blocks", up_blocks_);
    register_module("up_attention", up_attention_);
    output_norm_ = register_module("output_norm", group_norm(groups, channels));
    output_conv_ = register_module("output_conv", same_conv(channels, context.image_channels, 3));

    torch::NoGradGuard no_grad;
    for (auto& module : modules(/*include_self=*/false))
      if (auto* layer = module->as<torch::nn::Conv2d>()) {
        torch::nn::init::xavier_uniform_(layer->weight);
        torch::nn::init::zeros_(layer->bias);
      }
    for (auto& module : modules(/*include_self=*/false))
      if (auto* attention = module->as<Attention>()) torch::nn::init::zeros_(attention->projection->weight);
    torch::nn::init::zeros_(output_conv_->weight);  // predicts the targets' mean (0) at first
  }

  static ParamSchema schema() {
    return {
        ParamSpec::integers("widths", {32, 64, 96, 128}, "channels per resolution level").at_least(1).non_empty(),
        ParamSpec::integer("block_depth", 2, "residual blocks per level").at_least(1).at_most(64),
        ParamSpec::integer("embedding_dims", 32, "sinusoidal embedding size (even)").at_least(2),
        ParamSpec::real("embedding_max_frequency", 1000.0, "highest embedding frequency").greater_than(1),
        ParamSpec::integer("groups", 8, "GroupNorm groups (must divide every width)").at_least(1),
        ParamSpec::integers("attention_resolutions", {8}, "feature-map sides with self-attention (e.g. [16, 8]); [] = none")
            .at_least(1),
        ParamSpec::integer("heads", 1, "attention heads (must divide the widths that attend)").at_least(1),
        ParamSpec::real("dropout", 0.0, "dropout in the residual blocks").at_least(0).less_than(1),
    };
  }

  static ParamIssue validate(const Params& params) {
    if (params.integer("embedding_dims") % 2 != 0)
      return {"embedding_dims", "embedding_dims must be even (half sines, half cosines)"};
    if (ParamIssue too_large = check_unet_size(params); !too_large.key.empty()) return too_large;
    for (int64_t width : params.integers("widths")) {
      if (width % params.integer("groups") != 0)
        return {"groups", "groups must divide every width (" + std::to_string(width) + ")"};
      if (width % params.integer("heads") != 0)
        return {"heads", "heads must divide every width (" + std::to_string(width) + ")"};
    }
    return {};
  }

  torch::Tensor forward(const torch::Tensor& noisy_images, const torch::Tensor& noise_variances) override {
    torch::Tensor embedded =
        sinusoidal_embedding(noise_variances, embedding_dims_, embedding_max_frequency_).flatten(1);
    embedded = float_activations(embedding_out_(torch::silu(float_activations(embedding_in_(embedded)))));
    torch::Tensor x = float_activations(input_conv_(noisy_images));
    auto block = [&](torch::nn::ModuleList& blocks, torch::nn::ModuleList& attentions, size_t index) {
      x = blocks[index]->as<UNetBlock>()->forward(x, embedded);
      if (auto* attention = attentions[index]->as<Attention>()) x = attention->forward(x);
    };
    std::vector<torch::Tensor> skips;
    size_t index = 0;
    for (size_t level = 0; level + 1 < widths_.size(); ++level) {
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        block(down_blocks_, down_attention_, index++);
        skips.push_back(x);
      }
      x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(2));
    }
    for (size_t mid = 0; mid < mid_blocks_->size(); ++mid) block(mid_blocks_, mid_attention_, mid);
    index = 0;
    for (size_t level = widths_.size() - 1; level-- > 0;) {
      x = F::interpolate(x, F::InterpolateFuncOptions()
                                .scale_factor(std::vector<double>{2.0, 2.0})
                                .mode(torch::kBilinear)
                                .align_corners(false));
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        x = torch::cat({x, skips.back()}, /*dim=*/1);
        skips.pop_back();
        block(up_blocks_, up_attention_, index++);
      }
    }
    return output_conv_(torch::silu(output_norm_(x)));
  }

 private:
  std::vector<int64_t> widths_;
  int64_t block_depth_;
  int64_t embedding_dims_;
  double embedding_max_frequency_;
  torch::nn::Linear embedding_in_{nullptr}, embedding_out_{nullptr};
  torch::nn::Conv2d input_conv_{nullptr}, output_conv_{nullptr};
  torch::nn::GroupNorm output_norm_{nullptr};
  torch::nn::ModuleList down_blocks_, down_attention_, mid_blocks_, mid_attention_, up_blocks_, up_attention_;
};

DIFFLAB_PLUGIN(network, "unet", UNet, "1.0.0",
               "U-Net with the embedding in every block, GroupNorm, self-attention, dropout")
