#include "difflab/image_io.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include <vector>

#include "difflab/error.h"

namespace difflab {

void write_image_grid(const std::filesystem::path& path, const torch::Tensor& images,
                      int64_t rows, int64_t cols, int64_t scale) {
  constexpr int64_t gap = 2;
  // [N, C, H, W] in [0, 1] -> [N, H, W, C] bytes
  torch::Tensor pixels = (images.detach().to(torch::kCPU, torch::kFloat32).clamp(0, 1) * 255.0f)
                             .round()
                             .to(torch::kUInt8)
                             .permute({0, 2, 3, 1})
                             .contiguous();
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
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  if (!stbi_write_png(path.c_str(), static_cast<int>(grid_w), static_cast<int>(grid_h),
                      static_cast<int>(channels), grid.data(),
                      static_cast<int>(grid_w * channels)))
    throw RuntimeError("cannot write PNG", {path.string(), 0, 0, "", ""});
}

}  // namespace difflab
