#include "difflab/embedding.h"

#include <cmath>
#include <torch/torch.h>

namespace difflab {

torch::Tensor sinusoidal_embedding(const torch::Tensor& noise_variances, int64_t embedding_dims,
                                   double embedding_max_frequency) {
  const double embedding_min_frequency = 1.0;
  auto options = noise_variances.options();
  torch::Tensor frequencies = torch::exp(torch::linspace(std::log(embedding_min_frequency),
                                                         std::log(embedding_max_frequency),
                                                         embedding_dims / 2, options));
  torch::Tensor angular_speeds = (2.0 * M_PI * frequencies).view({1, -1, 1, 1});  // [1, E/2, 1, 1]
  return torch::cat({torch::sin(angular_speeds * noise_variances),
                     torch::cos(angular_speeds * noise_variances)},
                    /*dim=*/1);
}

}  // namespace difflab
