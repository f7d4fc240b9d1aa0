TEST(@CLASS@, LoadsImagesOfTheExperimentsSizeInTheUnitRange) {
  auto dataset = make<Dataset>({}, {16, 1});
  dataset->check_available();
  const ImageSplits splits = dataset->load();
  EXPECT_EQ(splits.train.sizes(), torch::IntArrayRef({512, 1, 16, 16}));
  EXPECT_EQ(splits.validation.size(0), 128);
  EXPECT_GE(splits.train.min().item<float>(), 0.0f);
  EXPECT_LE(splits.train.max().item<float>(), 1.0f);
  EXPECT_GT(splits.train.std().item<float>(), 0.1f);
}
