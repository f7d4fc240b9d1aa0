#include "training/fid.h"

#include <algorithm>
#include <torch/torch.h>

#include "difflab/error.h"

namespace difflab {
namespace {

torch::Tensor as_float64(const torch::Tensor& features, const char* what) {
  if (features.dim() != 2) throw RuntimeError(std::string(what) + " needs [n, d] feature matrices");
  return features.to(torch::kCPU, torch::kFloat64).contiguous();
}

void check_pair(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  if (a.size(1) != b.size(1))
    throw RuntimeError(std::string(what) + ": the two feature sets have different dimensions (" +
                       std::to_string(a.size(1)) + " and " + std::to_string(b.size(1)) + ")");
}

// Euclidean distances between the rows of a [p, d] and b [q, d]: |a|² + |b|² − 2 a·b (as sklearn's
// euclidean_distances computes them), clamped at 0 before the square root.
torch::Tensor distances(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& a_norms,
                        const torch::Tensor& b_norms) {
  // In place on the product: no block-sized temporaries (each is 8·block·n bytes).
  torch::Tensor d = torch::mm(a, b.t());
  d.mul_(-2.0).add_(a_norms.unsqueeze(1)).add_(b_norms.unsqueeze(0));
  return d.clamp_min_(0.0).sqrt_();
}

// Each row's distances to its k-th nearest neighbours among the rows of `x`, itself left out, for
// each k of `ks` (one pass): the (k+1)-th smallest of its row of distances, which holds its own 0.
std::vector<torch::Tensor> knn_radii(const torch::Tensor& x, const torch::Tensor& norms, const std::vector<int64_t>& ks,
                                     int64_t block) {
  const int64_t largest = *std::max_element(ks.begin(), ks.end());
  std::vector<std::vector<torch::Tensor>> radii(ks.size());
  for (int64_t start = 0; start < x.size(0); start += block) {
    const torch::Tensor rows = x.slice(0, start, start + block);
    torch::Tensor d = distances(rows, x, norms.slice(0, start, start + block), norms);
    // The row's own distance is 0 by definition (rounding may leave it slightly above others' 0).
    const int64_t n = rows.size(0);
    d.index_put_({torch::arange(n), torch::arange(start, start + n)}, 0.0);
    const torch::Tensor nearest = std::get<0>(d.topk(largest + 1, 1, /*largest=*/false, /*sorted=*/true));
    for (size_t i = 0; i < ks.size(); ++i) radii[i].push_back(nearest.select(1, ks[i]).clone());
  }
  std::vector<torch::Tensor> result;
  for (auto& parts : radii) result.push_back(torch::cat(parts));
  return result;
}

}  // namespace

GaussianFit gaussian_fit(const torch::Tensor& features) {
  const torch::Tensor x = as_float64(features, "a Gaussian fit");
  if (x.size(0) < 2) throw RuntimeError("a Gaussian fit needs at least 2 samples");
  GaussianFit fit;
  fit.count = x.size(0);
  fit.mean = x.mean(0);
  const torch::Tensor centred = x - fit.mean;
  fit.covariance = torch::mm(centred.t(), centred) / static_cast<double>(fit.count - 1);
  return fit;
}

double frechet_distance(const GaussianFit& a, const GaussianFit& b) {
  check_pair(a.covariance, b.covariance, "FID");
  const torch::Tensor sigma1 = 0.5 * (a.covariance + a.covariance.t());
  const torch::Tensor sigma2 = 0.5 * (b.covariance + b.covariance.t());
  const auto [lambda, vectors] = torch::linalg::eigh(sigma1, "L");
  const torch::Tensor s = torch::mm(vectors * lambda.clamp_min(0.0).sqrt().unsqueeze(0), vectors.t());
  torch::Tensor m = torch::mm(torch::mm(s, sigma2), s);
  m = 0.5 * (m + m.t());
  const torch::Tensor mu = torch::linalg::eigvalsh(m, "L");
  const double trace_sqrt = mu.clamp_min(0.0).sqrt().sum().item<double>();
  const torch::Tensor difference = a.mean - b.mean;
  return difference.dot(difference).item<double>() + sigma1.trace().item<double>() + sigma2.trace().item<double>() -
         2.0 * trace_sqrt;
}

double fid(const torch::Tensor& real_features, const torch::Tensor& generated_features) {
  check_pair(real_features, generated_features, "FID");
  return frechet_distance(gaussian_fit(real_features), gaussian_fit(generated_features));
}

PrdcEstimate prdc(const torch::Tensor& real_features, const torch::Tensor& generated_features, int64_t pr_k,
                  int64_t dc_k, int64_t block) {
  const torch::Tensor x = as_float64(real_features, "precision and recall");
  const torch::Tensor y = as_float64(generated_features, "precision and recall");
  check_pair(x, y, "precision and recall");
  const int64_t n = x.size(0), m = y.size(0);
  if (pr_k < 1 || dc_k < 1 || std::max(pr_k, dc_k) >= std::min(n, m))
    throw RuntimeError("precision, recall, density and coverage need k (" + std::to_string(pr_k) + ", " +
                       std::to_string(dc_k) + ") below both set sizes (" + std::to_string(n) + " and " +
                       std::to_string(m) + ")");
  block = std::max<int64_t>(1, block);
  torch::NoGradGuard no_grad;
  const torch::Tensor x_norms = (x * x).sum(1), y_norms = (y * y).sum(1);
  const std::vector<torch::Tensor> real_radii = knn_radii(x, x_norms, {pr_k, dc_k}, block);
  const torch::Tensor& real_pr = real_radii[0];
  const torch::Tensor& real_dc = real_radii[1];
  const torch::Tensor fake_pr = knn_radii(y, y_norms, {pr_k}, block)[0];
  // One pass over the real-generated distances, `block` real rows at a time.
  torch::Tensor in_real_manifold = torch::zeros({m}, torch::kBool);  // precision, per generated point
  torch::Tensor density_counts = torch::zeros({m}, torch::kFloat64);
  int64_t recalled = 0, covered = 0;
  for (int64_t start = 0; start < n; start += block) {
    const torch::Tensor rows = x.slice(0, start, start + block);
    const torch::Tensor d = distances(rows, y, x_norms.slice(0, start, start + block), y_norms);  // [b, m]
    const torch::Tensor pr = real_pr.slice(0, start, start + block).unsqueeze(1);
    const torch::Tensor dc = real_dc.slice(0, start, start + block);
    in_real_manifold |= (d < pr).any(0);
    density_counts += (d < dc.unsqueeze(1)).sum(0).to(torch::kFloat64);
    recalled += (d < fake_pr.unsqueeze(0)).any(1).sum().item<int64_t>();
    covered += (std::get<0>(d.min(1)) < dc).sum().item<int64_t>();
  }
  PrdcEstimate estimate;
  estimate.real = n;
  estimate.generated = m;
  estimate.precision = in_real_manifold.to(torch::kFloat64).mean().item<double>();
  estimate.recall = static_cast<double>(recalled) / static_cast<double>(n);
  estimate.density = density_counts.sum().item<double>() / (static_cast<double>(dc_k) * static_cast<double>(m));
  estimate.coverage = static_cast<double>(covered) / static_cast<double>(n);
  return estimate;
}

}  // namespace difflab
