TEST(@CLASS@, KeepsTheImageShapeStartsAtZeroAndLearns) {
  auto network = make<Network>({}, {16, 3});
  const torch::Tensor noisy = torch::randn({2, 3, 16, 16});
  torch::Tensor output = network->forward(noisy, torch::full({2, 1, 1, 1}, 0.5));
  EXPECT_EQ(output.sizes(), noisy.sizes());
  EXPECT_EQ(output.abs().max().item<float>(), 0.0f);
  torch::optim::Adam optimizer(network->parameters(), 1e-2);
  const torch::Tensor target = torch::randn({2, 3, 16, 16});
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    optimizer.zero_grad();
    torch::Tensor loss = (network->forward(noisy, torch::full({2, 1, 1, 1}, 0.5)) - target).pow(2).mean();
    loss.backward();
    optimizer.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first);
}
