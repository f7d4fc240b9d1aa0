#include "training/image_io.h"

#include <stb_image.h>  // Debian's libstb
#include <stb_image_write.h>

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <string>
#include <vector>

#include "difflab/error.h"
#include "difflab/files.h"

namespace difflab {

namespace {

// [N, C, H, W] in [0, 1] -> [N, H, W, C] bytes, contiguous, on the CPU.
torch::Tensor to_bytes(const torch::Tensor& images) {
  return (images.detach().to(torch::kCPU, torch::kFloat32).clamp(0, 1) * 255.0f)
      .round()
      .to(torch::kUInt8)
      .permute({0, 2, 3, 1})
      .contiguous();
}

// Encodes `pixels` ([H, W, C] bytes, rows `stride` bytes apart) as PNG in memory and writes the
// file with checked, atomic I/O: a PNG that could not be written completely is an error, never
// a 0-byte file recorded as an artifact.
void write_png(const std::filesystem::path& path, int width, int height, int channels, const uint8_t* pixels) {
  std::string bytes;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(append, &bytes, width, height, channels, pixels, width * channels))
    throw RuntimeError("cannot encode PNG", ErrorContext::in_file(path.string()));
  write_file_atomically(path, bytes);
}

}  // namespace

void write_image_grid(const std::filesystem::path& path, const torch::Tensor& images,
                      int64_t rows, int64_t cols, int64_t scale) {
  constexpr int64_t gap = 2;
  torch::Tensor pixels = to_bytes(images);  // [N, H, W, C]
  const int64_t count = pixels.size(0), height = pixels.size(1), width = pixels.size(2);
  const int64_t channels = pixels.size(3);
  const int64_t tile_h = height * scale, tile_w = width * scale;
  const int64_t grid_h = rows * tile_h + (rows + 1) * gap;
  const int64_t grid_w = cols * tile_w + (cols + 1) * gap;
  std::vector<uint8_t> grid(static_cast<size_t>(grid_h * grid_w * channels), 0);
  const uint8_t* data = pixels.data_ptr<uint8_t>();
  for (int64_t index = 0; index < std::min(count, rows * cols); ++index) {
    const int64_t top = gap + (index / cols) * (tile_h + gap);
    const int64_t left = gap + (index % cols) * (tile_w + gap);
    for (int64_t y = 0; y < tile_h; ++y)
      for (int64_t x = 0; x < tile_w; ++x)
        for (int64_t c = 0; c < channels; ++c)
          grid[((top + y) * grid_w + left + x) * channels + c] =
              data[((index * height + y / scale) * width + x / scale) * channels + c];
  }
  write_png(path, static_cast<int>(grid_w), static_cast<int>(grid_h), static_cast<int>(channels), grid.data());
}

void write_image(const std::filesystem::path& path, const torch::Tensor& image) {
  torch::Tensor pixels = to_bytes(image.unsqueeze(0))[0];  // [H, W, C]
  write_png(path, static_cast<int>(pixels.size(1)), static_cast<int>(pixels.size(0)), static_cast<int>(pixels.size(2)),
            pixels.data_ptr<uint8_t>());
}

namespace {

bool is_image_file(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension == ".png" || extension == ".jpg" || extension == ".jpeg";
}

}  // namespace

torch::Tensor read_image_folder(const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(folder)) throw ConfigError("not a folder", ErrorContext::in_file(folder.string()));
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder))
    if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw ConfigError("no PNG or JPEG images in the folder", ErrorContext::in_file(folder.string()));

  // First pass: sizes and whether any image has colour (stbi_info reads headers only).
  int width = 0, height = 0, channels = 1;
  for (const auto& file : files) {
    int w = 0, h = 0, c = 0;
    if (!stbi_info(file.c_str(), &w, &h, &c))
      throw ConfigError(std::string("unreadable image: ") + stbi_failure_reason(), ErrorContext::in_file(file.string()));
    if (width == 0) {
      width = w;
      height = h;
    } else if (w != width || h != height) {
      throw ConfigError(fmt::format("image is {}x{}, the folder's first image {}x{}", w, h, width, height),
                        ErrorContext::in_file(file.string(), "all images must share one size"));
    }
    if (c >= 3) channels = 3;
  }
  torch::Tensor images = torch::empty({static_cast<int64_t>(files.size()), height, width, channels}, torch::kUInt8);
  for (size_t index = 0; index < files.size(); ++index) {
    int w = 0, h = 0, c = 0;
    std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
        stbi_load(files[index].c_str(), &w, &h, &c, channels), stbi_image_free);
    if (!pixels)
      throw ConfigError(std::string("cannot decode image: ") + stbi_failure_reason(),
                        ErrorContext::in_file(files[index].string()));
    std::memcpy(images[static_cast<int64_t>(index)].data_ptr<uint8_t>(), pixels.get(),
                static_cast<size_t>(width) * height * channels);
  }
  return images.permute({0, 3, 1, 2}).to(torch::kFloat32).div_(255.0f).contiguous();  // [N, C, H, W]
}

}  // namespace difflab
