// The field's distances between a real and a generated set of features, beside KID (kid.h), in
// whatever space the experiment's [features] plugin gives (with InceptionV3's pool features: FID
// as the papers report it). Computed in float64 on the CPU.
//
// - Fréchet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge
//   to a Local Nash Equilibrium", Eq. 6) between Gaussian fits of the two sets.
// - Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
//   for Assessing Generative Models", Eqs. 1-3, k = 3 nearest neighbours).
// - Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
//   Generative Models", Eqs. 3 and 4, k = 5).
#pragma once

#include <cstdint>
#include <torch/types.h>

namespace difflab {

// A Gaussian fit of a feature set: its mean and its unbiased covariance (divided by n - 1, as
// numpy's np.cov and clean-fid compute it), float64.
struct GaussianFit {
  torch::Tensor mean;        // [d]
  torch::Tensor covariance;  // [d, d]
  int64_t count = 0;
};
GaussianFit gaussian_fit(const torch::Tensor& features);

// The Fréchet distance d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½ (Heusel et al., Eq. 6).
// tr (Σ₁Σ₂)^½ is computed without a complex matrix square root: with Σ₁ = V Λ Vᵀ (symmetric
// eigendecomposition; eigenvalues below 0, rounding of a positive semi-definite matrix, set to 0)
// and S = V Λ^½ Vᵀ, Σ₁Σ₂ = S (S Σ₂ S) S⁻¹ has the eigenvalues of the symmetric positive
// semi-definite S Σ₂ S (for a singular Σ₁ too: the non-zero eigenvalues of AB and BA agree), so
// tr (Σ₁Σ₂)^½ = Σᵢ √μᵢ over its eigenvalues μᵢ (those below 0, rounding, set to 0). A
// rank-deficient covariance (fewer samples than dimensions, or constant features) needs no
// regularisation this way: its zero eigenvalues contribute 0.
double frechet_distance(const GaussianFit& a, const GaussianFit& b);
double fid(const torch::Tensor& real_features, const torch::Tensor& generated_features);

struct PrdcEstimate {
  double precision = 0.0, recall = 0.0;   // k = pr_k (Kynkäänniemi et al.)
  double density = 0.0, coverage = 0.0;   // k = dc_k (Naeem et al.)
  int64_t real = 0, generated = 0;
};

// All four from Euclidean distances between the sets, computed `block` rows at a time (memory
// O(block · n), never n²). The k-NN radius of a point is its distance to its k-th nearest
// neighbour in its own set, itself left out; "inside" is strictly closer than the radius, as in
// Naeem et al.'s reference implementation (prdc):
//   precision = (1/M) Σⱼ 1[∃i: d(Yⱼ, Xᵢ) < NND_k(Xᵢ)]        recall = (1/N) Σᵢ 1[∃j: d(Xᵢ, Yⱼ) < NND_k(Yⱼ)]
//   density   = 1/(kM) Σⱼ Σᵢ 1[d(Yⱼ, Xᵢ) < NND_k(Xᵢ)]       coverage = (1/N) Σᵢ 1[minⱼ d(Xᵢ, Yⱼ) < NND_k(Xᵢ)]
// with X the N real and Y the M generated features. Needs k < both set sizes.
PrdcEstimate prdc(const torch::Tensor& real_features, const torch::Tensor& generated_features, int64_t pr_k = 3,
                  int64_t dc_k = 5, int64_t block = 1024);

}  // namespace difflab
