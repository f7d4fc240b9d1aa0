// Sinusoidal embedding of the noise variance (the seed's sinusoidal_embedding), shared by
// network plugins.
#pragma once

#include "difflab/export.h"

#include <torch/types.h>

namespace difflab {

// noise_variances [B, 1, 1, 1] -> [B, embedding_dims, 1, 1]: embedding_dims / 2 sines, then as
// many cosines, at frequencies log-spaced from 1 to embedding_max_frequency
// (Vaswani et al. 2017, sec. 3.5, with frequencies instead of wavelengths; NeRF eq. 4).
DIFFLAB_API torch::Tensor sinusoidal_embedding(const torch::Tensor& noise_variances, int64_t embedding_dims,
                                   double embedding_max_frequency);

}  // namespace difflab
