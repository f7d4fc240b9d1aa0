// The network families' shared helpers (difflab/network.h): Keras's "same" convolution, the
// U-Net's level and size checks, the weights' memory format.
#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include "difflab/error.h"
#include "difflab/network.h"

namespace difflab {

torch::nn::Conv2d same_conv(int64_t in_channels, int64_t out_channels, int64_t kernel_size) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, kernel_size).padding(kernel_size / 2));
}

void check_levels(int64_t image_size, size_t levels) {
  const int64_t downsampling = int64_t{1} << (levels - 1);
  if (image_size % downsampling != 0)
    throw ConfigError("image_size " + std::to_string(image_size) + " is not divisible by 2^(len(widths) - 1) = " +
                          std::to_string(downsampling),
                      ErrorContext::for_key({}, "network.widths", "use fewer widths or another image_size"));
}

torch::MemoryFormat weight_memory_format(const torch::nn::Module& module) {
  for (const auto& parameter : module.parameters()) {
    // Only a kernel with several input channels and pixels tells the two layouts apart.
    if (parameter.dim() != 4 || parameter.size(1) == 1 || parameter.size(2) * parameter.size(3) == 1) continue;
    return parameter.is_contiguous() ? torch::MemoryFormat::Contiguous : torch::MemoryFormat::ChannelsLast;
  }
  return torch::MemoryFormat::Contiguous;
}

double machine_memory_bytes() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

ParamIssue check_unet_size(const Params& params) {
  const std::vector<int64_t>& widths = params.integers("widths");
  const double depth = static_cast<double>(params.integer("block_depth"));
  const double first = static_cast<double>(widths.front());
  const double embedding_term = 9.0 * (first + static_cast<double>(params.integer("embedding_dims"))) * first;
  double blocks_term = 0.0;
  for (int64_t width : widths) blocks_term += 2.0 * depth * 2.0 * 9.0 * static_cast<double>(width) * static_cast<double>(width);
  const double bytes = 20.0 * (embedding_term + blocks_term);
  const double memory = machine_memory_bytes();
  if (bytes <= memory) return {};
  const std::string key = embedding_term > blocks_term ? "embedding_dims" : depth > 16 ? "block_depth" : "widths";
  return {key, fmt::format("the network needs at least {:.3g} parameters, {:.3g} GB to train, and this machine has "
                           "{:.3g} GB of memory", (embedding_term + blocks_term), bytes / 1e9, memory / 1e9)};
}

}  // namespace difflab
