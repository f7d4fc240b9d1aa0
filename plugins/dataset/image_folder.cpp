// image_folder: every JPEG and PNG under a folder (e.g. Oxford Flowers 102's jpg/), prepared as
// the seed's preprocess_image does: centre crop to a square, antialiased resize to image_size,
// clip to [0, 1]. A stable, seeded validation split; decoded images are cached on disk.
#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <future>
#include <optional>
#include <stb_image.h>
#include <sstream>
#include <thread>
#include <torch/torch.h>

#include "difflab/cache.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/files.h"
#include "difflab/plugin.h"

using namespace difflab;
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

bool has_image_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension == ".jpg" || extension == ".jpeg" || extension == ".png";
}

struct DecodedFolder {
  torch::Tensor images;  // [N, C, S, S] uint8, zeros where a file was unreadable
  torch::Tensor kept;    // [N] bool: the files that could be read
};

struct Decoded {
  torch::Tensor image;  // [C, S, S] uint8, undefined when unreadable
  bool upscaled = false;
  std::string problem;
};

}  // namespace

class ImageFolder : public Dataset {
 public:
  ImageFolder(const Params& params, const BuildContext& context)
      : path_(params.string("path")),
        channels_(params.integer("channels")),
        validation_fraction_(params.real("validation_fraction")),
        repetitions_(params.integer("repetitions")),
        split_seed_(params.integer("split_seed")),
        strict_(params.boolean("strict")),
        cache_(params.boolean("cache")),
        cache_dir_(params.string("cache_dir")),
        image_size_(context.image_size) {}

  static ParamSchema schema() {
    return {
        ParamSpec::string("path", "", "folder of JPEG/PNG images (searched recursively)").is_path(),
        ParamSpec::integer("channels", 3, "3 = RGB (grayscale converted), 1 = grayscale")
            .at_least(1)
            .at_most(3),
        ParamSpec::real("validation_fraction", 0.2, "share of images held out (the seed's 80/20)")
            .at_least(0)
            .less_than(1),
        ParamSpec::integer("repetitions", 1, "passes over the training images per epoch (the "
                                             "seed's dataset_repetitions)")
            .at_least(1),
        ParamSpec::integer("split_seed", 0, "seed of the validation split").at_least(0),
        ParamSpec::boolean("strict", false, "unreadable files are an error instead of a warning"),
        ParamSpec::boolean("cache", true, "cache decoded, resized images on disk"),
        ParamSpec::string("cache_dir", "", "cache folder; empty = $XDG_CACHE_HOME/difflab or ~/.cache/difflab")
            .is_path(),
    };
  }

  static ParamIssue validate(const Params& params) {
    if (params.integer("channels") == 2) return {"channels", "channels must be 1 or 3"};
    return {};
  }

  int64_t channels() const override { return channels_; }

  void check_available() const override { image_files(); }

  // From the file names and each file's header (stbi_info: the format, the size; no pixels):
  // a file whose header cannot be read is left out, or with strict = true is an error, as load()
  // treats a file it cannot decode.
  std::optional<SplitCounts> counts() const override {
    const std::vector<fs::path> files = image_files();
    SplitCounts counts;
    std::string first_problem;
    for (const auto& file : files) {
      int width = 0, height = 0, file_channels = 0;
      if (stbi_info(file.c_str(), &width, &height, &file_channels) == 0) {
        if (strict_)
          throw ConfigError(std::string("unreadable image (") + stbi_failure_reason() + ")",
                            ErrorContext::for_key(file.string(), "data.path", "remove it, or set data.strict = false to skip it"));
        if (first_problem.empty()) first_problem = file.string() + " (" + stbi_failure_reason() + ")";
        continue;
      }
      ++(in_validation_split(file) ? counts.validation : counts.train);
    }
    if (counts.train + counts.validation == 0)
      throw ConfigError("none of the images could be read", ErrorContext::for_key(path_.string(), "data.path", first_problem));
    return counts;
  }

  ImageSplits load() const override {
    const std::vector<fs::path> files = image_files();
    std::vector<fs::path> train_files, validation_files;
    for (const auto& file : files) (in_validation_split(file) ? validation_files : train_files).push_back(file);
    DecodedFolder folder = cached_or_decoded(files);
    if (strict_) {  // also when the cache was written by a non-strict run
      for (size_t i = 0; i < files.size(); ++i)
        if (!folder.kept[static_cast<int64_t>(i)].item<bool>())
          throw ConfigError("unreadable image", ErrorContext::for_key(files[i].string(), "data.path", "remove it, or set data.strict = false to skip it"));
    }
    torch::Tensor in_validation = torch::zeros({static_cast<int64_t>(files.size())}, torch::kBool);
    for (size_t i = 0; i < files.size(); ++i)
      in_validation[static_cast<int64_t>(i)] =
          std::binary_search(validation_files.begin(), validation_files.end(), files[i]);
    torch::Tensor images = folder.images.to(torch::kFloat32) / 255.0f;  // [N, C, S, S] in [0, 1]
    const torch::Tensor train_rows = folder.kept & ~in_validation;
    const torch::Tensor validation_rows = folder.kept & in_validation;
    ImageSplits splits{images.index({train_rows}), images.index({validation_rows}), repetitions_};
    if (torch::Tensor labels = class_labels(files); labels.defined()) {
      splits.train_labels = labels.index({train_rows});
      splits.validation_labels = labels.index({validation_rows});
    }
    return splits;
  }

 private:
  // The split depends only on each file's relative path and the seed: adding images to the
  // folder never moves an existing image between the splits.
  bool in_validation_split(const fs::path& file) const {
    const uint64_t hash = fnv1a(fs::relative(file, path_).generic_string(), fnv1a(std::to_string(split_seed_)));
    const double position = static_cast<double>(hash >> 11) / static_cast<double>(1ull << 53);
    return position < validation_fraction_;
  }

  std::vector<fs::path> image_files() const {
    if (path_.empty())
      throw ConfigError("no image folder given", ErrorContext::for_key({}, "data.path", "set data.path to a folder of JPEG/PNG images"));
    if (!fs::is_directory(path_))
      throw ConfigError("image folder not found: " + path_.string(),
                        ErrorContext::for_key(path_.string(), "data.path", "see the README for obtaining the data"));
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(path_))
      if (entry.is_regular_file() && has_image_extension(entry.path())) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    if (files.empty())
      throw ConfigError("no JPEG or PNG images in " + path_.string(),
                        ErrorContext::for_key(path_.string(), "data.path", "the folder is empty or holds other files"));
    return files;
  }

  // Class folders (path/<class>/.../image.jpg) give labels, numbered in sorted order; a tree
  // with images directly under `path` has none.
  torch::Tensor class_labels(const std::vector<fs::path>& files) const {
    std::vector<std::string> classes;
    for (const auto& file : files) {
      const fs::path relative = fs::relative(file, path_);
      if (std::distance(relative.begin(), relative.end()) < 2) return {};
      classes.push_back(relative.begin()->string());
    }
    std::vector<std::string> names = classes;
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    torch::Tensor labels = torch::empty({static_cast<int64_t>(files.size())}, torch::kLong);
    for (size_t i = 0; i < classes.size(); ++i)
      labels[static_cast<int64_t>(i)] =
          std::lower_bound(names.begin(), names.end(), classes[i]) - names.begin();
    return labels;
  }

  // The seed's preprocess_image on one file: centre crop, antialiased resize, clip.
  Decoded decode(const fs::path& file) const {
    int width = 0, height = 0, file_channels = 0;
    // stbi_load converts grayscale, alpha and 16-bit images to `channels_` 8-bit channels.
    stbi_uc* pixels = stbi_load(file.c_str(), &width, &height, &file_channels, static_cast<int>(channels_));
    if (pixels == nullptr) return {torch::Tensor(), false, stbi_failure_reason()};
    torch::Tensor image = torch::from_blob(pixels, {height, width, channels_}, torch::kUInt8)
                              .permute({2, 0, 1})
                              .to(torch::kFloat32)
                              .unsqueeze(0);  // [1, C, H, W]
    stbi_image_free(pixels);
    const int64_t crop_size = std::min(height, width);
    image = image.slice(2, (height - crop_size) / 2, (height - crop_size) / 2 + crop_size)
                .slice(3, (width - crop_size) / 2, (width - crop_size) / 2 + crop_size);
    if (crop_size != image_size_)
      image = F::interpolate(image, F::InterpolateFuncOptions()
                                        .size(std::vector<int64_t>{image_size_, image_size_})
                                        .mode(torch::kBilinear)
                                        .align_corners(false)
                                        .antialias(crop_size > image_size_));
    return {image.squeeze(0).clamp(0, 255).round().to(torch::kUInt8), crop_size < image_size_, ""};
  }

  fs::path cache_path(const std::vector<fs::path>& files) const {
    uint64_t key = fnv1a(fmt::format("v1 {} {} {}", path_.string(), image_size_, channels_));
    for (const auto& file : files) {
      std::error_code error;
      key = fnv1a(fmt::format("{} {} {}", file.string(), fs::file_size(file, error),
                              fs::last_write_time(file, error).time_since_epoch().count()),
                  key);
    }
    return cache_root(cache_dir_.string()) / "image_folder" / fmt::format("{:016x}.pt", key);
  }

  DecodedFolder cached_or_decoded(const std::vector<fs::path>& files) const {
    if (!cache_) return decoded(files);
    const fs::path cache_file = cache_path(files);
    CacheLock lock(cache_file);  // parallel sweep workers decode the folder once
    if (fs::exists(cache_file)) {
      try {
        std::vector<torch::Tensor> cached;
        torch::load(cached, cache_file.string());
        if (cached.size() == 2) return {cached[0], cached[1]};
      } catch (const c10::Error&) {
      }
      fmt::print(stderr, "difflab: warning: {}: unreadable cache entry, decoding the images again\n", cache_file.string());
    }
    DecodedFolder folder = decoded(files);
    std::ostringstream bytes;  // serialized in memory: a full disk is a warning, not a crash
    torch::save(std::vector<torch::Tensor>{folder.images, folder.kept}, bytes);
    store_cache_entry(cache_file, bytes.str());
    return folder;
  }

  DecodedFolder decoded(const std::vector<fs::path>& files) const {
    // Decode on all cores, off the calling (training) thread.
    const size_t workers = std::max(1u, std::thread::hardware_concurrency());
    std::vector<Decoded> decoded(files.size());
    std::vector<std::future<void>> jobs;
    for (size_t worker = 0; worker < workers; ++worker)
      jobs.push_back(std::async(std::launch::async, [&, worker] {
        for (size_t i = worker; i < files.size(); i += workers) decoded[i] = decode(files[i]);
      }));
    for (auto& job : jobs) job.get();

    torch::Tensor images = torch::zeros({static_cast<int64_t>(files.size()), channels_, image_size_, image_size_}, torch::kUInt8);
    torch::Tensor kept = torch::ones({static_cast<int64_t>(files.size())}, torch::kBool);
    int64_t unreadable = 0, upscaled = 0;
    std::string first_problem;
    for (size_t i = 0; i < files.size(); ++i) {
      if (!decoded[i].image.defined()) {
        ++unreadable;
        kept[static_cast<int64_t>(i)] = false;
        if (first_problem.empty()) first_problem = files[i].string() + " (" + decoded[i].problem + ")";
        continue;
      }
      upscaled += decoded[i].upscaled ? 1 : 0;
      images[static_cast<int64_t>(i)] = decoded[i].image;
    }
    if (unreadable > 0 && !strict_)
      fmt::print(stderr, "difflab: warning: skipped {} unreadable file(s) of {} in {}, e.g. {}\n", unreadable,
                 files.size(), path_.string(), first_problem);
    if (upscaled > 0)
      fmt::print(stderr, "difflab: warning: {} image(s) smaller than image_size {} were upscaled\n", upscaled,
                 image_size_);
    if (unreadable == static_cast<int64_t>(files.size()))
      throw ConfigError("none of the images could be read", ErrorContext::for_key(path_.string(), "data.path", first_problem));
    return {images, kept};
  }

  fs::path path_;
  int64_t channels_;
  double validation_fraction_;
  int64_t repetitions_;
  int64_t split_seed_;
  bool strict_;
  bool cache_;
  fs::path cache_dir_;
  int64_t image_size_;
};

DIFFLAB_PLUGIN(dataset, "image_folder", ImageFolder, "1.0.0",
               "JPEG/PNG folder tree, centre-cropped and resized; seeded 80/20 split, disk cache")
