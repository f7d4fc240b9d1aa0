TEST(@CLASS@, RunsFromTheCleanestToTheNoisiestWithUnitPower) {
  auto schedule = make<Schedule>();
  const Rates rates = schedule->rates(torch::linspace(0, 1, 101, torch::kFloat64));
  EXPECT_NEAR(rates.signal_rates[0].item<double>(), 0.95, 1e-12);   // max_signal_rate
  EXPECT_NEAR(rates.signal_rates[100].item<double>(), 0.02, 1e-12); // min_signal_rate
  EXPECT_LT((rates.signal_rates.pow(2) + rates.noise_rates.pow(2) - 1).abs().max().item<double>(), 1e-12);
  EXPECT_LT(rates.signal_rates.diff().max().item<double>(), 0.0);
}
