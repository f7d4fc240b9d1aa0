// Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
// estimate of the squared maximum mean discrepancy between two feature sets under the
// polynomial kernel k(x, y) = (x·y / d + 1)³. Computed in float64.
#pragma once

#include <cstdint>
#include <torch/types.h>

namespace difflab {

// Unbiased MMD² of two equally sized feature sets [n, d] (eq. 3 of the paper's appendix; the
// diagonals of K_xx and K_yy are left out, the cross term keeps its diagonal).
double kid_mmd2(const torch::Tensor& real_features, const torch::Tensor& generated_features);

// The seed's protocol: consecutive batches of `batch_size` rows of each set, one MMD² per batch
// pair, averaged over batches (an incomplete last batch is dropped).
double kid_per_batch(const torch::Tensor& real_features, const torch::Tensor& generated_features,
                     int64_t batch_size);

struct KidEstimate {
  double mean = 0.0;
  double std = 0.0;          // over subsets (population), 0 for one subset
  int64_t subsets = 0;
  int64_t subset_size = 0;
};

// clean-fid's and torch-fidelity's protocol: `subsets` draws of `subset_size` rows (without
// replacement) from each set; subset_size is capped at the smaller set's size.
KidEstimate kid_subsets(const torch::Tensor& real_features, const torch::Tensor& generated_features,
                        int64_t subsets, int64_t subset_size, uint64_t seed);

}  // namespace difflab
