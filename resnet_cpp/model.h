// A resx export (TorchScript file + JSON manifest) loaded in the C++ runtime.
#pragma once

#include <torch/script.h>

#include <string>
#include <utility>
#include <vector>

namespace resx {

// The extra file inside every resx export that holds its manifest (resx.export.MANIFEST_NAME).
inline constexpr const char* kManifestName = "resx_manifest.json";

class Model {
 public:
  explicit Model(const std::string& path, const std::string& device = "cpu");

  const std::string& path() const { return path_; }
  const std::string& manifest_json() const { return manifest_json_; }  // "" for a foreign file
  bool has_manifest() const { return !manifest_json_.empty(); }

  // Mirrors resx.export.torchscript.fingerprint / weights_hash.
  std::string fingerprint() const;
  std::string weights_hash() const;
  std::string canonical_form() const;
  int64_t parameter_count() const;

  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, at::Tensor>> named_buffers() const;

  void train(bool on = true) { module_.train(on); }
  bool is_training() const { return module_.is_training(); }
  at::Device device() const { return device_; }

  at::Tensor forward(const at::Tensor& input);

  torch::jit::Module& module() { return module_; }

 private:
  std::string path_;
  at::Device device_;
  torch::jit::Module module_;
  std::string manifest_json_;
};

// Wait for the device's queue, so that a clock read after it times the work (CUDA is async).
void sync_device(const at::Device& device);

// The canonical text of a scripted module's computation: inlined forward graph without source
// ranges or name mangling, then name, shape and dtype of every parameter and buffer.
std::string canonical_form(const torch::jit::Module& module);
std::string sha1_hex(const std::string& bytes);

}  // namespace resx
