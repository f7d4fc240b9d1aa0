// classifier: a small CNN trained on the dataset's own labels, features from its penultimate
// layer — a meaningful KID without downloading a pretrained network (Fashion-MNIST has labels,
// so do class folders such as Flowers-102's). Trained once per dataset and cached on disk;
// features are scaled to unit root-mean-square on the training images.
#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <sstream>
#include <torch/torch.h>

#include "difflab/cache.h"
#include "difflab/dataset.h"
#include "difflab/error.h"
#include "difflab/features.h"
#include "difflab/files.h"
#include "difflab/plugin.h"

using namespace difflab;
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

// Three conv blocks, global average pooling, a feature layer and the class layer.
struct ClassifierNetImpl : torch::nn::Module {
  ClassifierNetImpl(int64_t channels, int64_t width, int64_t feature_dims, int64_t classes) {
    auto conv = [](int64_t in, int64_t out) {
      return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, /*kernel_size=*/3).padding(1));
    };
    conv1 = register_module("conv1", conv(channels, width));
    conv2 = register_module("conv2", conv(width, 2 * width));
    conv3 = register_module("conv3", conv(2 * width, 4 * width));
    features = register_module("features", torch::nn::Linear(4 * width, feature_dims));
    head = register_module("head", torch::nn::Linear(feature_dims, classes));
  }

  // [N, C, H, W] in [0, 1] -> [N, feature_dims]
  torch::Tensor embed(torch::Tensor x) {
    x = F::max_pool2d(torch::relu(conv1(x * 2.0 - 1.0)), F::MaxPool2dFuncOptions(2));
    x = F::max_pool2d(torch::relu(conv2(x)), F::MaxPool2dFuncOptions(2));
    x = torch::relu(conv3(x)).mean({2, 3});
    return torch::relu(features(x));
  }

  torch::Tensor forward(const torch::Tensor& x) { return head(embed(x)); }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::Linear features{nullptr}, head{nullptr};
};
TORCH_MODULE(ClassifierNet);

// A key for the training data: settings, shape, labels and a strided sample of the pixels.
uint64_t data_key(const ImageSplits& data, const std::string& settings) {
  uint64_t hash = fnv1a(settings);
  for (int64_t size : data.train.sizes()) hash = fnv1a(&size, sizeof(size), hash);
  torch::Tensor labels = data.train_labels.contiguous();
  hash = fnv1a(labels.data_ptr(), labels.numel() * labels.element_size(), hash);
  torch::Tensor sample = data.train.slice(0, 0, data.train.size(0), 97).contiguous();
  return fnv1a(sample.data_ptr(), sample.numel() * sample.element_size(), hash);
}

}  // namespace

class ClassifierFeatures : public FeatureExtractor {
 public:
  ClassifierFeatures(const Params& params, const BuildContext& context)
      : width_(params.integer("width")),
        feature_dims_(params.integer("feature_dims")),
        epochs_(params.integer("epochs")),
        batch_size_(params.integer("batch_size")),
        learning_rate_(params.real("learning_rate")),
        cache_dir_(params.string("cache_dir")),
        channels_(context.image_channels) {}

  static ParamSchema schema() {
    return {
        ParamSpec::integer("width", 32, "channels of the first conv block").at_least(1),
        ParamSpec::integer("feature_dims", 128, "size of the penultimate (feature) layer").at_least(2),
        ParamSpec::integer("epochs", 2, "training epochs over the training split").at_least(1),
        ParamSpec::integer("batch_size", 128, "training batch size").at_least(1),
        ParamSpec::real("learning_rate", 1e-3, "Adam learning rate").greater_than(0),
        ParamSpec::string("cache_dir", "", "cache folder; empty = $XDG_CACHE_HOME/difflab or ~/.cache/difflab")
            .is_path(),
    };
  }

  void prepare(const ImageSplits& data) override {
    if (!data.train_labels.defined())
      throw ConfigError("the classifier features need a dataset with labels",
                        ErrorContext::for_key({}, "features.plugin", "use fashion_mnist, an image folder of class folders, or features \"pixels\""));
    const int64_t classes = data.train_labels.max().item<int64_t>() + 1;
    // The same data trains the same classifier (seed 0), and the experiment's own random stream
    // is left where it was.
    auto generator = at::detail::getDefaultCPUGenerator();
    const torch::Tensor experiment_rng_state = generator.get_state();
    torch::manual_seed(0);
    net_ = ClassifierNet(channels_, width_, feature_dims_, classes);
    const fs::path cache_file = cache_path(data, classes);
    {
      CacheLock lock(cache_file);  // parallel sweep workers train it once
      bool loaded = false;
      if (fs::exists(cache_file)) {
        try {
          torch::load(net_, cache_file.string());
          loaded = true;
        } catch (const c10::Error&) {
          fmt::print(stderr, "difflab: warning: {}: unreadable cache entry, training the classifier again\n",
                     cache_file.string());
          net_ = ClassifierNet(channels_, width_, feature_dims_, classes);
        }
      }
      if (!loaded) {
        train(data);
        std::ostringstream bytes;  // serialized in memory: a full disk is a warning, not a crash
        torch::save(net_, bytes);
        store_cache_entry(cache_file, bytes.str());
      }
    }
    net_->eval();
    generator.set_state(experiment_rng_state);
    // Unit root-mean-square features on the training images, so that KID's kernel
    // (x·y/d + 1)³ sees values of the order of Inception's and KID keeps a readable scale.
    feature_scale_ = 1.0;
    const torch::Tensor sample = extract(data.train.slice(0, 0, std::min<int64_t>(data.train.size(0), 2048)));
    feature_scale_ = 1.0 / std::max(1e-12, sample.pow(2).mean().sqrt().item<double>());
    if (data.validation_labels.defined() && data.validation.size(0) > 0)
      fmt::print("classifier features: validation accuracy {:.3f} ({} classes, cached in {})\n",
                 accuracy(data.validation, data.validation_labels), classes, cache_file.string());
  }

  torch::Tensor extract(const torch::Tensor& images) override {
    if (!net_) throw RuntimeError("classifier features used before prepare()");
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> features;
    for (int64_t start = 0; start < images.size(0); start += batch_size_)
      features.push_back(net_->embed(images.slice(0, start, start + batch_size_).to(torch::kCPU, torch::kFloat32)));
    return torch::cat(features) * feature_scale_;
  }

 private:
  void train(const ImageSplits& data) {
    torch::optim::Adam optimizer(net_->parameters(), torch::optim::AdamOptions(learning_rate_));
    net_->train();
    const int64_t count = data.train.size(0);
    for (int64_t epoch = 0; epoch < epochs_; ++epoch) {
      torch::Tensor order = torch::randperm(count, torch::kLong);
      for (int64_t start = 0; start < count; start += batch_size_) {
        torch::Tensor rows = order.slice(0, start, start + batch_size_);
        torch::Tensor loss = F::cross_entropy(net_->forward(data.train.index_select(0, rows)),
                                              data.train_labels.index_select(0, rows));
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
      }
    }
  }

  double accuracy(const torch::Tensor& images, const torch::Tensor& labels) {
    torch::NoGradGuard no_grad;
    int64_t correct = 0;
    for (int64_t start = 0; start < images.size(0); start += batch_size_)
      correct += (net_->forward(images.slice(0, start, start + batch_size_)).argmax(1) ==
                  labels.slice(0, start, start + batch_size_))
                     .sum()
                     .item<int64_t>();
    return static_cast<double>(correct) / static_cast<double>(images.size(0));
  }

  fs::path cache_path(const ImageSplits& data, int64_t classes) const {
    const std::string settings = fmt::format("v1 {} {} {} {} {} {} {}", channels_, width_, feature_dims_,
                                             epochs_, batch_size_, learning_rate_, classes);
    return cache_root(cache_dir_.string()) / "classifier" / fmt::format("{:016x}.pt", data_key(data, settings));
  }

  int64_t width_, feature_dims_, epochs_, batch_size_;
  double learning_rate_;
  fs::path cache_dir_;
  int64_t channels_;
  ClassifierNet net_{nullptr};
  double feature_scale_ = 1.0;  // 1 / RMS of the training images' features
};

DIFFLAB_PLUGIN(features, "classifier", ClassifierFeatures, "1.0.0",
               "small CNN trained on the dataset's labels (cached); penultimate-layer features")
