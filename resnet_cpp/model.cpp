#include "model.h"

#include <c10/util/hash.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/cuda.h>

#include <filesystem>
#include <functional>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>

#include "architectures.h"
#include "files.h"
#include "json.h"

namespace resx {
namespace {

std::string describe(const std::string& kind, const std::string& name, const at::Tensor& t) {
  std::ostringstream out;
  out << kind << ' ' << name << ' ' << t.sizes() << ' ' << c10::getDtypeNames(t.scalar_type()).first << '\n';
  return out.str();
}

NamedTensors named(const torch::jit::named_parameter_list& items) {
  NamedTensors out;
  for (const auto& p : items) out.emplace_back(p.name, p.value);
  return out;
}

NamedTensors named(const torch::jit::named_buffer_list& items) {
  NamedTensors out;
  for (const auto& b : items) out.emplace_back(b.name, b.value);
  return out;
}

}  // namespace

void sync_device(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

std::string sha1_hex(const std::string& bytes) { return c10::sha1(bytes).str(); }

std::string tensor_sha1(const at::Tensor& t) {
  const auto cpu = t.detach().to(at::kCPU).contiguous();
  return sha1_hex(std::string(static_cast<const char*>(cpu.const_data_ptr()), cpu.nbytes()));
}

std::string canonical_form(const torch::jit::Module& module) {
  auto graph = module.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  // Source ranges name files and lines; type names get ___torch_mangle_N when a class is scripted twice.
  static const std::regex source_range(R"(\s*# \S+:\d+:\d+$)");
  static const std::regex mangle(R"(___torch_mangle_\d+\.)");
  std::istringstream lines(graph->toString(false));
  std::ostringstream out;
  for (std::string line; std::getline(lines, line);) {
    out << std::regex_replace(std::regex_replace(line, source_range, ""), mangle, "") << '\n';
  }
  out << state_lines(named(module.named_parameters(true)), named(module.named_buffers(true)));
  return out.str();
}

std::string state_lines(const NamedTensors& parameters, const NamedTensors& buffers) {
  std::string out;
  for (const auto& [name, t] : parameters) out += describe("param", name, t);
  for (const auto& [name, t] : buffers) out += describe("buffer", name, t);
  return out;
}

std::string Network::weights_hash() const {
  std::string bytes;  // c10::sha1 hashes one string: concatenate names and raw tensor bytes
  for (const auto& [name, t] : state()) {
    const auto cpu = t.detach().to(at::kCPU).contiguous();
    bytes += name;
    bytes.append(static_cast<const char*>(cpu.const_data_ptr()), cpu.nbytes());
  }
  return sha1_hex(bytes);
}

std::string Network::state_fingerprint() const { return sha1_hex(state_lines(named_parameters(), named_buffers())); }

int64_t Network::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, p] : named_parameters()) n += p.numel();
  return n;
}

NamedTensors Network::state() const {
  auto out = named_parameters();
  for (auto& b : named_buffers()) out.push_back(std::move(b));
  return out;
}

void Network::to_channels_last() {
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : state()) {
    if (t.dim() == 4) t.set_data(t.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

Model::Model(const std::string& path, const std::string& device) : Network(at::Device(device)), path_(path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error(path + ": no such file (export one with `resx export`)");
  }
  torch::jit::ExtraFilesMap extra{{kManifestName, ""}};
  try {
    module_ = torch::jit::load(path, device_, extra);
  } catch (const c10::Error& e) {
    std::string reason = e.what_without_backtrace();
    throw Error(path + ": not a loadable TorchScript file (" + reason.substr(0, reason.find('\n')) + ")");
  }
  manifest_json_ = extra[kManifestName];
}

std::string Model::canonical_form() const { return resx::canonical_form(module_); }

const std::string& Model::fingerprint() const {
  if (fingerprint_.empty()) fingerprint_ = sha1_hex(canonical_form());
  return fingerprint_;
}

NamedTensors Model::named_parameters() const { return named(module_.named_parameters(true)); }

NamedTensors Model::named_buffers() const { return named(module_.named_buffers(true)); }

at::Tensor Model::forward(const at::Tensor& input) { return module_.forward({input.to(device_)}).toTensor(); }

namespace {

std::string join(const std::vector<int64_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}

const Architecture* architecture_of(const std::string& block, const std::vector<int64_t>& layers) {
  for (const auto& a : kArchitectures) {
    if (block == a.block && std::equal(layers.begin(), layers.end(), a.layers.begin(), a.layers.end())) return &a;
  }
  return nullptr;
}

}  // namespace

std::map<std::string, std::string> describe(const Network& model, const std::string& claimed_name) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : model.named_parameters()) shapes[name] = t.sizes().vec();
  auto out = describe_architecture(shapes, claimed_name);
  out["fingerprint"] = model.fingerprint();
  out["state_fingerprint"] = model.state_fingerprint();
  out["weights_hash"] = model.weights_hash();
  return out;
}

std::map<std::string, std::string> describe_architecture(const std::map<std::string, std::vector<int64_t>>& shapes,
                                                         const std::string& claimed_name) {
  int64_t parameters = 0;
  for (const auto& [name, shape] : shapes) {
    parameters += std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
  }
  std::map<std::string, std::string> out{{"parameters", std::to_string(parameters)}};
  const auto conv1 = shapes.find("conv1.weight"), fc = shapes.find("fc.weight");
  if (conv1 == shapes.end() || fc == shapes.end() || conv1->second.size() != 4 || fc->second.size() != 2) {
    out["model.block"] = "(not a resx ResNet)";
    return out;
  }
  std::vector<int64_t> layers;
  for (int stage = 1; stage <= 4; ++stage) {
    const std::string prefix = "layer" + std::to_string(stage) + ".";
    std::set<std::string> blocks;
    for (const auto& [name, shape] : shapes) {
      if (name.rfind(prefix, 0) == 0)
        blocks.insert(name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size()));
    }
    layers.push_back(static_cast<int64_t>(blocks.size()));
  }
  const std::string block = shapes.count("layer1.0.conv3.weight") ? "Bottleneck" : "BasicBlock";
  const auto k = conv1->second[3];
  out["model.block"] = block;
  out["model.layers"] = join(layers);
  out["model.stem"] = k == 3 ? "cifar" : k == 7 ? "imagenet" : std::to_string(k) + "x" + std::to_string(k) + " conv";
  out["model.width"] = std::to_string(conv1->second[0]);
  out["model.num_classes"] = std::to_string(fc->second[0]);
  // The name these shapes imply: the architecture whose own blocks they are, else the claimed one if its
  // block kind matches (custom layers).
  if (const auto* a = architecture_of(block, layers)) {
    out["model.name"] = a->name;
  } else {
    out["model.name"] = "(no " + block + " architecture)";
    for (const auto& a : kArchitectures) {
      if (claimed_name == a.name && block == a.block) out["model.name"] = a.name;
    }
  }
  return out;
}

std::map<std::string, std::string> manifest_claims(const std::string& manifest_json, const std::string& source) {
  const auto manifest = parse_json(manifest_json, source + " manifest");
  const auto what = source + " manifest";
  const auto& model = object(manifest, "model", what);
  std::map<std::string, std::string> claims{
      {"fingerprint", get<std::string>(manifest, "fingerprint", what)},
      {"weights_hash", get<std::string>(manifest, "weights_hash", what)},
      {"parameters", std::to_string(get<int64_t>(manifest, "parameters", what))},
      {"model.name", get<std::string>(model, "name", what)},
      {"model.block", get<std::string>(model, "block", what)},
      {"model.layers", join(get<std::vector<int64_t>>(model, "layers", what))},
      {"model.stem", get<std::string>(model, "stem", what)},
      {"model.width", std::to_string(get<int64_t>(model, "width", what))},
      {"model.num_classes", std::to_string(get<int64_t>(model, "num_classes", what))}};
  if (manifest.contains("state_fingerprint")) {
    claims["state_fingerprint"] = get<std::string>(manifest, "state_fingerprint", what);
  }
  return claims;
}

}  // namespace resx
