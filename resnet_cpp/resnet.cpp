#include "resnet.h"

#include <filesystem>

#include "architectures.h"
#include "rundir.h"

namespace resx {
namespace nn = torch::nn;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) { return conv(in, out, 3, stride, 1); }
nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) { return conv(in, out, 1, stride, 0); }
nn::ReLU relu() { return nn::ReLU(nn::ReLUOptions().inplace(true)); }

}  // namespace

ModelConfig ModelConfig::from(const Json& j, const std::string& source) {
  ModelConfig c;
  c.name = get<std::string>(j, "name", source);
  const auto* arch = std::find_if(kArchitectures.begin(), kArchitectures.end(),
                                  [&](const Architecture& a) { return c.name == a.name; });
  if (arch == kArchitectures.end()) {
    throw Error(source + ": '" + c.name +
                "' is not a resx ResNet; the C++ module is written for resnet18, resnet34, "
                "resnet50, resnet101 and resnet152 (run this model with the TorchScript or AOTInductor engines)");
  }
  c.block = arch->block;
  if (j.contains("block") && get<std::string>(j, "block", source) != c.block) {
    throw Error(source + ": " + c.name + " has " + c.block + "s, not " + get<std::string>(j, "block", source) + "s");
  }
  c.num_classes = get<int64_t>(j, "num_classes", source);
  c.stem = get<std::string>(j, "stem", source);
  c.width = get<int64_t>(j, "width", source);
  c.layers = j.contains("layers") && !j.at("layers").is_null()
                 ? get<std::vector<int64_t>>(j, "layers", source)
                 : std::vector<int64_t>(arch->layers.begin(), arch->layers.end());
  if (c.layers.size() != 4 || c.num_classes < 1 || c.width < 1 || (c.stem != "cifar" && c.stem != "imagenet")) {
    throw Error(source +
                ": not a resx ResNet configuration (4 stages, classes and width >= 1, cifar or imagenet stem)");
  }
  return c;
}

BasicBlockImpl::BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, nn::Sequential down) {
  // Registered in the order of resx.models.BasicBlock.__init__: the state_dict's order.
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  relu = register_module("relu", resx::relu());
  conv2 = register_module("conv2", conv3x3(planes, planes));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  if (down) downsample = register_module("downsample", down);
}

at::Tensor BasicBlockImpl::forward(const at::Tensor& x) {
  auto out = relu(bn1(conv1(x)));
  out = bn2(conv2(out));
  const auto identity = downsample ? downsample->forward(x) : x;
  return relu(out + identity);
}

BottleneckImpl::BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, nn::Sequential down) {
  conv1 = register_module("conv1", conv1x1(inplanes, planes));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, stride));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  conv3 = register_module("conv3", conv1x1(planes, planes * expansion));
  bn3 = register_module("bn3", nn::BatchNorm2d(planes * expansion));
  relu = register_module("relu", resx::relu());
  if (down) downsample = register_module("downsample", down);
}

at::Tensor BottleneckImpl::forward(const at::Tensor& x) {
  auto out = relu(bn1(conv1(x)));
  out = relu(bn2(conv2(out)));
  out = bn3(conv3(out));
  const auto identity = downsample ? downsample->forward(x) : x;
  return relu(out + identity);
}

template <typename Block>
nn::Sequential ResNetImpl::make_layer(int64_t planes, int64_t blocks, int64_t stride) {
  const int64_t expansion = Block::Impl::expansion;
  nn::Sequential downsample{nullptr};
  if (stride != 1 || inplanes_ != planes * expansion) {
    downsample = nn::Sequential(conv1x1(inplanes_, planes * expansion, stride), nn::BatchNorm2d(planes * expansion));
  }
  nn::Sequential layer;
  layer->push_back(Block(inplanes_, planes, stride, downsample));
  inplanes_ = planes * expansion;
  for (int64_t i = 1; i < blocks; ++i) layer->push_back(Block(inplanes_, planes, 1, nn::Sequential{nullptr}));
  return layer;
}

ResNetImpl::ResNetImpl(const ModelConfig& c) : inplanes_(c.width) {
  const bool cifar = c.stem == "cifar";
  conv1 = register_module("conv1", cifar ? conv(3, c.width, 3, 1, 1) : conv(3, c.width, 7, 2, 3));
  bn1 = register_module("bn1", nn::BatchNorm2d(c.width));
  relu = register_module("relu", resx::relu());
  if (!cifar) maxpool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  const bool basic = c.block == "BasicBlock";
  auto layer = [&](int64_t planes, int64_t blocks, int64_t stride) {
    return basic ? make_layer<BasicBlock>(planes, blocks, stride) : make_layer<Bottleneck>(planes, blocks, stride);
  };
  layer1 = register_module("layer1", layer(c.width, c.layers[0], 1));
  layer2 = register_module("layer2", layer(2 * c.width, c.layers[1], 2));
  layer3 = register_module("layer3", layer(4 * c.width, c.layers[2], 2));
  layer4 = register_module("layer4", layer(8 * c.width, c.layers[3], 2));
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
  fc = register_module("fc", nn::Linear(8 * c.width * (basic ? 1 : 4), c.num_classes));
}

at::Tensor ResNetImpl::forward(at::Tensor x) {
  x = relu(bn1(conv1(x)));
  if (maxpool) x = maxpool(x);
  x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
  x = torch::flatten(avgpool(x), 1);
  return fc(x);
}

Frontend::Frontend(const std::string& path, const std::string& device, const std::string& checkpoint_format)
    : Network(at::Device(device)) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error(path + ": no such file (export weights with `resx export MODEL -o FILE.pth`)");
  }
  const auto dict = read_dict(path, "weights file (a resx export .pth or a checkpoint)");
  c10::Dict<std::string, at::Tensor> tensors;
  const auto format = dict.contains("format") && dict.at("format").isString() ? dict.at("format").toStringRef() : "";
  if (format == kWeightsFormat) {
    if (!dict.contains("manifest") || !dict.at("manifest").isString()) {
      throw Error(path + ": malformed resx weights export (no manifest)");
    }
    manifest_json_ = dict.at("manifest").toStringRef();
    const auto manifest = parse_json(manifest_json_, path + " manifest");
    config_ = ModelConfig::from(object(manifest, "model", path + " manifest"), path + " manifest model");
    fingerprint_ = get<std::string>(manifest, "fingerprint", path + " manifest");
    tensors = tensor_dict(dict, "state", path);
  } else if (format == checkpoint_format) {
    const auto checkpoint = read_checkpoint(path, checkpoint_format);
    config_ = ModelConfig::from(parse_json(checkpoint.at("model_config").toStringRef(), path + " model_config"),
                                path + " model_config");
    fingerprint_ = checkpoint.at("fingerprint").toStringRef();
    tensors = tensor_dict(checkpoint, "model", path);
  } else {
    throw Error(path + ": neither a resx weights export (" + kWeightsFormat + ") nor a checkpoint (" +
                checkpoint_format + ")");
  }
  module_ = ResNet(config_);
  module_->to(device_);
  const auto mine = state();
  check_tensors(path, "model", mine, tensors);
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : mine) t.copy_(tensors.at(name));
}

NamedTensors Frontend::named_parameters() const {
  NamedTensors out;
  for (const auto& p : module_->named_parameters(true)) out.emplace_back(p.key(), p.value());
  return out;
}

NamedTensors Frontend::named_buffers() const {
  NamedTensors out;
  for (const auto& b : module_->named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

std::unique_ptr<Network> open_network(const std::string& path, const std::string& device, const std::string& module) {
  if (module == "eager") return std::make_unique<Frontend>(path, device);
  if (module == "scripted") return std::make_unique<Model>(path, device);
  throw Error("unknown module '" + module + "': eager (the C++ frontend) or scripted (TorchScript)");
}

}  // namespace resx
