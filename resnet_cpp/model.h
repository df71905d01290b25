// A resx export (TorchScript file + JSON manifest) loaded in the C++ runtime.
#pragma once

#include <torch/script.h>

#include <map>
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

  // Mirrors resx.export.torchscript.fingerprint / weights_hash. The fingerprint is computed once.
  const std::string& fingerprint() const;
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
  mutable std::string fingerprint_;
};

// What a file says of itself, recomputed from its graph and parameters: fingerprint, weights_hash,
// parameters, and the architecture its parameter shapes describe (model.name, model.block,
// model.layers, model.stem, model.width, model.num_classes). `claimed_name` is the manifest's model
// name: a name is only implied by its block and blocks per stage unless the layers are custom.
// Mirrors resx.export.describe; `resx inspect` and `resx-cpp inspect` compare it with manifest_claims.
std::map<std::string, std::string> describe(const Model& model, const std::string& claimed_name);
// The architecture keys alone (and the parameter count), from parameter names and shapes.
std::map<std::string, std::string> describe_architecture(const std::map<std::string, std::vector<int64_t>>& shapes,
                                                         const std::string& claimed_name);
// The same keys, as a manifest states them.
std::map<std::string, std::string> manifest_claims(const std::string& manifest_json, const std::string& source);

// Wait for the device's queue, so that a clock read after it times the work (CUDA is async).
void sync_device(const at::Device& device);

// The canonical text of a scripted module's computation: inlined forward graph without source
// ranges or name mangling, then name, shape and dtype of every parameter and buffer.
std::string canonical_form(const torch::jit::Module& module);
std::string sha1_hex(const std::string& bytes);
// SHA-1 of a tensor's bytes (contiguous, on the CPU): resx.export.tensor_sha1.
std::string tensor_sha1(const at::Tensor& t);

}  // namespace resx
