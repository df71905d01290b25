#include "engines.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/inductor/aoti_runner/model_container_runner.h>
#include <torch/csrc/jit/passes/autocast.h>

#include <chrono>
#include <filesystem>

#ifdef RESX_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "env.h"
#include "files.h"
#include "json.h"
#include "model.h"
#include "resnet.h"
#include "timing.h"

namespace resx {
namespace {

using Clock = std::chrono::steady_clock;

void check_options(const EngineOptions& o) {
  if (o.engine != "eager" && o.engine != "script" && o.engine != "frozen" && o.engine != "aoti") {
    throw Error("unknown engine '" + o.engine + "': eager, script, frozen or aoti");
  }
  if (o.dtype != "fp32" && o.dtype != "bf16") throw Error("unknown dtype '" + o.dtype + "': fp32 or bf16");
  if (o.cuda_graphs && !at::Device(o.device).is_cuda()) throw Error("CUDA graphs need --device cuda");
  if (o.cuda_graphs && !cuda_graphs_available()) {
    throw Error("this resx-cpp was built without CUDA's runtime headers: no CUDA graphs (rebuild where they are)");
  }
}

// The TorchScript file, as loaded or frozen and optimized for inference.
class ScriptEngine : public Engine {
 public:
  ScriptEngine(const std::string& path, EngineOptions options) : Engine(std::move(options)) {
    const auto start = Clock::now();
    Model model(path, options_.device);
    model.train(false);
    fingerprint_ = model.fingerprint();
    weights_hash_ = model.weights_hash();
    state_ = model.state_fingerprint();
    module_ = model.module();
    if (options_.channels_last) to_channels_last(module_);
    if (options_.engine == "frozen") {
      module_ = torch::jit::optimize_for_inference(module_);  // freezes it (BatchNorm folds into the convs)
    }
    load_seconds_ = seconds_since(start);
  }

  at::Tensor forward(const at::Tensor& input) override {
    const AutocastGuard autocast(device().type(), options_.dtype == "bf16");
    return module_.forward({prepare(input)}).toTensor().to(at::kFloat);
  }
  std::string fingerprint() const override { return fingerprint_; }
  std::string weights_hash() const override { return weights_hash_; }
  std::string state_fingerprint() const override { return state_; }

 private:
  torch::jit::Module module_;
  std::string fingerprint_, weights_hash_, state_;
};

// The C++ frontend module (resx::ResNet) filled from a weights export: what C++ users write, and the
// exact mirror of py-eager (the same ATen operators, one by one). No torch::jit call.
class EagerEngine : public Engine {
 public:
  EagerEngine(const std::string& path, EngineOptions options) : Engine(std::move(options)) {
    const auto start = Clock::now();
    network_ = std::make_unique<Frontend>(path, options_.device);
    network_->train(false);
    weights_hash_ = network_->weights_hash();
    state_ = network_->state_fingerprint();
    if (options_.channels_last) network_->to_channels_last();
    load_seconds_ = seconds_since(start);
  }

  at::Tensor forward(const at::Tensor& input) override {
    const AutocastGuard autocast(device().type(), options_.dtype == "bf16");
    return network_->forward(prepare(input)).to(at::kFloat);
  }
  std::string fingerprint() const override { return ""; }  // a C++ module: no graph to read
  std::string weights_hash() const override { return weights_hash_; }
  std::string state_fingerprint() const override { return state_; }

 private:
  std::unique_ptr<Frontend> network_;
  std::string weights_hash_, state_;
};

// An AOTInductor package from resx export: its manifest is the package's "resx_manifest" metadata.
class AotiEngine : public Engine {
 public:
  AotiEngine(const std::string& path, EngineOptions options) : Engine(std::move(options)) {
    if (!std::filesystem::is_regular_file(path)) {
      throw Error(path + ": no such file (export one with `resx export MODEL --format aoti -o FILE.pt2`)");
    }
    const auto start = Clock::now();
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model", false,
                                                                          static_cast<size_t>(options_.runners));
    } catch (const c10::Error& e) {
      const std::string reason = e.what_without_backtrace();
      throw Error(path + ": not a loadable AOTInductor package (" + reason.substr(0, reason.find('\n')) + ")");
    }
    load_seconds_ = seconds_since(start);
    const auto metadata = loader_->get_metadata();
    source_ = path + " manifest";
    if (!metadata.count(kManifestName)) {
      // A package resx did not write: nothing recorded to check it against. Its bytes identify it
      // (the same in every runtime that opens the file); its outputs are what the gate compares.
      const auto id = "file:" + sha1_hex(read_file(path, "AOTInductor package"));
      manifest_ = {{"fingerprint", id}, {"weights_hash", id}, {"state_fingerprint", ""}, {"compile", {{"threads", 0}}}};
      return;
    }
    manifest_json_ = metadata.at(kManifestName);
    manifest_ = parse_json(manifest_json_, source_);
    const auto& compiled = object(manifest_, "compile", source_);
    const auto want = [&](const std::string& key, const std::string& value) {
      const auto got = get<std::string>(compiled, key, source_ + " compile");
      if (got != value) {
        throw Error(path + ": compiled for " + key + " " + got + ", this run asks for " + value +
                    "; re-export with `resx export ... --format aoti --" + key + " " + value + "`");
      }
    };
    want("device", at::Device(options_.device).is_cuda() ? "cuda" : "cpu");
    want("dtype", options_.dtype);
    want("memory_format", options_.channels_last ? "channels_last" : "contiguous");
  }

  at::Tensor forward(const at::Tensor& input) override {
    return loader_->run({prepare(input)})[0];  // bf16 autocast is compiled into the package
  }
  // A package of compiled code has no graph to fingerprint, and Inductor folds or merges the weights
  // into constants of its own: both are the ones recorded at export; its outputs prove them.
  std::string fingerprint() const override { return get<std::string>(manifest_, "fingerprint", source_); }
  std::string weights_hash() const override { return get<std::string>(manifest_, "weights_hash", source_); }
  std::string state_fingerprint() const override {
    return manifest_.value("state_fingerprint", "");  // recorded at export, as the fingerprint
  }
  bool recorded() const override { return true; }
  int64_t compiled_threads() const override {
    return get<int64_t>(manifest_.at("compile"), "threads", source_ + " compile");
  }
  const std::string& manifest_json() const { return manifest_json_; }

  static std::string manifest_of(const std::unordered_map<std::string, std::string>& metadata,
                                 const std::string& path) {
    const auto it = metadata.find(kManifestName);
    if (it == metadata.end()) throw Error(path + ": no resx manifest (a foreign AOTInductor package)");
    return it->second;
  }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::string manifest_json_;
  std::string source_;
  Json manifest_;
};

#ifdef RESX_WITH_CUDA
// An engine's forward captured in a CUDA graph once per input shape and replayed on a static input,
// so that a call costs one launch instead of one per kernel (resx.engines.Engine, torch.cuda.CUDAGraph).
// The output is the graph's static tensor: valid until the next call.
class GraphedEngine : public Engine {
 public:
  explicit GraphedEngine(std::unique_ptr<Engine> inner) : Engine(inner->options()), inner_(std::move(inner)) {
    load_seconds_ = inner_->load_seconds();
  }

  at::Tensor forward(const at::Tensor& input) override {
    const auto x = prepare(input);
    if (!graph_ || x.sizes() != static_in_.sizes()) capture(x);
    static_in_.copy_(x);
    graph_->replay();
    return static_out_;
  }
  std::string fingerprint() const override { return inner_->fingerprint(); }
  std::string weights_hash() const override { return inner_->weights_hash(); }
  std::string state_fingerprint() const override { return inner_->state_fingerprint(); }
  bool recorded() const override { return inner_->recorded(); }
  int64_t compiled_threads() const override { return inner_->compiled_threads(); }

 private:
  void capture(const at::Tensor& x) {
    static_in_ = x.clone();
    const auto side = c10::cuda::getStreamFromPool();
    {
      const c10::cuda::CUDAStreamGuard guard(side);
      for (int i = 0; i < 3; ++i) inner_->forward(static_in_);  // warm-up, on the stream that captures
      side.synchronize();
      graph_ = std::make_unique<at::cuda::CUDAGraph>();
      graph_->capture_begin();
      static_out_ = inner_->forward(static_in_);
      graph_->capture_end();
    }
    side.synchronize();
  }

  std::unique_ptr<Engine> inner_;
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
  at::Tensor static_in_, static_out_;
};
#endif

}  // namespace

AutocastGuard::AutocastGuard(at::DeviceType device, bool enabled)
    : device_(device),
      enabled_(enabled),
      was_enabled_(at::autocast::is_autocast_enabled(device)),
      was_dtype_(at::autocast::get_autocast_dtype(device)) {
  if (!enabled_) return;
  // TorchScript's own autocast pass casts otherwise than eager autocast; off, a scripted graph runs
  // under the dispatcher's autocast exactly as the eager module does (bit-identical training, tested).
  torch::jit::setAutocastMode(false);
  at::autocast::set_autocast_enabled(device_, true);
  at::autocast::set_autocast_dtype(device_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_, was_enabled_);
  at::autocast::set_autocast_dtype(device_, was_dtype_);
}

void to_channels_last(torch::jit::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& p : module.parameters(true)) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  for (const auto& b : module.buffers(true)) {
    if (b.dim() == 4) b.set_data(b.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

at::Tensor Engine::prepare(const at::Tensor& input) const {
  auto x = input.to(device());
  return options_.channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

std::unique_ptr<Engine> Engine::open(const std::string& path, const EngineOptions& options) {
  check_options(options);
  if (options.deterministic) set_deterministic(true);
  std::unique_ptr<Engine> engine;
  if (options.engine == "aoti") {
    engine = std::make_unique<AotiEngine>(path, options);
  } else if (options.engine == "eager") {
    engine = std::make_unique<EagerEngine>(path, options);
  } else {
    engine = std::make_unique<ScriptEngine>(path, options);
  }
#ifdef RESX_WITH_CUDA
  if (options.cuda_graphs) return std::make_unique<GraphedEngine>(std::move(engine));
#endif
  return engine;
}

bool cuda_graphs_available() {
#ifdef RESX_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string runs(Engine& engine, int64_t num_classes, const std::vector<int64_t>& shape) {
  c10::InferenceMode guard;
  for (int64_t batch : {1, 3}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(batch));
    std::vector<int64_t> sizes{batch};
    sizes.insert(sizes.end(), shape.begin(), shape.end());
    const auto y = engine.forward(at::randn(sizes, gen, at::kFloat));
    if (y.dim() != 2 || y.size(0) != batch || y.size(1) != num_classes || y.scalar_type() != at::kFloat ||
        !y.isfinite().all().item<bool>()) {
      return "no: batch " + std::to_string(batch) + " gave " + c10::str(y.sizes()) + " " +
             c10::toString(y.scalar_type());
    }
  }
  return "yes";
}

std::map<std::string, std::string> describe_package(const std::string& path, std::string* manifest_json) {
  if (!std::filesystem::is_regular_file(path)) throw Error(path + ": no such file");
  std::unordered_map<std::string, std::string> metadata;
  try {
    metadata = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
  } catch (const c10::Error& e) {
    const std::string reason = e.what_without_backtrace();
    throw Error(path + ": not a loadable AOTInductor package (" + reason.substr(0, reason.find('\n')) + ")");
  }
  const auto source = path + " manifest";
  const auto manifest = parse_json(AotiEngine::manifest_of(metadata, path), source);
  const auto& compiled = object(manifest, "compile", source);
  EngineOptions options;  // open it as it was compiled
  options.engine = "aoti";
  options.device = get<std::string>(compiled, "device", source);
  options.dtype = get<std::string>(compiled, "dtype", source);
  options.channels_last = get<std::string>(compiled, "memory_format", source) == "channels_last";
  if (manifest.contains("source")) {  // the input shape it was exported at (resx.sources)
    options.input_shape = get<std::vector<int64_t>>(object(manifest, "source", source), "input_shape", source);
  }
  AotiEngine engine(path, options);
  if (manifest_json != nullptr) *manifest_json = engine.manifest_json();
  const auto classes = get<int64_t>(object(manifest, "model", source), "num_classes", source);
  return {{"runs", runs(engine, classes, options.input_shape)}};
}

}  // namespace resx
