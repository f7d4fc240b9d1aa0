// fashion_mnist: Zalando's Fashion-MNIST (Xiao et al. 2017) from the idx .gz files of Debian's
// dataset-fashion-mnist: 60,000 training and 10,000 test images, 28x28 grayscale. The test set
// serves as the validation split. Images are zero-padded (image_size >= 28) or resized.
#include <filesystem>
#include <torch/torch.h>
#include <zlib.h>

#include "difflab/dataset.h"
#include "difflab/error.h"

using namespace difflab;
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

constexpr int64_t kSide = 28;
constexpr const char* kTrainFile = "train-images-idx3-ubyte.gz";
constexpr const char* kTestFile = "t10k-images-idx3-ubyte.gz";
constexpr const char* kTrainLabels = "train-labels-idx1-ubyte.gz";
constexpr const char* kTestLabels = "t10k-labels-idx1-ubyte.gz";

uint32_t big_endian(const unsigned char* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | bytes[3];
}

// idx3-ubyte (LeCun's format): magic 0x00000803, count, rows, cols, then the pixels.
torch::Tensor read_idx_images(const fs::path& path, int64_t limit) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw ConfigError("cannot open", {path.string(), 0, 0, "data.path", ""});
  unsigned char header[16];
  if (gzread(file, header, sizeof(header)) != sizeof(header) || big_endian(header) != 0x803) {
    gzclose(file);
    throw RuntimeError("not an idx3-ubyte image file", {path.string(), 0, 0, "data.path", ""});
  }
  int64_t count = big_endian(header + 4);
  const int64_t rows = big_endian(header + 8), cols = big_endian(header + 12);
  if (limit > 0) count = std::min(count, limit);
  torch::Tensor images = torch::empty({count, 1, rows, cols}, torch::kUInt8);
  const auto bytes = static_cast<unsigned>(count * rows * cols);
  const int read = gzread(file, images.data_ptr<uint8_t>(), bytes);
  gzclose(file);
  if (read < 0 || static_cast<unsigned>(read) != bytes)
    throw RuntimeError("truncated idx file", {path.string(), 0, 0, "data.path", ""});
  return images;
}

// idx1-ubyte: magic 0x00000801, count, then one byte per label.
torch::Tensor read_idx_labels(const fs::path& path, int64_t limit) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw ConfigError("cannot open", {path.string(), 0, 0, "data.path", ""});
  unsigned char header[8];
  if (gzread(file, header, sizeof(header)) != sizeof(header) || big_endian(header) != 0x801) {
    gzclose(file);
    throw RuntimeError("not an idx1-ubyte label file", {path.string(), 0, 0, "data.path", ""});
  }
  int64_t count = big_endian(header + 4);
  if (limit > 0) count = std::min(count, limit);
  torch::Tensor labels = torch::empty({count}, torch::kUInt8);
  const int read = gzread(file, labels.data_ptr<uint8_t>(), static_cast<unsigned>(count));
  gzclose(file);
  if (read != count) throw RuntimeError("truncated idx file", {path.string(), 0, 0, "data.path", ""});
  return labels.to(torch::kLong);
}

}  // namespace

class FashionMnist : public Dataset {
 public:
  FashionMnist(const Params& params, const BuildContext& context)
      : path_(params.string("path")),
        train_limit_(params.integer("train_limit")),
        validation_limit_(params.integer("validation_limit")),
        image_size_(context.image_size) {}

  static ParamSchema schema() {
    return {
        ParamSpec::string("path", "/usr/share/datasets/fashion-mnist",
                          "folder with the idx .gz files (Debian: dataset-fashion-mnist)")
            .is_path(),
        ParamSpec::integer("train_limit", 0, "use only the first N training images; 0 = all")
            .at_least(0),
        ParamSpec::integer("validation_limit", 0, "use only the first N test images; 0 = all")
            .at_least(0),
    };
  }

  int64_t channels() const override { return 1; }

  void check_available() const override {
    for (const char* name : {kTrainFile, kTestFile, kTrainLabels, kTestLabels}) {
      if (!fs::is_regular_file(path_ / name))
        throw ConfigError("Fashion-MNIST file missing: " + (path_ / name).string(),
                          {(path_ / name).string(), 0, 0, "data.path",
                           "install Debian's dataset-fashion-mnist (apt-get install "
                           "dataset-fashion-mnist, or tools/install_deps.sh) or set data.path"});
    }
  }

  ImageSplits load() const override {
    check_available();
    ImageSplits splits{prepare(read_idx_images(path_ / kTrainFile, train_limit_)),
                       prepare(read_idx_images(path_ / kTestFile, validation_limit_))};
    splits.train_labels = read_idx_labels(path_ / kTrainLabels, train_limit_);
    splits.validation_labels = read_idx_labels(path_ / kTestLabels, validation_limit_);
    return splits;
  }

 private:
  torch::Tensor prepare(const torch::Tensor& raw) const {
    torch::Tensor images = raw.to(torch::kFloat32) / 255.0f;  // [N, 1, 28, 28] in [0, 1]
    if (image_size_ == kSide) return images;
    if (image_size_ > kSide && (image_size_ - kSide) % 2 == 0) {
      const int64_t pad = (image_size_ - kSide) / 2;  // black border, like the background
      return F::pad(images, F::PadFuncOptions({pad, pad, pad, pad}));
    }
    // Antialiased resize for downsampling (the seed's advice for image downsampling).
    return F::interpolate(images, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{image_size_, image_size_})
                                      .mode(torch::kBilinear)
                                      .align_corners(false)
                                      .antialias(true))
        .clamp(0.0, 1.0);
  }

  fs::path path_;
  int64_t train_limit_;
  int64_t validation_limit_;
  int64_t image_size_;
};

DIFFLAB_PLUGIN(dataset, "fashion_mnist", FashionMnist, "1.0.0",
               "Fashion-MNIST 28x28 grayscale from Debian's dataset-fashion-mnist")
