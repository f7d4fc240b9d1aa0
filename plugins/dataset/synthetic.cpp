// synthetic: deterministic procedural images for tests — one soft-edged disc per image on a dark
// background, position, radius and colour drawn from a seeded generator. The same parameters
// give the same pixels on every machine. Label: 0 for a small disc, 1 for a large one.
#include <cmath>
#include <optional>
#include <random>
#include <tuple>

#include "difflab/dataset.h"
#include "difflab/plugin.h"

using namespace difflab;

class SyntheticImages : public Dataset {
 public:
  SyntheticImages(const Params& params, const BuildContext& context)
      : train_count_(params.integer("train_count")),
        validation_count_(params.integer("validation_count")),
        channels_(params.integer("channels")),
        seed_(params.integer("seed")),
        image_size_(context.image_size) {}

  static ParamSchema schema() {
    return {
        ParamSpec::integer("train_count", 256, "training images").at_least(1),
        ParamSpec::integer("validation_count", 64, "validation images").at_least(0),
        ParamSpec::integer("channels", 1, "1 = grayscale, 3 = colour").at_least(1).at_most(3),
        ParamSpec::integer("seed", 0, "generator seed").at_least(0),
    };
  }

  int64_t channels() const override { return channels_; }
  void check_available() const override {}
  std::optional<SplitCounts> counts() const override { return SplitCounts{train_count_, validation_count_}; }

  ImageSplits load() const override {
    std::mt19937_64 generator(static_cast<uint64_t>(seed_));
    ImageSplits splits;
    std::tie(splits.train, splits.train_labels) = make(train_count_, generator);
    std::tie(splits.validation, splits.validation_labels) = make(validation_count_, generator);
    return splits;
  }

 private:
  std::pair<torch::Tensor, torch::Tensor> make(int64_t count, std::mt19937_64& generator) const {
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const double size = static_cast<double>(image_size_);
    torch::Tensor images = torch::zeros({count, channels_, image_size_, image_size_});
    torch::Tensor labels = torch::zeros({count}, torch::kLong);
    auto pixels = images.accessor<float, 4>();
    for (int64_t n = 0; n < count; ++n) {
      const double radius_fraction = uniform(generator);
      labels[n] = radius_fraction < 0.5 ? 0 : 1;
      const double radius = size * (0.15 + 0.2 * radius_fraction);
      const double centre_x = radius + (size - 2 * radius) * uniform(generator);
      const double centre_y = radius + (size - 2 * radius) * uniform(generator);
      std::vector<double> colour(static_cast<size_t>(channels_));
      for (auto& value : colour) value = 0.4 + 0.6 * uniform(generator);
      for (int64_t y = 0; y < image_size_; ++y) {
        for (int64_t x = 0; x < image_size_; ++x) {
          const double distance = std::hypot(x + 0.5 - centre_x, y + 0.5 - centre_y);
          const double coverage = std::clamp(radius - distance + 0.5, 0.0, 1.0);
          for (int64_t c = 0; c < channels_; ++c)
            pixels[n][c][y][x] = static_cast<float>(0.1 + coverage * (colour[c] - 0.1));
        }
      }
    }
    return {images, labels};
  }

  int64_t train_count_;
  int64_t validation_count_;
  int64_t channels_;
  int64_t seed_;
  int64_t image_size_;
};

DIFFLAB_PLUGIN(dataset, "synthetic", SyntheticImages, "1.0.0",
               "deterministic procedural discs, for tests and smoke runs")
