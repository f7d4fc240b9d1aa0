TEST(@CLASS@, IsZeroForAPerfectPredictionAndGrowsWithTheError) {
  auto loss = make<Loss>();
  const torch::Tensor target = torch::randn({2, 1, 4, 4}, torch::kFloat64);
  EXPECT_NEAR((*loss)(target, target).item<double>(), 0.0, 1e-12);
  // Near zero log(cosh(d)) ≈ d²/2; far out ≈ |d| − log 2.
  EXPECT_NEAR((*loss)(target, target + 1e-3).item<double>(), 0.5e-6, 1e-9);
  EXPECT_NEAR((*loss)(target, target + 20.0).item<double>(), 20.0 - std::log(2.0), 1e-9);
}
