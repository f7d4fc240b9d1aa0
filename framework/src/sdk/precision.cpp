// The fused CPU operations behind precision.h: BatchNorm (no affine) to bf16 with a residual
// block's input, swish in bf16, mixed-dtype residual additions and 2x bilinear upsampling, each a
// custom autograd function over the loops of simd_kernels.h. Reductions use a fixed chunking of the
// rows, so results do not depend on the thread count.
#include "difflab/precision.h"

#include "difflab/parallel.h"
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "simd_kernels.h"

namespace difflab {

bool cpu_bf16_autocast() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(at::kCPU) && at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16;
#else
  return at::autocast::is_cpu_enabled() && at::autocast::get_autocast_cpu_dtype() == at::kBFloat16;
#endif
}

namespace {

using namespace simd;

constexpr int64_t kGrain = 1 << 15;  // elements per task for elementwise loops
constexpr int64_t kChunkRows = 256;  // rows per partial sum: fixed, for determinism

const bf16_bits* bf16_data(const torch::Tensor& t) {
  return reinterpret_cast<const bf16_bits*>(t.data_ptr<at::BFloat16>());
}
bf16_bits* bf16_data(torch::Tensor& t) { return reinterpret_cast<bf16_bits*>(t.data_ptr<at::BFloat16>()); }

// `t` in `dtype` with exactly the strides of `like` (a dense tensor), copying only if needed.
torch::Tensor matching(const torch::Tensor& t, const torch::Tensor& like, torch::ScalarType dtype) {
  if (t.scalar_type() == dtype && t.strides() == like.strides()) return t;
  torch::Tensor out = at::empty_like(like, like.options().dtype(dtype));
  out.copy_(t);
  return out;
}

bool dense(const torch::Tensor& t) {
  return t.is_contiguous() || t.is_contiguous(torch::MemoryFormat::ChannelsLast);
}

template <typename Kernel>
void elementwise(int64_t n, Kernel kernel) {
  difflab::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { kernel(begin, end - begin); });
}

// Per-channel sums over the rows of an NHWC tensor, reduced chunk by chunk in float64.
template <typename ChunkSums>
std::pair<std::vector<double>, std::vector<double>> channel_sums(int64_t rows, int64_t channels,
                                                                 ChunkSums chunk_sums) {
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  std::vector<float> partial(static_cast<size_t>(2 * chunks * channels), 0.0f);
  difflab::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t first = chunk * kChunkRows;
      float* first_sum = partial.data() + 2 * chunk * channels;
      chunk_sums(first, std::min(kChunkRows, rows - first), first_sum, first_sum + channels);
    }
  });
  std::vector<double> first(static_cast<size_t>(channels), 0.0), second(static_cast<size_t>(channels), 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t c = 0; c < channels; ++c) {
      first[c] += partial[2 * chunk * channels + c];
      second[c] += partial[(2 * chunk + 1) * channels + c];
    }
  return {std::move(first), std::move(second)};
}

// BatchNorm without affine parameters on a float32 NHWC tensor x, with bf16 output y, and the
// block's residual input r: x itself, or x in bf16 when it feeds a 1x1 convolution. x is the
// channel concatenation of `first` and `second` (empty for none: autograd functions take no
// undefined tensors), a U-Net's [x, skip], normalised without being built in float32. Batch
// statistics in training (biased variance to normalise, unbiased to update the running variance,
// as torch.nn.BatchNorm2d), running statistics in evaluation. The backward pass adds r's gradient
// to the normalisation's in the same pass, so neither a cast nor autograd's separate gradient
// accumulation touches x's gradient again.
struct NormaliseBlockInput : torch::autograd::Function<NormaliseBlockInput> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* context,
                                                const torch::Tensor& first, const torch::Tensor& second,
                                                torch::Tensor running_mean, torch::Tensor running_var,
                                                bool training, double momentum, double eps, bool residual_bf16) {
    std::vector<torch::Tensor> parts{first};
    if (second.numel() > 0) parts.push_back(second);
    TORCH_CHECK(parts.size() == 1 || residual_bf16, "batch_norm: a concatenation needs a residual convolution");
    int64_t channels = 0;
    for (const auto& part : parts) channels += part.size(1);
    const int64_t rows = first.numel() / first.size(1);
    std::vector<float> mean(static_cast<size_t>(channels));
    torch::Tensor inverse_std = torch::empty({channels}, first.options());
    float* inverse_std_data = inverse_std.data_ptr<float>();
    if (training) {
      TORCH_CHECK(rows > 1, "batch_norm: expected more than 1 value per channel when training");
      torch::Tensor batch_mean = torch::empty({channels}, first.options().dtype(torch::kFloat64));
      torch::Tensor batch_var = torch::empty({channels}, first.options().dtype(torch::kFloat64));
      int64_t first_channel = 0;
      for (const auto& part : parts) {
        const int64_t part_channels = part.size(1);
        const float* data = part.data_ptr<float>();
        std::vector<float> shift(data, data + part_channels);
        auto [sum, square_sum] =
            channel_sums(rows, part_channels, [&](int64_t first_row, int64_t count, float* s, float* q) {
              shifted_sums(data + first_row * part_channels, part_channels, count, part_channels, shift.data(), s, q);
            });
        for (int64_t c = 0; c < part_channels; ++c) {
          const int64_t k = first_channel + c;
          const double mean_shifted = sum[c] / static_cast<double>(rows);
          const double variance =
              std::max(0.0, square_sum[c] / static_cast<double>(rows) - mean_shifted * mean_shifted);
          batch_mean.data_ptr<double>()[k] = shift[c] + mean_shifted;
          batch_var.data_ptr<double>()[k] = variance * static_cast<double>(rows) / static_cast<double>(rows - 1);
          mean[k] = static_cast<float>(shift[c] + mean_shifted);
          inverse_std_data[k] = static_cast<float>(1.0 / std::sqrt(variance + eps));
        }
        first_channel += part_channels;
      }
      running_mean.mul_(1.0 - momentum).add_(batch_mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1.0 - momentum).add_(batch_var.to(running_var.scalar_type()), momentum);
    } else {
      const torch::Tensor running = running_mean.to(torch::kFloat32).contiguous();
      std::copy_n(running.data_ptr<float>(), channels, mean.begin());
      inverse_std.copy_(torch::rsqrt(running_var.to(torch::kFloat64) + eps));
    }
    const auto nhwc = torch::MemoryFormat::ChannelsLast;
    torch::Tensor y = torch::empty({first.size(0), channels, first.size(2), first.size(3)},
                                   first.options().dtype(torch::kBFloat16).memory_format(nhwc));
    torch::Tensor residual = residual_bf16 ? at::empty_like(y) : first;
    bf16_bits* y_data = bf16_data(y);
    bf16_bits* residual_data = residual_bf16 ? bf16_data(residual) : nullptr;
    difflab::parallel_for(0, rows, std::max<int64_t>(1, kGrain / channels), [&](int64_t begin, int64_t end) {
      int64_t first_channel = 0;
      for (const auto& part : parts) {
        const int64_t part_channels = part.size(1);
        const int64_t out = begin * channels + first_channel;
        normalise_rows(part.data_ptr<float>() + begin * part_channels, part_channels, end - begin, part_channels,
                       mean.data() + first_channel, inverse_std_data + first_channel, y_data + out,
                       residual_data ? residual_data + out : nullptr, channels);
        first_channel += part_channels;
      }
    });
    context->save_for_backward({y, inverse_std});
    context->saved_data["training"] = training;
    context->saved_data["first_channels"] = first.size(1);
    return {y, residual};
  }

  // dx = inverse_std (g - mean(g) - y mean(g y)) + g_residual in training (Ioffe & Szegedy 2015,
  // sec. 3, without gamma; y = x_hat, the bf16 output the convolution saw), inverse_std g +
  // g_residual in evaluation; split back into the two parts' gradients.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = context->get_saved_variables();
    const torch::Tensor& y = saved[0];
    const float* inverse_std = saved[1].data_ptr<float>();
    const int64_t channels = y.size(1);
    const int64_t rows = y.numel() / channels;
    const bf16_bits* y_data = bf16_data(y);
    std::vector<float> offset(static_cast<size_t>(channels), 0.0f), slope(offset);
    torch::Tensor g;
    if (grad_outputs[0].defined()) {
      g = matching(grad_outputs[0], y, torch::kBFloat16);
    } else {
      g = torch::zeros_like(y);
    }
    const bf16_bits* g_data = bf16_data(g);
    if (context->saved_data["training"].toBool()) {
      auto [g_sum, g_y_sum] =
          channel_sums(rows, channels, [&](int64_t first, int64_t count, float* s, float* q) {
            gradient_sums(g_data + first * channels, y_data + first * channels, count, channels, s, q);
          });
      for (int64_t c = 0; c < channels; ++c) {
        offset[c] = static_cast<float>(inverse_std[c] * g_sum[c] / static_cast<double>(rows));
        slope[c] = static_cast<float>(inverse_std[c] * g_y_sum[c] / static_cast<double>(rows));
      }
    }
    // The residual branch's gradient, in the layout of y and the dtype it came in.
    torch::Tensor g_residual = grad_outputs[1];
    const float* residual_float = nullptr;
    const bf16_bits* residual_bf16 = nullptr;
    if (g_residual.defined()) {
      g_residual = matching(
          g_residual, y, g_residual.scalar_type() == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat32);
      if (g_residual.scalar_type() == torch::kBFloat16)
        residual_bf16 = bf16_data(g_residual);
      else
        residual_float = g_residual.data_ptr<float>();
    }
    const int64_t first_channels = context->saved_data["first_channels"].toInt();
    std::vector<torch::Tensor> dx;
    for (const int64_t part_channels : {first_channels, channels - first_channels})
      if (part_channels > 0)
        dx.push_back(torch::empty({y.size(0), part_channels, y.size(2), y.size(3)},
                                  y.options().dtype(torch::kFloat32).memory_format(torch::MemoryFormat::ChannelsLast)));
    difflab::parallel_for(0, rows, std::max<int64_t>(1, kGrain / channels), [&](int64_t begin, int64_t end) {
      int64_t first_channel = 0;
      for (auto& part : dx) {
        const int64_t part_channels = part.size(1);
        const int64_t in = begin * channels + first_channel;
        normalise_backward_rows(g_data + in, y_data + in, channels, end - begin, part_channels,
                                inverse_std + first_channel, offset.data() + first_channel,
                                slope.data() + first_channel, residual_float ? residual_float + in : nullptr,
                                residual_bf16 ? residual_bf16 + in : nullptr,
                                part.data_ptr<float>() + begin * part_channels, part_channels);
        first_channel += part_channels;
      }
    });
    return {dx[0],
            dx.size() > 1 ? dx[1] : torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

struct SiluBF16 : torch::autograd::Function<SiluBF16> {
  static torch::Tensor forward(torch::autograd::AutogradContext* context, const torch::Tensor& x) {
    torch::Tensor y = at::empty_like(x);
    const bf16_bits* x_data = bf16_data(x);
    bf16_bits* y_data = bf16_data(y);
    elementwise(x.numel(),
                [&](int64_t begin, int64_t n) { silu_forward(x_data + begin, y_data + begin, n); });
    context->save_for_backward({x});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    const torch::Tensor x = context->get_saved_variables()[0];
    const torch::Tensor g = matching(grad_outputs[0], x, torch::kBFloat16);
    torch::Tensor dx = at::empty_like(x);
    const bf16_bits* g_data = bf16_data(g);
    const bf16_bits* x_data = bf16_data(x);
    bf16_bits* dx_data = bf16_data(dx);
    elementwise(x.numel(), [&](int64_t begin, int64_t n) {
      silu_backward(g_data + begin, x_data + begin, dx_data + begin, n);
    });
    return {dx};
  }
};

// A dense float32 tensor in bf16, with the same strides, in one pass.
torch::Tensor dense_to_bf16(const torch::Tensor& g) {
  torch::Tensor out = at::empty_like(g, g.options().dtype(torch::kBFloat16));
  const float* g_data = g.data_ptr<float>();
  bf16_bits* out_data = bf16_data(out);
  elementwise(g.numel(),
              [&](int64_t begin, int64_t n) { float_to_bf16(g_data + begin, out_data + begin, n); });
  return out;
}

// a + b in float32 for a bf16 and b bf16 or float32, both dense with the same strides.
struct AddAsFloat : torch::autograd::Function<AddAsFloat> {
  static torch::Tensor forward(torch::autograd::AutogradContext* context, const torch::Tensor& a,
                               const torch::Tensor& b) {
    torch::Tensor out = at::empty_like(a, a.options().dtype(torch::kFloat32));
    const bf16_bits* a_data = bf16_data(a);
    float* out_data = out.data_ptr<float>();
    if (b.scalar_type() == torch::kBFloat16) {
      const bf16_bits* b_data = bf16_data(b);
      elementwise(a.numel(), [&](int64_t begin, int64_t n) {
        add_bf16_bf16(a_data + begin, b_data + begin, out_data + begin, n);
      });
    } else {
      const float* b_data = b.data_ptr<float>();
      elementwise(a.numel(), [&](int64_t begin, int64_t n) {
        add_bf16_float(a_data + begin, b_data + begin, out_data + begin, n);
      });
    }
    context->saved_data["b_bf16"] = b.scalar_type() == torch::kBFloat16;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    torch::Tensor g = grad_outputs[0].to(torch::kFloat32);
    if (!dense(g)) g = g.contiguous();
    torch::Tensor a_grad = dense_to_bf16(g);
    torch::Tensor b_grad = context->saved_data["b_bf16"].toBool() ? a_grad : g;
    return {a_grad, b_grad};
  }
};

// The distance in elements between neighbouring pixels of an NHWC tensor whose channels are
// contiguous (a channels_last tensor, or a channel slice of one), or 0 for any other layout.
int64_t nhwc_pixel_stride(const torch::Tensor& t) {
  if (t.dim() != 4 || t.stride(1) != 1) return 0;
  const int64_t pixel = t.stride(3);
  if (pixel < t.size(1) || t.stride(2) != t.size(3) * pixel || t.stride(0) != t.size(2) * t.size(3) * pixel)
    return 0;
  return pixel;
}

// Bilinear 2x upsampling (align_corners = false) of a float32 channels_last tensor. The backward
// pass reads the output gradient in place when it is a channel slice of a larger one, which it is
// when the upsampled tensor is concatenated with a skip connection, as in a U-Net.
struct Upsample2x : torch::autograd::Function<Upsample2x> {
  static torch::Tensor forward(torch::autograd::AutogradContext* context, const torch::Tensor& x) {
    const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
    torch::Tensor out = torch::empty({batch, channels, 2 * height, 2 * width},
                                     x.options().memory_format(torch::MemoryFormat::ChannelsLast));
    const float* in_data = x.data_ptr<float>();
    float* out_data = out.data_ptr<float>();
    const int64_t out_row = 2 * width * channels;
    difflab::parallel_for(0, batch * 2 * height, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        upsample2x_forward_row(in_data + (r / (2 * height)) * height * width * channels, height, width,
                               channels, r % (2 * height), out_data + r * out_row);
    });
    context->saved_data["shape"] = x.sizes().vec();
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    const std::vector<int64_t> shape = context->saved_data["shape"].toIntVector();
    const int64_t batch = shape[0], channels = shape[1], height = shape[2], width = shape[3];
    torch::Tensor g = grad_outputs[0].to(torch::kFloat32);
    int64_t pixel_stride = nhwc_pixel_stride(g);
    if (pixel_stride == 0) {
      g = g.contiguous(torch::MemoryFormat::ChannelsLast);
      pixel_stride = channels;
    }
    torch::Tensor dx = torch::empty(shape, g.options().memory_format(torch::MemoryFormat::ChannelsLast));
    const float* g_data = g.data_ptr<float>();
    float* dx_data = dx.data_ptr<float>();
    difflab::parallel_for(0, batch * height, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(static_cast<size_t>(2 * width * channels));
      for (int64_t r = begin; r < end; ++r)
        upsample2x_backward_row(g_data + (r / height) * 4 * height * width * pixel_stride, pixel_stride,
                                height, width, channels, r % height, scratch.data(),
                                dx_data + r * width * channels);
    });
    return {dx};
  }
};

bool fusable_cpu(const torch::Tensor& x, torch::ScalarType dtype) {
  return x.is_cpu() && x.scalar_type() == dtype && x.numel() > 0 && !x.is_sparse();
}

}  // namespace

BlockInput normalise_block_input(torch::nn::BatchNorm2dImpl& norm, const torch::Tensor& x,
                                 bool residual_conv) {
  return normalise_block_input(norm, x, torch::Tensor(), residual_conv);
}

BlockInput normalise_block_input(torch::nn::BatchNorm2dImpl& norm, const torch::Tensor& x, const torch::Tensor& skip,
                                 bool residual_conv) {
  const auto& options = norm.options;
  auto fusable_part = [](const torch::Tensor& part) {
    return fusable_cpu(part, torch::kFloat32) && part.dim() == 4 &&
           part.is_contiguous(torch::MemoryFormat::ChannelsLast);
  };
  const bool fused = cpu_bf16_autocast() && fusable_part(x) &&
                     (!skip.defined() || (residual_conv && fusable_part(skip) && skip.size(0) == x.size(0) &&
                                          skip.size(2) == x.size(2) && skip.size(3) == x.size(3))) &&
                     !options.affine() && options.track_running_stats() && options.momentum().has_value();
  if (!fused) {
    const torch::Tensor joined = skip.defined() ? torch::cat({x, skip}, /*dim=*/1) : x;
    return {norm.forward(joined), joined};
  }
  const int64_t channels = x.size(1) + (skip.defined() ? skip.size(1) : 0);
  TORCH_CHECK(channels == options.num_features(), "batch_norm: expected ", options.num_features(),
              " channels, got ", channels);
  if (norm.is_training()) norm.num_batches_tracked += 1;
  const torch::Tensor second = skip.defined() ? skip : torch::empty({0}, x.options());
  auto outputs = NormaliseBlockInput::apply(x, second, norm.running_mean, norm.running_var, norm.is_training(),
                                            *options.momentum(), options.eps(), residual_conv);
  return {outputs[0], outputs[1]};
}

torch::Tensor batch_norm(torch::nn::BatchNorm2dImpl& norm, const torch::Tensor& x) {
  return normalise_block_input(norm, x, /*residual_conv=*/false).normalised;
}

torch::Tensor upsample_bilinear_2x(const torch::Tensor& x) {
  if (fusable_cpu(x, torch::kFloat32) && x.dim() == 4 && x.is_contiguous(torch::MemoryFormat::ChannelsLast))
    return Upsample2x::apply(x);
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .scale_factor(std::vector<double>{2.0, 2.0})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

torch::Tensor swish(const torch::Tensor& x) {
  if (!fusable_cpu(x, torch::kBFloat16) || !dense(x)) return torch::silu(x);
  return SiluBF16::apply(x);
}

torch::Tensor add_as_float(const torch::Tensor& a, const torch::Tensor& b) {
  const bool a_bf16 = fusable_cpu(a, torch::kBFloat16), b_bf16 = fusable_cpu(b, torch::kBFloat16);
  if (!a_bf16 && !b_bf16) return a + b;
  const torch::Tensor& low = a_bf16 ? a : b;  // the bf16 one
  const torch::Tensor& other = a_bf16 ? b : a;
  const bool fused = dense(low) && other.is_cpu() && other.sizes() == low.sizes() &&
                     other.strides() == low.strides() &&
                     (other.scalar_type() == torch::kBFloat16 || other.scalar_type() == torch::kFloat32);
  if (!fused) return float_activations(a) + float_activations(b);
  return AddAsFloat::apply(low, other);
}

}  // namespace difflab
