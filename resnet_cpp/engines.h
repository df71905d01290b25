// The engines that run a resx model for inference in the C++ runtime, behind one interface: the network
// written in the C++ frontend, filled from a weights export (eager), the TorchScript file as loaded
// (script) or frozen and optimized for inference (frozen), and an AOTInductor package (aoti). Mirrors
// resx.engines (resnet_py/resx/engines.py).
#pragma once

#include <torch/script.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "protocol.h"

namespace resx {

// Whether this build can capture CUDA graphs (it found CUDA's runtime headers: meson.build).
bool cuda_graphs_available();

// bf16 autocast on a device for the calling thread, while it lives (the state is thread-local).
class AutocastGuard {
 public:
  AutocastGuard(at::DeviceType device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  at::DeviceType device_;
  bool enabled_, was_enabled_;
  at::ScalarType was_dtype_;
};

// Parameters and buffers of four dimensions to channels-last, as nn.Module.to(memory_format=...).
void to_channels_last(torch::jit::Module& module);

class Engine {
 public:
  static std::unique_ptr<Engine> open(const std::string& path, const EngineOptions& options);
  virtual ~Engine() = default;

  // Eval-mode forward of a float32 input; the output is float32.
  virtual at::Tensor forward(const at::Tensor& input) = 0;
  // Of the graph it runs (recorded at export for an AOTInductor package, which has no graph to read; ""
  // for the C++ frontend, a C++ module without a graph: its state and outputs prove it).
  virtual std::string fingerprint() const = 0;
  // Of the weights it holds (for frozen TorchScript: before they were folded; for AOTInductor: its
  // constants), in the module's order.
  virtual std::string weights_hash() const = 0;
  // Of its parameters' and buffers' names, shapes and dtypes (resx.export.state_fingerprint).
  virtual std::string state_fingerprint() const = 0;

  // True when fingerprint and weights hash are the ones recorded at export (an AOTInductor package).
  virtual bool recorded() const { return false; }
  // The intra-op thread count compiled in (0: the runtime's, dynamic); -1 for an engine that compiles nothing.
  virtual int64_t compiled_threads() const { return -1; }

  const EngineOptions& options() const { return options_; }
  at::Device device() const { return at::Device(options_.device); }
  double load_seconds() const { return load_seconds_; }

 protected:
  explicit Engine(EngineOptions options) : options_(std::move(options)) {}
  at::Tensor prepare(const at::Tensor& input) const;  // to the device, channels-last when asked

  EngineOptions options_;
  double load_seconds_ = 0;
};

// What an AOTInductor package from resx export shows of itself when run: {"runs": "yes"} when it gives
// finite [B, classes] logits at batch 1 and 3 (resx.export.aoti.describe_package). Sets *manifest_json.
std::map<std::string, std::string> describe_package(const std::string& path, std::string* manifest_json);

}  // namespace resx
