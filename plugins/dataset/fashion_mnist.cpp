// fashion_mnist: Zalando's Fashion-MNIST (Xiao et al. 2017) from the idx .gz files of Debian's
// dataset-fashion-mnist: 60,000 training and 10,000 test images, 28x28 grayscale. The test set
// serves as the validation split. Images are zero-padded (image_size >= 28) or resized.
#include <filesystem>
#include <fmt/format.h>
#include <torch/torch.h>
#include <zlib.h>

#include <optional>
#include <tuple>

#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/plugin.h"

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

// LeCun's idx format of unsigned bytes: magic 0x000008DD (DD = number of dimensions), one
// big-endian 32-bit size per dimension, then the data. Opens `path` and reads its header: the
// sizes, the first at most `limit` (0 = all). The caller closes the file.
std::vector<int64_t> read_idx_header(const fs::path& path, int64_t dimensions, int64_t limit, gzFile& file) {
  file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw ConfigError("cannot open", ErrorContext::for_key(path.string(), "data.path"));
  std::vector<unsigned char> header(static_cast<size_t>(4 + 4 * dimensions));
  const int header_read = gzread(file, header.data(), static_cast<unsigned>(header.size()));
  if (header_read != static_cast<int>(header.size()) ||
      big_endian(header.data()) != 0x800u + static_cast<uint32_t>(dimensions)) {
    gzclose(file);
    throw RuntimeError(fmt::format("not an idx{}-ubyte file", dimensions), ErrorContext::for_key(path.string(), "data.path"));
  }
  std::vector<int64_t> sizes;
  for (int64_t d = 0; d < dimensions; ++d) sizes.push_back(big_endian(header.data() + 4 + 4 * d));
  if (limit > 0) sizes[0] = std::min(sizes[0], limit);
  return sizes;
}

// The header's sizes alone, checked against Fashion-MNIST's shapes (28x28 images).
std::vector<int64_t> idx_sizes(const fs::path& path, int64_t dimensions, int64_t limit) {
  gzFile file = nullptr;
  std::vector<int64_t> sizes = read_idx_header(path, dimensions, limit, file);
  gzclose(file);
  if (dimensions == 3 && (sizes[1] != kSide || sizes[2] != kSide))
    throw RuntimeError(fmt::format("images of {}x{}, not Fashion-MNIST's {}x{}", sizes[1], sizes[2], kSide, kSide),
                       ErrorContext::for_key(path.string(), "data.path"));
  return sizes;
}

// The first `limit` items (0 = all): [count, sizes...] uint8.
torch::Tensor read_idx(const fs::path& path, int64_t dimensions, int64_t limit) {
  gzFile file = nullptr;
  const std::vector<int64_t> sizes = read_idx_header(path, dimensions, limit, file);
  torch::Tensor data = torch::empty(sizes, torch::kUInt8);
  const auto bytes = static_cast<unsigned>(data.numel());
  const int read = gzread(file, data.data_ptr<uint8_t>(), bytes);
  gzclose(file);
  if (read < 0 || static_cast<unsigned>(read) != bytes)
    throw RuntimeError("truncated idx file", ErrorContext::for_key(path.string(), "data.path"));
  return data;
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
                          ErrorContext::for_key((path_ / name).string(), "data.path", "install Debian's dataset-fashion-mnist (apt-get install "
                           "dataset-fashion-mnist, or tools/install_deps.sh) or set data.path"));
    }
  }

  // From the four files' headers: image and label counts must agree (a mismatch is what load()
  // would meet too).
  std::optional<SplitCounts> counts() const override {
    check_available();
    SplitCounts counts;
    for (auto [images, labels, limit, count] :
         {std::tuple{kTrainFile, kTrainLabels, train_limit_, &counts.train},
          std::tuple{kTestFile, kTestLabels, validation_limit_, &counts.validation}}) {
      *count = idx_sizes(path_ / images, 3, limit)[0];
      if (const int64_t labelled = idx_sizes(path_ / labels, 1, limit)[0]; labelled != *count)
        throw RuntimeError(fmt::format("{} labels for {} images in {}", labelled, *count, images),
                           ErrorContext::for_key((path_ / labels).string(), "data.path"));
    }
    return counts;
  }

  ImageSplits load() const override {
    check_available();
    ImageSplits splits{prepare(read_idx(path_ / kTrainFile, 3, train_limit_).unsqueeze(1)),
                       prepare(read_idx(path_ / kTestFile, 3, validation_limit_).unsqueeze(1))};
    splits.train_labels = read_idx(path_ / kTrainLabels, 1, train_limit_).to(torch::kLong);
    splits.validation_labels = read_idx(path_ / kTestLabels, 1, validation_limit_).to(torch::kLong);
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
