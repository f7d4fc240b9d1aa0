// The image_folder dataset on JPEG/PNG files written by the test: the seed's centre crop and
// resize, the stable seeded split, every bad-file case, and the decoded-image cache.
#include <fstream>
#include <stb_image_write.h>  // Debian's libstb
#include <zlib.h>

#include "difflab/dataset.h"
#include "difflab/error.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;

namespace {

// [H, W, C] bytes of one colour.
std::vector<uint8_t> solid(int width, int height, std::vector<uint8_t> colour) {
  std::vector<uint8_t> pixels;
  for (int i = 0; i < width * height; ++i) pixels.insert(pixels.end(), colour.begin(), colour.end());
  return pixels;
}

void write_png(const fs::path& path, int width, int height, const std::vector<uint8_t>& pixels) {
  const int channels = static_cast<int>(pixels.size() / (width * height));
  ASSERT_TRUE(stbi_write_png(path.c_str(), width, height, channels, pixels.data(), width * channels));
}

void write_jpg(const fs::path& path, int width, int height, const std::vector<uint8_t>& pixels) {
  ASSERT_TRUE(stbi_write_jpg(path.c_str(), width, height, 3, pixels.data(), 95));
}

// A 16-bit grayscale PNG (stb writes only 8-bit ones): signature, IHDR, one IDAT, IEND.
void write_png16(const fs::path& path, int width, int height, uint16_t value) {
  auto chunk = [](std::string type, std::vector<uint8_t> data) {
    std::vector<uint8_t> out = {uint8_t(data.size() >> 24), uint8_t(data.size() >> 16),
                                uint8_t(data.size() >> 8), uint8_t(data.size())};
    std::vector<uint8_t> body(type.begin(), type.end());
    body.insert(body.end(), data.begin(), data.end());
    const uLong crc = crc32(0, body.data(), static_cast<uInt>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
    for (int shift : {24, 16, 8, 0}) out.push_back(uint8_t(crc >> shift));
    return out;
  };
  std::vector<uint8_t> header = {uint8_t(width >> 24), uint8_t(width >> 16), uint8_t(width >> 8), uint8_t(width),
                                 uint8_t(height >> 24), uint8_t(height >> 16), uint8_t(height >> 8), uint8_t(height),
                                 16, 0, 0, 0, 0};  // bit depth 16, grayscale
  std::vector<uint8_t> raw;
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    for (int x = 0; x < width; ++x) {
      raw.push_back(uint8_t(value >> 8));
      raw.push_back(uint8_t(value));
    }
  }
  std::vector<uint8_t> compressed(compressBound(raw.size()));
  uLongf size = compressed.size();
  ASSERT_EQ(compress(compressed.data(), &size, raw.data(), raw.size()), Z_OK);
  compressed.resize(size);
  std::ofstream file(path, std::ios::binary);
  const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  file.write(reinterpret_cast<const char*>(signature), 8);
  for (const auto& part : {chunk("IHDR", header), chunk("IDAT", compressed), chunk("IEND", {})})
    file.write(reinterpret_cast<const char*>(part.data()), static_cast<std::streamsize>(part.size()));
}

std::shared_ptr<Dataset> image_folder(const fs::path& folder, const difflab::test::TempDir& cache,
                                      Params extra = {}, int64_t image_size = 16) {
  Params params = std::move(extra);
  params.set("path", folder.string());
  params.set("cache_dir", cache.path().string());
  return difflab::test::make<Dataset>(Family::dataset, "image_folder", params, {image_size, 3});
}

int64_t total(const ImageSplits& splits) { return splits.train.size(0) + splits.validation.size(0); }

}  // namespace

TEST(ImageFolder, CentreCropsAndResizesLikeTheSeed) {
  difflab::test::TempDir dir, cache;
  // 48 x 32: a red band of 8 columns on each side, green in the centre 32 x 32.
  std::vector<uint8_t> pixels;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 48; ++x) {
      const bool centre = x >= 8 && x < 40;
      pixels.insert(pixels.end(), {uint8_t(centre ? 0 : 255), uint8_t(centre ? 255 : 0), 0});
    }
  fs::create_directories(dir / "images" / "sub");
  write_png(dir / "images" / "sub" / "wide.png", 48, 32, pixels);
  ImageSplits splits = image_folder(dir / "images", cache, [] {
    Params p;
    p.set("validation_fraction", 0.0);
    return p;
  }())->load();
  ASSERT_EQ(splits.train.sizes(), torch::IntArrayRef({1, 3, 16, 16}));
  EXPECT_EQ(splits.validation.size(0), 0);
  // Only the green centre survives the crop; the antialiased downscale keeps it pure.
  EXPECT_LT(splits.train[0][0].max().item<float>(), 1e-6f);
  EXPECT_GT(splits.train[0][1].min().item<float>(), 1.0f - 1e-6f);
}

TEST(ImageFolder, SplitIsSeededAndStableWhenImagesAreAdded) {
  difflab::test::TempDir dir, cache;
  fs::create_directories(dir / "images");
  for (int i = 0; i < 40; ++i)
    write_jpg(dir / "images" / ("image-" + std::to_string(i) + ".jpg"), 20, 20, solid(20, 20, {uint8_t(i * 6), 0, 0}));
  Params params;
  params.set("validation_fraction", 0.25);
  ImageSplits first = image_folder(dir / "images", cache, params)->load();
  EXPECT_EQ(total(first), 40);
  EXPECT_GE(first.validation.size(0), 4);   // ~10 expected
  EXPECT_LE(first.validation.size(0), 18);
  EXPECT_TRUE(torch::equal(image_folder(dir / "images", cache, params)->load().validation, first.validation));

  for (int i = 40; i < 60; ++i)
    write_jpg(dir / "images" / ("image-" + std::to_string(i) + ".jpg"), 20, 20, solid(20, 20, {0, uint8_t(i), 0}));
  ImageSplits more = image_folder(dir / "images", cache, params)->load();
  EXPECT_EQ(total(more), 60);
  // Every old validation image is still in validation (new ones have green in them).
  torch::Tensor old_in_new = more.validation.index({more.validation.select(1, 1).amax({1, 2}) < 0.02});
  EXPECT_TRUE(torch::equal(old_in_new, first.validation));

  params.set("split_seed", int64_t{1});
  EXPECT_FALSE(torch::equal(image_folder(dir / "images", cache, params)->load().validation, more.validation));
}

TEST(ImageFolder, ConvertsOrSkipsEveryKindOfBadFile) {
  difflab::test::TempDir dir, cache;
  const fs::path images = dir / "images";
  fs::create_directories(images);
  write_png(images / "good.png", 20, 20, solid(20, 20, {10, 20, 30}));
  write_png(images / "gray.png", 20, 20, solid(20, 20, {128}));
  write_png(images / "alpha.png", 20, 20, solid(20, 20, {255, 0, 0, 7}));
  write_png16(images / "deep.png", 20, 20, 65535);
  write_png(images / "small.png", 8, 8, solid(8, 8, {0, 0, 255}));
  std::ofstream(images / "notes.jpg") << "not an image at all";
  write_png(images / "truncated.png", 20, 20, solid(20, 20, {1, 2, 3}));
  fs::resize_file(images / "truncated.png", 40);
  std::ofstream(images / "readme.txt") << "ignored: not an image extension";

  Params params;
  params.set("validation_fraction", 0.0);
  ImageSplits splits = image_folder(images, cache, params)->load();
  ASSERT_EQ(splits.train.size(0), 5);  // good, gray, alpha, deep, small; 2 unreadable skipped
  EXPECT_EQ(splits.train.sizes(), torch::IntArrayRef({5, 3, 16, 16}));
  // Sorted by path: alpha, deep, good, gray, small.
  EXPECT_NEAR(splits.train[0][0].mean().item<float>(), 1.0f, 1e-6);          // alpha dropped, red kept
  EXPECT_NEAR(splits.train[1].mean().item<float>(), 1.0f, 1e-6);             // 16-bit white
  EXPECT_NEAR(splits.train[3].mean().item<float>(), 128.0f / 255.0f, 1e-6);  // gray -> RGB
  EXPECT_NEAR(splits.train[4][2].mean().item<float>(), 1.0f, 1e-6);          // small, upscaled

  params.set("strict", true);
  try {
    image_folder(images, cache, params)->load();
    FAIL() << "strict accepted unreadable files";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_NE(error.context().file.find("notes.jpg"), std::string::npos) << error.what();
  }
}

TEST(ImageFolder, EmptyOrMissingFoldersAreClearErrors) {
  difflab::test::TempDir dir, cache;
  fs::create_directories(dir / "empty");
  fs::create_directories(dir / "text");
  std::ofstream(dir / "text" / "a.txt") << "x";
  for (const auto& folder : {dir / "empty", dir / "text", dir / "missing"}) {
    try {
      image_folder(folder, cache)->check_available();
      FAIL() << folder;
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::config);
      EXPECT_EQ(error.context().key, "data.path");
      EXPECT_NE(error.message().find(folder.string()), std::string::npos) << error.what();
    }
  }
}

namespace {
// dir/images with two solid 20×20 images, a.png and b.png.
void two_images(const fs::path& dir) {
  fs::create_directories(dir / "images");
  write_png(dir / "images" / "a.png", 20, 20, solid(20, 20, {200, 100, 50}));
  write_png(dir / "images" / "b.png", 20, 20, solid(20, 20, {50, 100, 200}));
}
}  // namespace

TEST(ImageFolder, SecondLoadReadsTheCacheInsteadOfDecoding) {
  difflab::test::TempDir dir, cache;
  two_images(dir.path());
  Params params;
  params.set("validation_fraction", 0.0);
  params.set("repetitions", int64_t{5});
  ImageSplits first = image_folder(dir / "images", cache, params)->load();
  EXPECT_EQ(first.repetitions, 5);
  EXPECT_FALSE(fs::is_empty(cache / "image_folder"));

  // Garble a.png but keep its size and time: the cache key is unchanged, so a second load that
  // decoded again would lose the image; one that reads the cache does not.
  const auto size = fs::file_size(dir / "images" / "a.png");
  const auto time = fs::last_write_time(dir / "images" / "a.png");
  std::ofstream(dir / "images" / "a.png", std::ios::binary) << std::string(size, 'x');
  fs::last_write_time(dir / "images" / "a.png", time);
  ImageSplits second = image_folder(dir / "images", cache, params)->load();
  EXPECT_TRUE(torch::equal(second.train, first.train));

  params.set("cache", false);
  EXPECT_EQ(image_folder(dir / "images", cache, params)->load().train.size(0), 1);  // decoded: a.png unreadable
}

TEST(ImageFolder, ADamagedCacheEntryIsDecodedAgainAndRewritten) {
  difflab::test::TempDir dir, cache;
  two_images(dir.path());
  Params params;
  params.set("validation_fraction", 0.0);
  const ImageSplits first = image_folder(dir / "images", cache, params)->load();
  ASSERT_EQ(std::distance(fs::directory_iterator(cache / "image_folder"), fs::directory_iterator()), 2);  // entry, lock
  fs::path entry;
  for (const auto& file : fs::directory_iterator(cache / "image_folder"))
    if (file.path().extension() == ".pt") entry = file.path();
  fs::resize_file(entry, fs::file_size(entry) / 2);  // a copy cut short, a disk that filled up
  const ImageSplits second = image_folder(dir / "images", cache, params)->load();
  EXPECT_TRUE(torch::equal(second.train, first.train));
  const ImageSplits third = image_folder(dir / "images", cache, params)->load();  // from the rewritten entry
  EXPECT_TRUE(torch::equal(third.train, first.train));
  EXPECT_GT(fs::file_size(entry), 0u);
}
