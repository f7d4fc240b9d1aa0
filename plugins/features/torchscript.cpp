// torchscript: any TorchScript model as a KID feature extractor — this is how InceptionV3 is
// used (tools/export_inception.py exports the standard FID InceptionV3; the seed feeds it 75x75
// images scaled to [-1, 1]). Images are resized (antialiased) and rescaled as the model expects.
#include <filesystem>
#include <torch/script.h>
#include <torch/torch.h>

#include "difflab/error.h"
#include "difflab/features.h"
#include "difflab/plugin.h"

using namespace difflab;
namespace F = torch::nn::functional;

class TorchScriptFeatures : public FeatureExtractor {
 public:
  TorchScriptFeatures(const Params& params, const BuildContext&)
      : input_size_(params.integer("input_size")),
        input_range_(params.string("input_range")),
        input_channels_(params.integer("input_channels")),
        batch_size_(params.integer("batch_size")) {
    const std::filesystem::path path = params.string("model");
    if (!std::filesystem::is_regular_file(path))
      throw ConfigError("TorchScript model not found: " + path.string(),
                        ErrorContext::for_key(path.string(), "features.model", "export one with tools/export_inception.py (see the README)"));
    try {
      module_ = torch::jit::load(path.string());
    } catch (const c10::Error& error) {
      throw ConfigError("not a TorchScript model: " + error.msg(), ErrorContext::for_key(path.string(), "features.model"));
    }
    module_.eval();
  }

  static ParamSchema schema() {
    return {
        ParamSpec::string("model", "", "TorchScript file: [N, C, S, S] -> [N, D] (or [N, D, 1, 1])").is_path(),
        ParamSpec::integer("input_size", 75, "side the model sees (the seed's kid_image_size); 0 = as is")
            .at_least(0),
        ParamSpec::string("input_range", "-1_1", "pixel range the model expects")
            .one_of({"0_1", "-1_1", "0_255"}),
        ParamSpec::integer("input_channels", 3, "channels the model expects (grayscale is repeated)")
            .at_least(1),
        ParamSpec::integer("batch_size", 128, "images per forward pass").at_least(1),
    };
  }

  torch::Tensor extract(const torch::Tensor& images) override {
    torch::NoGradGuard no_grad;
    const torch::Device device = module_device(images.device());
    std::vector<torch::Tensor> features;
    for (int64_t start = 0; start < images.size(0); start += batch_size_) {
      torch::Tensor x = images.slice(0, start, start + batch_size_).to(device, torch::kFloat32);
      if (x.size(1) == 1 && input_channels_ != 1) x = x.expand({-1, input_channels_, -1, -1});
      if (input_size_ > 0 && (x.size(2) != input_size_ || x.size(3) != input_size_))
        x = F::interpolate(x, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{input_size_, input_size_})
                                  .mode(torch::kBilinear)
                                  .align_corners(false)
                                  .antialias(x.size(2) > input_size_));
      if (input_range_ == "-1_1") x = x * 2.0 - 1.0;
      if (input_range_ == "0_255") x = x * 255.0;
      features.push_back(module_.forward({x}).toTensor().flatten(1).to(torch::kCPU, torch::kFloat32));
    }
    return torch::cat(features);
  }

 private:
  // The model runs where the images are; moved there once.
  torch::Device module_device(torch::Device device) {
    if (device != device_) {
      module_.to(device);
      device_ = device;
    }
    return device_;
  }

  int64_t input_size_;
  std::string input_range_;
  int64_t input_channels_;
  int64_t batch_size_;
  torch::jit::Module module_;
  torch::Device device_ = torch::kCPU;
};

DIFFLAB_PLUGIN(features, "torchscript", TorchScriptFeatures, "1.0.0",
               "any TorchScript model, e.g. the FID InceptionV3 from tools/export_inception.py")
