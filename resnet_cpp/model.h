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

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// What training, evaluation and eager inference run in C++: a TorchScript file (Model below), or the
// network written in the C++ frontend and filled from weights alone (resx::Frontend, resnet.h), which
// needs no torch::jit at all. Mirrors the choice of module in resx.train (--module scripted | eager).
class Network {
 public:
  virtual ~Network() = default;

  virtual at::Tensor forward(const at::Tensor& input) = 0;
  virtual NamedTensors named_parameters() const = 0;
  virtual NamedTensors named_buffers() const = 0;
  virtual void train(bool on) = 0;
  virtual bool is_training() const = 0;
  // Of the graph it runs; for the C++ frontend, which has no graph to read, the one its weights file
  // recorded at export (recorded() is then true): its outputs and its state prove it.
  virtual const std::string& fingerprint() const = 0;
  virtual bool recorded() const { return false; }
  virtual const std::string& manifest_json() const = 0;  // "" for a foreign file

  at::Device device() const { return device_; }
  bool has_manifest() const { return !manifest_json().empty(); }
  // Mirror resx.export's weights_hash, state_fingerprint and parameter count: over the tensors, any network.
  std::string weights_hash() const;
  std::string state_fingerprint() const;
  int64_t parameter_count() const;
  NamedTensors state() const;  // parameters, then buffers
  void to_channels_last();     // 4-d parameters and buffers, as resx.device.to_channels_last

 protected:
  explicit Network(at::Device device) : device_(device) {}
  at::Device device_;
};

// A TorchScript file (with its resx manifest), loaded with torch::jit::load.
class Model : public Network {
 public:
  explicit Model(const std::string& path, const std::string& device = "cpu");

  const std::string& path() const { return path_; }
  const std::string& manifest_json() const override { return manifest_json_; }

  // Mirrors resx.export.torchscript.fingerprint. Computed once.
  const std::string& fingerprint() const override;
  std::string canonical_form() const;

  NamedTensors named_parameters() const override;
  NamedTensors named_buffers() const override;

  void train(bool on = true) override { module_.train(on); }
  bool is_training() const override { return module_.is_training(); }

  at::Tensor forward(const at::Tensor& input) override;

  torch::jit::Module& module() { return module_; }

 private:
  std::string path_;
  torch::jit::Module module_;
  std::string manifest_json_;
  mutable std::string fingerprint_;
};

// The lines of a network's state that both fingerprints end with: "param NAME [shape] dtype", then
// "buffer ..." (resx.export.torchscript.state_lines).
std::string state_lines(const NamedTensors& parameters, const NamedTensors& buffers);

// What a file says of itself, recomputed from its graph and parameters: fingerprint, weights_hash,
// parameters, and the architecture its parameter shapes describe (model.name, model.block,
// model.layers, model.stem, model.width, model.num_classes). `claimed_name` is the manifest's model
// name: a name is only implied by its block and blocks per stage unless the layers are custom.
// Mirrors resx.export.describe; `resx inspect` and `resx-cpp inspect` compare it with manifest_claims.
std::map<std::string, std::string> describe(const Network& model, const std::string& claimed_name);
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
