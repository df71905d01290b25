#include "bench.h"

#include "model.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#ifdef RESX_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace resx {
namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

double median(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? static_cast<double>(v[n / 2]) : 0.5 * static_cast<double>(v[n / 2 - 1] + v[n / 2]);
}

int64_t one_call(Engine& engine, const at::Tensor& input) {
  const auto t0 = now_ns();
  auto out = engine.forward(input);
  sync_device(engine.device());
  return now_ns() - t0;
}

}  // namespace

at::Tensor make_input(int64_t batch, uint64_t seed, const at::Device& device, const std::vector<int64_t>& shape) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<int64_t> sizes{batch};
  sizes.insert(sizes.end(), shape.begin(), shape.end());
  return at::randn(sizes, gen, at::kFloat).to(device);
}

int64_t warm_up(Engine& engine, const at::Tensor& input, const WarmupRule& rule) {
  c10::InferenceMode guard;
  std::vector<int64_t> times;
  while (static_cast<int64_t>(times.size()) < rule.max_calls) {
    times.push_back(one_call(engine, input));
    const auto n = static_cast<int64_t>(times.size());
    if (n >= 2 * rule.window) {
      const double last = median({times.end() - rule.window, times.end()});
      const double before = median({times.end() - 2 * rule.window, times.end() - rule.window});
      if (std::abs(last - before) <= rule.tolerance * before) break;
    }
  }
  return static_cast<int64_t>(times.size());
}

std::vector<int64_t> time_forward(Engine& engine, const at::Tensor& input, int64_t calls) {
  c10::InferenceMode guard;
  std::vector<int64_t> times(calls);
  for (auto& t : times) t = one_call(engine, input);
  return times;
}

ThreadsResult time_threads(Engine& engine, const at::Tensor& input, int threads, double seconds) {
  std::atomic<int64_t> calls{0};
  std::atomic<bool> go{false};
  const auto duration = std::chrono::duration<double>(seconds);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, x = input.clone()] {
      c10::InferenceMode guard;  // thread-local: each worker sets its own
      while (!go.load()) std::this_thread::yield();
      const auto end = Clock::now() + duration;
      int64_t mine = 0;
      while (Clock::now() < end) {
        engine.forward(x);
        sync_device(engine.device());
        ++mine;
      }
      calls += mine;
    });
  }
  const auto t0 = now_ns();
  go.store(true);
  for (auto& t : pool) t.join();
  return {calls.load(), now_ns() - t0};
}

Json device_memory(const at::Device& device) {
  if (!device.is_cuda()) return Json::object();
#ifdef RESX_WITH_CUDA
  const auto index = device.has_index() ? device.index() : c10::DeviceIndex{0};
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return {{"allocated_bytes", stats.allocated_bytes[all].current},
          {"reserved_bytes", stats.reserved_bytes[all].current},
          {"peak_allocated_bytes", stats.allocated_bytes[all].peak},
          {"peak_reserved_bytes", stats.reserved_bytes[all].peak}};
#else
  throw Error("this resx-cpp was built without CUDA's runtime headers: no allocator figures");
#endif
}

Json compiled_json(const Engine& engine) {
  return {{"threads", engine.compiled_threads()},
          {"load_seconds", engine.load_seconds()},
          {"compile_seconds", 0.0},
          {"recorded", engine.recorded()}};
}

}  // namespace resx
