#include "model.h"

#include <c10/util/hash.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/cuda.h>

#include <filesystem>
#include <regex>
#include <sstream>

namespace resx {
namespace {

std::string describe(const std::string& kind, const std::string& name, const at::Tensor& t) {
  std::ostringstream out;
  out << kind << ' ' << name << ' ' << t.sizes() << ' ' << c10::getDtypeNames(t.scalar_type()).first << '\n';
  return out.str();
}

}  // namespace

void sync_device(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

std::string sha1_hex(const std::string& bytes) { return c10::sha1(bytes).str(); }

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
  for (const auto& p : module.named_parameters(true)) out << describe("param", p.name, p.value);
  for (const auto& b : module.named_buffers(true)) out << describe("buffer", b.name, b.value);
  return out.str();
}

Model::Model(const std::string& path, const std::string& device) : path_(path), device_(device) {
  if (!std::filesystem::is_regular_file(path)) {
    throw std::runtime_error(path + ": no such file (export one with `resx export`)");
  }
  torch::jit::ExtraFilesMap extra{{kManifestName, ""}};
  try {
    module_ = torch::jit::load(path, device_, extra);
  } catch (const c10::Error& e) {
    throw std::runtime_error(path + ": not a loadable TorchScript file (" + e.what_without_backtrace() + ")");
  }
  manifest_json_ = extra[kManifestName];
}

std::string Model::canonical_form() const { return resx::canonical_form(module_); }

std::string Model::fingerprint() const { return sha1_hex(canonical_form()); }

std::string Model::weights_hash() const {
  std::string bytes;  // c10::sha1 hashes one string: concatenate names and raw tensor bytes
  auto add = [&](const std::string& name, const at::Tensor& t) {
    const auto cpu = t.detach().to(at::kCPU).contiguous();
    bytes += name;
    bytes.append(static_cast<const char*>(cpu.const_data_ptr()), cpu.nbytes());
  };
  for (const auto& p : module_.named_parameters(true)) add(p.name, p.value);
  for (const auto& b : module_.named_buffers(true)) add(b.name, b.value);
  return sha1_hex(bytes);
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : module_.parameters(true)) n += p.numel();
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> Model::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : module_.named_parameters(true)) out.emplace_back(p.name, p.value);
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> Model::named_buffers() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& b : module_.named_buffers(true)) out.emplace_back(b.name, b.value);
  return out;
}

at::Tensor Model::forward(const at::Tensor& input) { return module_.forward({input.to(device_)}).toTensor(); }

}  // namespace resx
