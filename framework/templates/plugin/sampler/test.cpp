#include "difflab/schedule.h"

// A schedule for the test, without loading another plugin: cosine between signal rates 0.95 and 0.02.
struct TestSchedule : Schedule {
  Rates rates(const torch::Tensor& t) const override {
    const torch::Tensor angles = std::acos(0.95) + t * (std::acos(0.02) - std::acos(0.95));
    return {torch::sin(angles), torch::cos(angles)};
  }
};

TEST(@CLASS@, ReturnsTheCleanImagesWithAnOracleDenoiser) {
  auto sampler = make<Sampler>();
  const torch::Tensor clean = torch::randn({2, 1, 8, 8}, torch::kFloat64);
  Denoiser oracle = [&](const torch::Tensor& x, const torch::Tensor& n, const torch::Tensor& s) {
    return Denoised{(x - s * clean) / n, clean};
  };
  const torch::Tensor images = sampler->sample(oracle, torch::randn({2, 1, 8, 8}, torch::kFloat64), TestSchedule(), 10);
  EXPECT_LT((images - clean).abs().max().item<double>(), 1e-10);
}
