TEST(@CLASS@, GivesOneFeatureRowPerImage) {
  auto features = make<FeatureExtractor>();
  const torch::Tensor rows = features->extract(torch::rand({5, 3, 16, 16}));
  EXPECT_EQ(rows.sizes(), torch::IntArrayRef({5, 48}));  // 3 channels x 4 x 4
  EXPECT_EQ(rows.scalar_type(), torch::kFloat32);
}
