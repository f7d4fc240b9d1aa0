// Loss plugins against hand-computed values.
#include "difflab/loss.h"
#include "test_support.h"

using namespace difflab;
using difflab::test::f64;
using difflab::test::make;

namespace {
// target - prediction = [0.5, -1.5, 2.0, 0.0]
torch::Tensor target() { return torch::tensor({1.0, 0.5, -1.0, 3.0}, f64()).view({1, 1, 2, 2}); }
torch::Tensor prediction() { return torch::tensor({0.5, 2.0, -3.0, 3.0}, f64()).view({1, 1, 2, 2}); }
}  // namespace

TEST(MaeLoss, IsMeanOfAbsoluteDifferences) {
  auto mae = make<Loss>(Family::loss, "mae");
  // (0.5 + 1.5 + 2.0 + 0.0) / 4 = 1.0
  EXPECT_DOUBLE_EQ((*mae)(target(), prediction()).item<double>(), 1.0);
}

TEST(MseLoss, IsMeanOfSquaredDifferences) {
  auto mse = make<Loss>(Family::loss, "mse");
  // (0.25 + 2.25 + 4.0 + 0.0) / 4 = 1.625
  EXPECT_DOUBLE_EQ((*mse)(target(), prediction()).item<double>(), 1.625);
}

TEST(MseLoss, OfZeroPredictionOnUnitNoiseIsAboutOne) {
  // The seed's remark: with the zero-initialised last layer, MSE starts at exactly E[ε²] = 1.
  torch::manual_seed(0);
  torch::Tensor noises = torch::randn({64, 1, 32, 32}, f64());
  auto mse = make<Loss>(Family::loss, "mse");
  EXPECT_NEAR((*mse)(noises, torch::zeros_like(noises)).item<double>(), 1.0, 0.01);
}

TEST(Losses, AreDifferentiable) {
  for (const char* name : {"mae", "mse"}) {
    auto loss = make<Loss>(Family::loss, name);
    torch::Tensor pred = prediction().clone().requires_grad_(true);
    (*loss)(target(), pred).backward();
    ASSERT_TRUE(pred.grad().defined()) << name;
    EXPECT_GT(pred.grad().abs().sum().item<double>(), 0.0) << name;
  }
}
