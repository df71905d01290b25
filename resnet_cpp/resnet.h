// The CIFAR ResNets written in LibTorch's C++ frontend (torch::nn), as C++ users write them: the mirror
// of resnet_py/resx/models.py, module for module. Parameter and buffer names, shapes and order are those of
// the Python module's state_dict, so that the same weights load into both; the architecture (block and
// blocks per stage of each name) comes from the table in models.py (architectures.h), never retyped.
#pragma once

#include <torch/nn.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "json.h"
#include "model.h"

namespace resx {

// What defines a resx network: resx.models.ModelConfig's fields.
struct ModelConfig {
  std::string name = "resnet18";
  int64_t num_classes = 10;
  std::string stem = "cifar";
  std::vector<int64_t> layers;  // blocks per stage (the depth's own unless custom)
  int64_t width = 64;
  std::string block;  // BasicBlock or Bottleneck, the name's (architectures.h)

  // From resx.models.ModelConfig.to_dict(); the name must be in the table, its block the table's.
  static ModelConfig from(const Json& j, const std::string& source);
};

struct BasicBlockImpl : torch::nn::Module {
  static constexpr int64_t expansion = 1;
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

struct BottleneckImpl : torch::nn::Module {
  static constexpr int64_t expansion = 4;
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

struct ResNetImpl : torch::nn::Module {
  explicit ResNetImpl(const ModelConfig& config);
  at::Tensor forward(at::Tensor x);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::MaxPool2d maxpool{nullptr};  // the ImageNet stem's; the CIFAR stem has none (Python: Identity)
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  template <typename Block>
  torch::nn::Sequential make_layer(int64_t planes, int64_t blocks, int64_t stride);
  int64_t inplanes_;
};
TORCH_MODULE(ResNet);

// The format of a weights export (resx.export.weights.FORMAT): a dict of its manifest (JSON) and state.
inline constexpr const char* kWeightsFormat = "resx-weights/1";

// A resx ResNet in the C++ frontend, filled from weights alone, with no torch::jit call: a weights export
// (`resx export ... -o FILE.pth`: {format, manifest, state}, torch.save'd) or a resx checkpoint (its
// model_config and model tensors; checkpoint_format names the format it must carry). Names, shapes and
// dtypes are checked before anything is copied.
class Frontend : public Network {
 public:
  explicit Frontend(const std::string& path, const std::string& device = "cpu",
                    const std::string& checkpoint_format = "resx-checkpoint/1");

  at::Tensor forward(const at::Tensor& input) override { return module_->forward(input); }
  NamedTensors named_parameters() const override;
  NamedTensors named_buffers() const override;
  void train(bool on) override { module_->train(on); }
  bool is_training() const override { return module_->is_training(); }
  const std::string& fingerprint() const override { return fingerprint_; }
  bool recorded() const override { return true; }
  const std::string& manifest_json() const override { return manifest_json_; }
  const ModelConfig& config() const { return config_; }
  ResNet& module() { return module_; }

 private:
  ModelConfig config_;
  ResNet module_{nullptr};
  std::string manifest_json_, fingerprint_;
};

// module "eager": the C++ frontend (Frontend, from a weights export); "scripted": the TorchScript file.
std::unique_ptr<Network> open_network(const std::string& path, const std::string& device, const std::string& module);

}  // namespace resx
