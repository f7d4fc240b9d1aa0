// Dataset family: images in [0, 1] as [N, C, H, W] float tensors, split into train and validation.
#pragma once

#include "difflab/export.h"

#include <torch/types.h>

#include <optional>

#include "difflab/component.h"

namespace difflab {

struct ImageSplits {
  torch::Tensor train;       // [N_train, C, S, S], float32 in [0, 1]
  torch::Tensor validation;  // [N_val, C, S, S], float32 in [0, 1]
  // Passes over the training images per epoch (the seed's dataset_repetitions: a small dataset
  // is seen several times between two noisy, costly KID evaluations).
  int64_t repetitions = 1;
  // Class labels [N] int64 when the dataset has them (Fashion-MNIST, class folders), else
  // undefined. Used by the `classifier` feature extractor.
  torch::Tensor train_labels = {};
  torch::Tensor validation_labels = {};
};

// How many images each split of load() holds, found without decoding them.
struct SplitCounts {
  int64_t train = 0;
  int64_t validation = 0;
};

class DIFFLAB_API Dataset : public Component {
 public:
  // Bump when a virtual function of this interface changes (plugin.h checks it).
  static constexpr uint32_t interface_version = 2;
  ~Dataset() override;
  // Channels of the images, known before loading (a network is built from it).
  virtual int64_t channels() const = 0;
  // Loads and preprocesses to image_size; throws a config Error naming missing files.
  virtual ImageSplits load() const = 0;
  // Cheap check that the data is there (used by `difflab check`); throws like load().
  virtual void check_available() const = 0;
  // The sizes load() would return, from file headers, file counts or a cache, without decoding
  // the images: `difflab check` validates with them in well under a second. std::nullopt (the
  // default) where only load() can tell; check then loads the data, and says so. Throws like
  // load() where what it reads is unreadable.
  virtual std::optional<SplitCounts> counts() const;
};

}  // namespace difflab
