// torchscript: a network written in Python and exported as TorchScript (torch.jit.script or
// trace; see tools/export_network.py), trained and sampled by difflab like any other. Its
// forward(noisy_images [B, C, H, W], noise_variances [B, 1, 1, 1]) returns [B, C, H, W]. The
// module's parameters and buffers are registered with this network under their dotted names
// ("." -> "__"), so the optimiser, the EMA, device moves, channels_last and checkpoints see them.
#include <algorithm>
#include <filesystem>
#include <torch/script.h>
#include <torch/torch.h>

#include "difflab/error.h"
#include "difflab/network.h"
#include "difflab/plugin.h"

using namespace difflab;

class TorchScriptNetwork : public Network {
 public:
  TorchScriptNetwork(const Params& params, const BuildContext& context) {
    const std::filesystem::path path = params.string("model");
    if (path.empty())
      throw ConfigError("network.model is not set", ErrorContext::for_key({}, "network.model", "a TorchScript file, e.g. from tools/export_network.py"));
    if (!std::filesystem::is_regular_file(path))
      throw ConfigError("TorchScript network not found: " + path.string(),
                        ErrorContext::for_key(path.string(), "network.model", "export one with tools/export_network.py"));
    try {
      module_ = torch::jit::load(path.string());
    } catch (const c10::Error& error) {
      throw ConfigError("not a TorchScript module: " + error.msg(), ErrorContext::for_key(path.string(), "network.model"));
    }
    if (!module_.find_method("forward"))
      throw ConfigError("the TorchScript module has no forward()", ErrorContext::for_key(path.string(), "network.model"));
    // Every parameter is trained (a module saved from a frozen model would otherwise not learn).
    for (const auto& parameter : module_.named_parameters(/*recurse=*/true))
      register_parameter(registered_name(parameter.name), parameter.value.requires_grad_(true));
    for (const auto& buffer : module_.named_buffers(/*recurse=*/true))
      register_buffer(registered_name(buffer.name), buffer.value);
    if (parameters().empty())
      throw ConfigError("the TorchScript module has no parameters to train",
                        ErrorContext::for_key(path.string(), "network.model", "export a module with learnable layers"));
    // One forward pass now: a module that does not fit the images fails before training starts.
    try {
      torch::NoGradGuard no_grad;
      module_.eval();  // no batch statistics from the probe
      const torch::Tensor probe = torch::zeros({1, context.image_channels, context.image_size, context.image_size});
      const torch::Tensor output = module_.forward({probe, torch::ones({1, 1, 1, 1})}).toTensor();
      if (output.sizes() != probe.sizes())
        throw ConfigError(fmt_shape("forward() returned", output) + fmt_shape(" for input", probe) +
                              "; it must return the input's shape",
                          ErrorContext::for_key(path.string(), "network.model"));
    } catch (const c10::Error& error) {
      throw ConfigError("forward(noisy_images, noise_variances) failed: " + error.msg(),
                        ErrorContext::for_key(path.string(), "network.model"));
    }
    module_.train(is_training());
  }

  static ParamSchema schema() {
    return {ParamSpec::string("model", "", "TorchScript file with forward(noisy_images, noise_variances)").is_path()};
  }

  torch::Tensor forward(const torch::Tensor& noisy_images, const torch::Tensor& noise_variances) override {
    return module_.forward({noisy_images, noise_variances}).toTensor();
  }

  void train(bool on) override {
    torch::nn::Module::train(on);
    module_.train(on);  // dropout and batch statistics in the scripted module
  }

 private:
  static std::string registered_name(std::string name) {
    for (size_t at = name.find('.'); at != std::string::npos; at = name.find('.', at + 2)) name.replace(at, 1, "__");
    return name;
  }
  static std::string fmt_shape(const std::string& what, const torch::Tensor& tensor) {
    std::string text = what + " [";
    for (int64_t i = 0; i < tensor.dim(); ++i) text += (i ? ", " : "") + std::to_string(tensor.size(i));
    return text + "]";
  }

  torch::jit::Module module_;
};

DIFFLAB_PLUGIN(network, "torchscript", TorchScriptNetwork, "1.0.0",
               "a TorchScript network exported from Python, trained by difflab")
