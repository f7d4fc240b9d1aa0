// Writing images to disk (PNG, via stb_image_write).
#pragma once

#include <filesystem>
#include <torch/types.h>

namespace difflab {

// images [N, C, H, W] in [0, 1] (C = 1 or 3) -> one PNG of rows x cols tiles with a 2-pixel
// gap, each tile scaled up by `scale` (nearest). Missing tiles stay black.
void write_image_grid(const std::filesystem::path& path, const torch::Tensor& images,
                      int64_t rows, int64_t cols, int64_t scale = 1);

// One image [C, H, W] in [0, 1] (C = 1 or 3) as a PNG of its own size.
void write_image(const std::filesystem::path& path, const torch::Tensor& image);

// Every PNG and JPEG under `folder` (recursively, sorted by path) as [N, C, H, W] float32 in
// [0, 1]; C = 3 if any image has colour, else 1 (alpha is dropped). All images must share one
// size. Throws a config Error naming the folder or the offending file.
torch::Tensor read_image_folder(const std::filesystem::path& folder);

}  // namespace difflab
