// The inference path's building blocks (inference.h): convolutions as oneDNN primitives with
// post-operations, and the bf16 NHWC elementwise passes around them (simd_kernels.cpp).
#include "difflab/inference.h"

#include "difflab/parallel.h"
#include <ATen/record_function.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "difflab/error.h"
#include "simd_kernels.h"

#ifdef DIFFLAB_HAVE_DNNL
#include <dnnl.hpp>
#endif

namespace difflab {

InferenceNetwork::~InferenceNetwork() = default;

namespace inference {
namespace {

using simd::bf16_bits;

constexpr int64_t kGrainPixels = 256;  // pixels per task of an elementwise pass

const bf16_bits* data(const Activation& a) {
  return reinterpret_cast<const bf16_bits*>(a.storage.data_ptr<at::BFloat16>()) + a.offset;
}
bf16_bits* mutable_data(const Activation& a) {
  return reinterpret_cast<bf16_bits*>(a.storage.data_ptr<at::BFloat16>()) + a.offset;
}

[[maybe_unused]] void check_dense(const Activation& a, const char* what) {
  TORCH_CHECK(a.offset == 0 && a.channels == a.stride(), what, ": expected a dense buffer, not a channel slice");
}

void check_activation(const Activation& a, const char* what) {
  TORCH_CHECK(a.storage.defined() && a.storage.dim() == 4 && a.storage.scalar_type() == torch::kBFloat16 &&
                  a.storage.is_contiguous() && a.storage.is_cpu(),
              what, ": expected a contiguous bf16 CPU buffer [B, H, W, S]");
  TORCH_CHECK(a.offset >= 0 && a.channels > 0 && a.offset + a.channels <= a.stride(), what,
              ": channels [", a.offset, ", ", a.offset + a.channels, ") outside a buffer of ", a.stride());
}

}  // namespace

Activation Activation::slice(int64_t first, int64_t count) const {
  TORCH_CHECK(first >= 0 && count > 0 && first + count <= channels, "Activation::slice: channels [", first, ", ",
              first + count, ") of ", channels);
  return {storage, offset + first, count};
}

torch::Tensor Activation::view() const { return storage.narrow(3, offset, channels).permute({0, 3, 1, 2}); }

Activation allocate(int64_t batch, int64_t height, int64_t width, int64_t channels) {
  return {torch::empty({batch, height, width, channels}, torch::dtype(torch::kBFloat16)), 0, channels};
}

void write(const torch::Tensor& values, const Activation& y) {
  RECORD_FUNCTION("difflab::inference::write", std::vector<c10::IValue>());
  check_activation(y, "inference::write");
  y.view().copy_(values.expand({y.batch(), y.channels, y.height(), y.width()}));
}

// ---- elementwise passes ----------------------------------------------------------------------

Normalise::Normalise(const torch::nn::BatchNorm2dImpl& norm) {
  TORCH_CHECK(!norm.options.affine() && norm.options.track_running_stats(),
              "inference::Normalise: a BatchNorm2d without affine parameters, with running statistics");
  const torch::Tensor mean = norm.running_mean.to(torch::kCPU, torch::kFloat64).contiguous();
  const torch::Tensor variance = norm.running_var.to(torch::kCPU, torch::kFloat64).contiguous();
  const int64_t channels = mean.numel();
  scale_.resize(static_cast<size_t>(channels));
  shift_.resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const double scale = 1.0 / std::sqrt(variance.data_ptr<double>()[c] + norm.options.eps());
    scale_[c] = static_cast<float>(scale);
    shift_[c] = static_cast<float>(-mean.data_ptr<double>()[c] * scale);
  }
}

void Normalise::operator()(const std::vector<Activation>& parts, const Activation& y, const Activation* copy) const {
  RECORD_FUNCTION("difflab::inference::normalise", std::vector<c10::IValue>());
  check_activation(y, "inference::Normalise");
  int64_t channels = 0;
  for (const Activation& part : parts) {
    check_activation(part, "inference::Normalise");
    TORCH_CHECK(part.storage.sizes().slice(0, 3) == y.storage.sizes().slice(0, 3),
                "inference::Normalise: the parts and the output differ in batch or size");
    channels += part.channels;
  }
  TORCH_CHECK(channels == static_cast<int64_t>(scale_.size()) && y.channels == channels, "inference::Normalise: expected ",
              scale_.size(), " channels, got ", channels, " in and ", y.channels, " out");
  if (copy != nullptr) {
    check_activation(*copy, "inference::Normalise");
    TORCH_CHECK(copy->channels == channels && copy->storage.sizes().slice(0, 3) == y.storage.sizes().slice(0, 3),
                "inference::Normalise: the copy has another shape");
  }
  bf16_bits* out = mutable_data(y);
  bf16_bits* copied = copy != nullptr ? mutable_data(*copy) : nullptr;
  const int64_t copy_stride = copy != nullptr ? copy->stride() : 0;
  difflab::parallel_for(0, y.batch() * y.height() * y.width(), kGrainPixels, [&](int64_t begin, int64_t end) {
    int64_t first = 0;  // the part's first channel
    for (const Activation& part : parts) {
      simd::scale_shift_pixels(data(part) + begin * part.stride(), part.stride(), end - begin, part.channels,
                               scale_.data() + first, shift_.data() + first, out + begin * y.stride() + first,
                               y.stride(), copied != nullptr ? copied + begin * copy_stride + first : nullptr,
                               copy_stride);
      first += part.channels;
    }
  });
}

namespace {

// Runs row(image, out_y, input image, output row) for every output row of y, y's size `scale`
// times x's (1/2 for pooling, 2 for upsampling), after checking both.
template <typename Row>
void for_each_output_row(const Activation& x, const Activation& y, double scale, const char* what, Row row) {
  check_activation(x, what);
  check_activation(y, what);
  TORCH_CHECK(y.channels == x.channels && y.batch() == x.batch() &&
                  y.height() == static_cast<int64_t>(scale * static_cast<double>(x.height())) &&
                  y.width() == static_cast<int64_t>(scale * static_cast<double>(x.width())),
              what, ": expected an output of ", scale, " times the input's size");
  const int64_t in_image = x.height() * x.width() * x.stride(), out_image = y.height() * y.width() * y.stride();
  const bf16_bits* in = data(x);
  bf16_bits* out = mutable_data(y);
  difflab::parallel_for(0, y.batch() * y.height(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t image = r / y.height(), out_y = r % y.height();
      row(out_y, in + image * in_image, out + image * out_image + out_y * y.width() * y.stride());
    }
  });
}

}  // namespace

void average_pool_2x(const Activation& x, const Activation& y) {
  RECORD_FUNCTION("difflab::inference::average_pool_2x", std::vector<c10::IValue>());
  for_each_output_row(x, y, 0.5, "inference::average_pool_2x",
                      [&](int64_t out_y, const bf16_bits* image, bf16_bits* out_row) {
                        simd::average_pool2x_row(image, x.stride(), x.width(), x.channels, out_y, out_row, y.stride());
                      });
}

void upsample_bilinear_2x(const Activation& x, const Activation& y) {
  RECORD_FUNCTION("difflab::inference::upsample_bilinear_2x", std::vector<c10::IValue>());
  for_each_output_row(x, y, 2.0, "inference::upsample_bilinear_2x",
                      [&](int64_t out_y, const bf16_bits* image, bf16_bits* out_row) {
                        simd::upsample2x_bf16_row(image, x.stride(), x.height(), x.width(), x.channels, out_y,
                                                  out_row, y.stride());
                      });
}

// ---- convolutions --------------------------------------------------------------------------

#ifdef DIFFLAB_HAVE_DNNL

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// An NHWC memory descriptor whose pixels are `stride` values apart.
dnnl::memory::desc nhwc(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t stride,
                        dnnl::memory::data_type type) {
  return dnnl::memory::desc({batch, channels, height, width}, type,
                            dnnl::memory::dims{height * width * stride, 1, width * stride, stride});
}

}  // namespace

bool available() {
  static const bool usable = [] {
    if (const char* setting = std::getenv("DIFFLAB_INFERENCE"); setting != nullptr && std::strcmp(setting, "0") == 0)
      return false;
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return usable;
}

struct Conv::State {
  struct Entry {  // one source/destination geometry
    std::vector<int64_t> key;
    dnnl::convolution_forward primitive;
    dnnl::memory weights;  // reordered for this primitive
    dnnl::memory src, dst, bias, scratchpad;  // src and dst get their data pointers at each call
    torch::Tensor scratchpad_storage;
  };
  torch::Tensor weight;  // bf16 [OC, IC, KH, KW] contiguous
  torch::Tensor bias;    // float32 [OC]
  int64_t in_channels = 0, out_channels = 0, kernel = 0;
  Post post = Post::none;
  dnnl::stream stream{cpu_engine()};
  std::vector<Entry> entries;

  Entry& entry(int64_t batch, int64_t height, int64_t width, int64_t src_stride, int64_t dst_stride,
               dnnl::memory::data_type dst_type) {
    const std::vector<int64_t> key{batch, height, width, src_stride, dst_stride, static_cast<int64_t>(dst_type)};
    for (Entry& e : entries)
      if (e.key == key) return e;
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc src = nhwc(batch, in_channels, height, width, src_stride, dt::bf16);
    const dnnl::memory::desc dst = nhwc(batch, out_channels, height, width, dst_stride, dst_type);
    const dnnl::memory::desc weights_any({out_channels, in_channels, kernel, kernel}, dt::bf16,
                                         dnnl::memory::format_tag::any);
    const dnnl::memory::desc bias_desc({out_channels}, dt::f32, dnnl::memory::format_tag::a);
    const int64_t pad = kernel / 2;
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                         src, weights_any, bias_desc, dst, {1, 1}, {pad, pad}, {pad, pad});
    dnnl::post_ops ops;
    // Swish is not a post-operation: oneDNN 2.6's AMX convolution ran 3.6x slower with it (0.49
    // against 0.14 ms for 16x32x32x32 -> 32 channels); the pass after it is cheaper (run()).
    if (post == Post::add_to_output) ops.append_sum(1.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::convolution_forward::primitive_desc pd(desc, attr, cpu_engine());

    Entry e;
    e.key = key;
    e.primitive = dnnl::convolution_forward(pd);
    e.src = dnnl::memory(src, cpu_engine(), DNNL_MEMORY_NONE);
    e.dst = dnnl::memory(dst, cpu_engine(), DNNL_MEMORY_NONE);
    e.bias = dnnl::memory(bias_desc, cpu_engine(), bias.data_ptr());
    e.weights = dnnl::memory(pd.weights_desc(), cpu_engine());
    dnnl::memory plain({{out_channels, in_channels, kernel, kernel}, dt::bf16, dnnl::memory::format_tag::oihw},
                       cpu_engine(), weight.data_ptr());
    dnnl::reorder(plain, e.weights).execute(stream, plain, e.weights);
    stream.wait();
    const auto scratchpad_bytes = static_cast<int64_t>(pd.scratchpad_desc().get_size());
    e.scratchpad_storage = torch::empty({std::max<int64_t>(scratchpad_bytes, 1)}, torch::kUInt8);
    e.scratchpad = dnnl::memory(pd.scratchpad_desc(), cpu_engine(), e.scratchpad_storage.data_ptr());
    entries.push_back(std::move(e));
    return entries.back();
  }

  void run(Entry& e, void* src, void* dst) {
    convolve(e, src, dst);
    if (post == Post::swish) {  // in place, while the convolution's output is in cache
      RECORD_FUNCTION("difflab::inference::swish", std::vector<c10::IValue>());
      auto* values = static_cast<bf16_bits*>(dst);
      const int64_t count = e.key[0] * e.key[1] * e.key[2] * out_channels;  // batch, height, width
      difflab::parallel_for(0, count, 1 << 15, [&](int64_t begin, int64_t end) {
        simd::silu_in_place(values + begin, end - begin);
      });
    }
  }

  void convolve(Entry& e, void* src, void* dst) {
    RECORD_FUNCTION(kernel == 1 ? "difflab::inference::conv1x1" : "difflab::inference::conv", std::vector<c10::IValue>());
    e.src.set_data_handle(src);
    e.dst.set_data_handle(dst);
    e.primitive.execute(stream, {{DNNL_ARG_SRC, e.src},
                                 {DNNL_ARG_WEIGHTS, e.weights},
                                 {DNNL_ARG_BIAS, e.bias},
                                 {DNNL_ARG_DST, e.dst},
                                 {DNNL_ARG_SCRATCHPAD, e.scratchpad}});
    stream.wait();
  }
};

Conv::Conv(const torch::nn::Conv2dImpl& conv, Post post) : state_(std::make_unique<State>()) {
  const auto& options = conv.options;
  const auto& kernel = options.kernel_size();
  TORCH_CHECK(kernel->at(0) == kernel->at(1) && kernel->at(0) % 2 == 1 && options.stride()->at(0) == 1 &&
                  options.stride()->at(1) == 1 && options.groups() == 1 && options.dilation()->at(0) == 1 &&
                  options.dilation()->at(1) == 1,
              "inference::Conv: a stride-1, odd square kernel with \"same\" padding");
  torch::NoGradGuard no_grad;
  state_->weight = conv.weight.detach().to(torch::kCPU, torch::kBFloat16).contiguous();
  state_->bias = conv.bias.defined() ? conv.bias.detach().to(torch::kCPU, torch::kFloat32).contiguous()
                                     : torch::zeros({options.out_channels()});
  state_->in_channels = options.in_channels();
  state_->out_channels = options.out_channels();
  state_->kernel = kernel->at(0);
  state_->post = post;
}

void Conv::operator()(const Activation& src, const Activation& dst) {
  check_activation(src, "inference::Conv");
  check_activation(dst, "inference::Conv");
  check_dense(src, "inference::Conv");
  check_dense(dst, "inference::Conv");
  TORCH_CHECK(src.channels == state_->in_channels && dst.channels == state_->out_channels &&
                  src.storage.sizes().slice(0, 3) == dst.storage.sizes().slice(0, 3),
              "inference::Conv: expected ", state_->in_channels, " -> ", state_->out_channels,
              " channels of the same batch and size, got ", src.channels, " -> ", dst.channels);
  State::Entry& e = state_->entry(src.batch(), src.height(), src.width(), src.stride(), dst.stride(),
                                  dnnl::memory::data_type::bf16);
  state_->run(e, const_cast<bf16_bits*>(data(src)), mutable_data(dst));
}

void Conv::operator()(const Activation& src, const torch::Tensor& dst) {
  check_activation(src, "inference::Conv");
  check_dense(src, "inference::Conv");
  TORCH_CHECK(dst.scalar_type() == torch::kFloat32 && dst.is_contiguous() && dst.dim() == 4 &&
                  dst.size(3) == state_->out_channels && dst.sizes().slice(0, 3) == src.storage.sizes().slice(0, 3),
              "inference::Conv: expected a float32 output [B, H, W, ", state_->out_channels, "]");
  TORCH_CHECK(state_->post == Post::none, "inference::Conv: a float32 output takes no post-operation");
  State::Entry& e = state_->entry(src.batch(), src.height(), src.width(), src.stride(), state_->out_channels,
                                  dnnl::memory::data_type::f32);
  state_->run(e, const_cast<bf16_bits*>(data(src)), dst.data_ptr());
}

#else  // no oneDNN headers at build time: the path is off and networks use forward()

bool available() { return false; }

struct Conv::State {
  int64_t out_channels = 0;
};

Conv::Conv(const torch::nn::Conv2dImpl& conv, Post) : state_(std::make_unique<State>()) {
  state_->out_channels = conv.options.out_channels();
}
void Conv::operator()(const Activation&, const Activation&) {
  throw std::logic_error("inference::Conv: difflab was built without oneDNN (libdnnl-dev)");
}
void Conv::operator()(const Activation&, const torch::Tensor&) {
  throw std::logic_error("inference::Conv: difflab was built without oneDNN (libdnnl-dev)");
}

#endif

Conv::~Conv() = default;
Conv::Conv(Conv&&) noexcept = default;
Conv& Conv::operator=(Conv&&) noexcept = default;
int64_t Conv::out_channels() const { return state_->out_channels; }

}  // namespace inference
}  // namespace difflab
