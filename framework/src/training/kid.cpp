#include "training/kid.h"

#include <cmath>
#include <torch/torch.h>

#include "difflab/error.h"

namespace difflab {
namespace {

torch::Tensor polynomial_kernel(const torch::Tensor& x, const torch::Tensor& y) {
  const double feature_dimensions = static_cast<double>(x.size(1));
  return (torch::mm(x, y.t()) / feature_dimensions + 1.0).pow(3);
}

void check_features(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != b.size(1))
    throw RuntimeError("KID needs two [n, d] feature matrices of the same d");
  if (a.size(0) < 2 || b.size(0) < 2) throw RuntimeError("KID needs at least 2 samples per set");
}

}  // namespace

double kid_mmd2(const torch::Tensor& real_features, const torch::Tensor& generated_features) {
  check_features(real_features, generated_features);
  torch::Tensor x = real_features.to(torch::kCPU, torch::kFloat64);
  torch::Tensor y = generated_features.to(torch::kCPU, torch::kFloat64);
  const double m = static_cast<double>(x.size(0));
  const double n = static_cast<double>(y.size(0));
  torch::Tensor kernel_real = polynomial_kernel(x, x);
  torch::Tensor kernel_generated = polynomial_kernel(y, y);
  torch::Tensor kernel_cross = polynomial_kernel(x, y);
  // MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (n(n−1)) − 2 Σ k(x_i, y_j) / (mn)
  const double mean_kernel_real =
      (kernel_real.sum() - kernel_real.diagonal().sum()).item<double>() / (m * (m - 1));
  const double mean_kernel_generated =
      (kernel_generated.sum() - kernel_generated.diagonal().sum()).item<double>() / (n * (n - 1));
  const double mean_kernel_cross = kernel_cross.mean().item<double>();
  return mean_kernel_real + mean_kernel_generated - 2.0 * mean_kernel_cross;
}

double kid_per_batch(const torch::Tensor& real_features, const torch::Tensor& generated_features,
                     int64_t batch_size) {
  check_features(real_features, generated_features);
  const int64_t batches = std::min(real_features.size(0), generated_features.size(0)) / batch_size;
  if (batches < 1 || batch_size < 2) throw RuntimeError("KID per batch needs a full batch of at least 2");
  double total = 0.0;
  for (int64_t batch = 0; batch < batches; ++batch)
    total += kid_mmd2(real_features.slice(0, batch * batch_size, (batch + 1) * batch_size),
                      generated_features.slice(0, batch * batch_size, (batch + 1) * batch_size));
  return total / static_cast<double>(batches);
}

KidEstimate kid_subsets(const torch::Tensor& real_features, const torch::Tensor& generated_features,
                        int64_t subsets, int64_t subset_size, uint64_t seed) {
  check_features(real_features, generated_features);
  KidEstimate estimate;
  estimate.subsets = subsets;
  estimate.subset_size =
      std::min({subset_size, real_features.size(0), generated_features.size(0)});
  torch::Generator generator = at::detail::createCPUGenerator(seed);
  std::vector<double> values;
  for (int64_t subset = 0; subset < subsets; ++subset) {
    torch::Tensor real_rows =
        torch::randperm(real_features.size(0), generator, torch::kLong).slice(0, 0, estimate.subset_size);
    torch::Tensor generated_rows = torch::randperm(generated_features.size(0), generator, torch::kLong)
                                       .slice(0, 0, estimate.subset_size);
    values.push_back(kid_mmd2(real_features.index_select(0, real_rows),
                              generated_features.index_select(0, generated_rows)));
  }
  for (double value : values) estimate.mean += value / static_cast<double>(subsets);
  for (double value : values)
    estimate.std += (value - estimate.mean) * (value - estimate.mean) / static_cast<double>(subsets);
  estimate.std = std::sqrt(estimate.std);
  return estimate;
}

}  // namespace difflab
