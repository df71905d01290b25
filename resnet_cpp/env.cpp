#include "env.h"

#include "files.h"
#include "machine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <dlfcn.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace resx {
namespace {

// Device name through the CUDA driver API, so that the runtime needs no CUDA headers to build.
std::string cuda_device_name() {
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) return "";
  using InitFn = int (*)(unsigned);
  using GetFn = int (*)(int*, int);
  using NameFn = int (*)(char*, int, int);
  auto init = reinterpret_cast<InitFn>(dlsym(lib, "cuInit"));
  auto get = reinterpret_cast<GetFn>(dlsym(lib, "cuDeviceGet"));
  auto name = reinterpret_cast<NameFn>(dlsym(lib, "cuDeviceGetName"));
  char buf[256] = {0};
  int device = 0;
  if (init == nullptr || get == nullptr || name == nullptr || init(0) != 0 || get(&device, 0) != 0 ||
      name(buf, sizeof buf, device) != 0) {
    return "";
  }
  return buf;
}

const char* yes_no(bool value) { return value ? "yes" : "no"; }

}  // namespace

EnvReport env_report() {
  const bool cuda = torch::cuda::is_available();
  const auto& ctx = at::globalContext();
  const auto& hooks = at::detail::getCUDAHooks();
  return {
      {"torch_version", TORCH_VERSION},
      {"build_config", at::show_config()},
      {"intra_op_threads", std::to_string(at::get_num_threads())},
      {"inter_op_threads", std::to_string(at::get_num_interop_threads())},
      {"mkldnn", yes_no(at::hasMKLDNN())},
      {"openmp", yes_no(AT_PARALLEL_OPENMP == 1)},
      {"cuda_available", yes_no(cuda)},
      {"cuda_device_count", std::to_string(cuda ? torch::cuda::device_count() : 0)},
      {"cuda_device", cuda ? cuda_device_name() : ""},
      {"cudnn_version", cuda && hooks.hasCuDNN() ? std::to_string(hooks.versionRuntimeCuDNN()) : ""},
      {"cudnn_benchmark", yes_no(ctx.benchmarkCuDNN())},
      {"cudnn_deterministic", yes_no(ctx.deterministicCuDNN())},
      {"deterministic_algorithms", yes_no(ctx.deterministicAlgorithms())},
      {"tf32_matmul", yes_no(ctx.allowTF32CuBLAS())},
      {"tf32_cudnn", yes_no(ctx.allowTF32CuDNN())},
      {"cpu_model", cpu_model()},
      {"cpu_cores", cpu_cores()},
      {"load_average", load_average()},
  };
}

void set_deterministic(bool on) {
  if (on) ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);  // before CUDA's first matmul; kept if set
  auto& ctx = at::globalContext();
  ctx.setDeterministicAlgorithms(on, false);
  ctx.setDeterministicCuDNN(on);
  if (on) ctx.setBenchmarkCuDNN(false);
}

void set_num_threads(int intra_op, int inter_op) {
  if (intra_op > 0) at::set_num_threads(intra_op);
  // Inter-op threads can be set once per process, before any inter-op work; LibTorch throws after.
  if (inter_op > 0 && static_cast<size_t>(inter_op) != at::get_num_interop_threads()) {
    at::set_num_interop_threads(inter_op);
  }
}

}  // namespace resx
