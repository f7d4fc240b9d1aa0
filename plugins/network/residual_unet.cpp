// residual_unet: exactly the seed's get_network — a U-Net of residual blocks that sees the noise
// variance through a sinusoidal embedding concatenated at the input. Keras -> LibTorch: NHWC ->
// NCHW; BatchNormalization(center=False, scale=False, momentum 0.99, epsilon 1e-3) ->
// BatchNorm2d(affine=false, momentum 0.01, eps 1e-3); "same" 3x3 -> padding 1; bilinear
// UpSampling2D -> align_corners=false; Conv2D kernels glorot-uniform, biases zero.
#include <torch/torch.h>

#include "difflab/embedding.h"
#include "difflab/error.h"
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
  torch::Tensor forward(const torch::Tensor& input) {
    const BlockInput in = normalise_block_input(*norm, input, /*residual_conv=*/!residual_conv.is_empty());
    const torch::Tensor residual = residual_conv ? residual_conv(in.residual) : in.residual;
    const torch::Tensor x = swish(conv1(in.normalised));
    return add_as_float(conv2(x), residual);
  }

  torch::nn::Conv2d residual_conv{nullptr}, conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
};
TORCH_MODULE(ResidualBlock);

}  // namespace

class ResidualUNet : public Network {
 public:
  ResidualUNet(const Params& params, const BuildContext& context)
      : widths_(params.integers("widths")),
        block_depth_(params.integer("block_depth")),
        embedding_dims_(params.integer("embedding_dims")),
        embedding_max_frequency_(params.real("embedding_max_frequency")) {
    check_levels(context.image_size, widths_.size());

    input_conv_ = register_module("input_conv", same_conv(context.image_channels, widths_[0], 1));
    int64_t channels = widths_[0] + embedding_dims_;
    std::vector<int64_t> skip_channels;
    for (size_t level = 0; level + 1 < widths_.size(); ++level) {
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        down_blocks_->push_back(ResidualBlock(channels, widths_[level]));
        channels = widths_[level];
        skip_channels.push_back(channels);
      }
    }
    for (int64_t depth = 0; depth < block_depth_; ++depth) {
      mid_blocks_->push_back(ResidualBlock(channels, widths_.back()));
      channels = widths_.back();
    }
    for (size_t level = widths_.size() - 1; level-- > 0;) {
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        channels += skip_channels.back();
        skip_channels.pop_back();
        up_blocks_->push_back(ResidualBlock(channels, widths_[level]));
        channels = widths_[level];
      }
    }
    register_module("down_blocks", down_blocks_);
    register_module("mid_blocks", mid_blocks_);
    register_module("up_blocks", up_blocks_);
    output_conv_ = register_module("output_conv", same_conv(channels, context.image_channels, 1));

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

  torch::Tensor forward(const torch::Tensor& noisy_images,
                        const torch::Tensor& noise_variances) override {
    // [B, E, 1, 1] -> [B, E, H, W]: nearest upsampling of a 1x1 map is a broadcast.
    torch::Tensor e = sinusoidal_embedding(noise_variances, embedding_dims_, embedding_max_frequency_)
                          .expand({-1, -1, noisy_images.size(2), noisy_images.size(3)});
    torch::Tensor x = float_activations(input_conv_(noisy_images));
    // A one-channel input gives a contiguous x even under channels_last; the blocks' fused
    // operations (precision.h) need their configured layout.
    x = torch::cat({x, e.to(x.scalar_type())}, /*dim=*/1).contiguous(weight_memory_format(*this));

    std::vector<torch::Tensor> skips;
    size_t block = 0;
    for (size_t level = 0; level + 1 < widths_.size(); ++level) {
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        x = down_blocks_[block++]->as<ResidualBlock>()->forward(x);
        skips.push_back(x);
      }
      x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(2));
    }
    for (const auto& mid : *mid_blocks_) x = mid->as<ResidualBlock>()->forward(x);
    block = 0;
    for (size_t level = widths_.size() - 1; level-- > 0;) {
      x = upsample_bilinear_2x(x);
      for (int64_t depth = 0; depth < block_depth_; ++depth) {
        x = torch::cat({x, skips.back()}, /*dim=*/1);
        skips.pop_back();
        x = up_blocks_[block++]->as<ResidualBlock>()->forward(x);
      }
    }
    return output_conv_(x);
  }

 private:
  std::vector<int64_t> widths_;
  int64_t block_depth_;
  int64_t embedding_dims_;
  double embedding_max_frequency_;
  torch::nn::Conv2d input_conv_{nullptr}, output_conv_{nullptr};
  torch::nn::ModuleList down_blocks_, mid_blocks_, up_blocks_;
};

DIFFLAB_PLUGIN(network, "residual_unet", ResidualUNet, "1.0.0",
               "the seed's residual U-Net with a sinusoidal noise-variance embedding")
