#include "executorch.h"

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <filesystem>
#include <mutex>

// threadpool.h is not in the wheel: the calls resx makes, as libexecutorch_threadpool.so exports them.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace resx::et {
namespace {

namespace ex = ::executorch::extension;
namespace rt = ::executorch::runtime;

std::string why(rt::Error error) { return rt::to_string(error); }

}  // namespace

std::string version() { return RESX_EXECUTORCH_VERSION; }

struct Program::Impl {
  std::unique_ptr<ex::Module> module;
  std::mutex lock;
  int64_t max_batch = 0;  // the batch ExecuTorch planned the input's buffer for
};

Program::Program(const std::string& path) : path_(path), impl_(std::make_unique<Impl>()) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error(path + ": no such file (make one with `resx export resnet18 -o " + path + "`)");
  }
  load();
}

Program::~Program() = default;

void Program::load() {
  auto module = std::make_unique<ex::Module>(path_, ex::Module::LoadMode::File);
  if (const auto e = module->load(); e != rt::Error::Ok) {
    throw Error(path_ + ": not a loadable ExecuTorch program (" + why(e) + ")");
  }
  if (const auto e = module->load_forward(); e == rt::Error::OperatorMissing) {
    throw Error(path_ + ": its forward cannot be loaded (" + why(e) +
                "): an operator XNNPACK did not take has no kernel in ExecuTorch's C++ runtime; py-executorch "
                "runs it, or export a model whose operators XNNPACK takes");
  } else if (e != rt::Error::Ok) {
    throw Error(path_ + ": its forward cannot be loaded (" + why(e) + ")");
  }
  const auto meta = module->method_meta("forward");
  if (meta.ok()) {
    const auto input = meta->input_tensor_meta(0);
    if (input.ok() && !input->sizes().empty()) impl_->max_batch = input->sizes()[0];
  }
  impl_->module = std::move(module);
}

int64_t Program::max_batch() const { return impl_->max_batch; }

std::vector<float> Program::forward(const float* data, int64_t batch, const std::vector<int64_t>& shape) {
  std::vector<::executorch::aten::SizesType> sizes{static_cast<::executorch::aten::SizesType>(batch)};
  for (const auto d : shape) sizes.push_back(static_cast<::executorch::aten::SizesType>(d));
  if (impl_->max_batch > 0 && batch > impl_->max_batch) {
    throw Error(path_ + ": batch " + std::to_string(batch) + " exceeds the " + std::to_string(impl_->max_batch) +
                " ExecuTorch planned the program's buffers for; run batches up to " + std::to_string(impl_->max_batch));
  }
  auto input = ex::from_blob(const_cast<float*>(data), sizes);  // read, never written
  std::lock_guard guard(impl_->lock);
  const auto result = impl_->module->forward(input);
  if (!result.ok()) throw Error(path_ + ": forward failed (" + why(result.error()) + ")");
  const auto& out = result.get().at(0).toTensor();
  const auto* y = out.const_data_ptr<float>();
  return {y, y + out.numel()};
}

Json Program::manifest() const {
  const auto names = impl_->module->method_names();
  if (!names.ok() || names.get().count(kManifestMethod) == 0) {
    throw Error(path_ + ": no resx manifest (an ExecuTorch program resx did not write); export it with resx");
  }
  const auto result = impl_->module->execute(kManifestMethod);
  if (!result.ok()) throw Error(path_ + ": its resx manifest cannot be read (" + why(result.error()) + ")");
  const auto& bytes = result.get().at(0).toTensor();
  const auto* text = bytes.const_data_ptr<uint8_t>();
  Json manifest = parse_json(std::string(text, text + bytes.numel()), path_ + ": its resx manifest");
  if (!manifest.is_object() || manifest.value("format", "") != kFormat) {
    throw Error(path_ + ": its resx manifest is not a " + std::string(kFormat) + " one; re-export the file");
  }
  return manifest;
}

int Program::set_threads(int n) {
  if (n < 1) throw Error("threads: give at least 1");
  auto* pool = ex::threadpool::get_threadpool();
  if (static_cast<int>(pool->get_thread_count()) != n) {
    std::lock_guard guard(impl_->lock);
    impl_->module.reset();  // resetting the pool under a loaded program crashes it
    pool->_unsafe_reset_threadpool(static_cast<uint32_t>(n));
    load();
  }
  return threads();
}

int Program::threads() { return static_cast<int>(ex::threadpool::get_threadpool()->get_thread_count()); }

}  // namespace resx::et
