// The measuring loops every C++ runtime shares (LibTorch's engines in bench.cpp, ExecuTorch's in
// executorch_worker.cpp), over any call: no torch here. Raw per-call nanoseconds go back to Python
// (resx.stats computes every statistic, for every runtime, in one place); resx.bench.workers.python has
// the same loops for the runtimes that live in Python.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace resx {

// When to stop warming up: the median of the last `window` calls is within `tolerance` of the
// median of the window before (TorchScript's profiling executor re-optimises during its first
// calls), or `max_calls` were made. Mirrors resx.bench.WarmupRule.
struct WarmupRule {
  int64_t window;
  double tolerance;
  int64_t max_calls;
};

inline int64_t now_ns() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Seconds from `start` to now, on the steady clock.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double median(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? static_cast<double>(v[n / 2]) : 0.5 * static_cast<double>(v[n / 2 - 1] + v[n / 2]);
}

template <typename Call>
int64_t time_one(Call& call) {
  const auto t0 = now_ns();
  call();
  return now_ns() - t0;
}

// Calls until the rule says the times are stable; the number of calls made.
template <typename Call>
int64_t warm_up(Call&& call, const WarmupRule& rule) {
  std::vector<int64_t> times;
  while (static_cast<int64_t>(times.size()) < rule.max_calls) {
    times.push_back(time_one(call));
    const auto n = static_cast<int64_t>(times.size());
    if (n >= 2 * rule.window) {
      const double last = median({times.end() - rule.window, times.end()});
      const double before = median({times.end() - 2 * rule.window, times.end() - rule.window});
      if (std::abs(last - before) <= rule.tolerance * before) break;
    }
  }
  return static_cast<int64_t>(times.size());
}

// Nanoseconds of each of `calls` calls.
template <typename Call>
std::vector<int64_t> time_calls(Call&& call, int64_t calls) {
  std::vector<int64_t> times(calls);
  for (auto& t : times) t = time_one(call);
  return times;
}

struct ThreadsResult {
  int64_t calls = 0;
  int64_t wall_ns = 0;
};

// `threads` std::threads, each running the caller make_caller() returns (on that thread: thread-local
// state such as c10::InferenceMode belongs in it) until `seconds` pass; started together.
template <typename MakeCaller>
ThreadsResult time_callers(MakeCaller&& make_caller, int threads, double seconds) {
  std::atomic<int64_t> calls{0};
  std::atomic<bool> go{false};
  const auto duration = std::chrono::duration<double>(seconds);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      auto call = make_caller();
      while (!go.load()) std::this_thread::yield();
      const auto end = std::chrono::steady_clock::now() + duration;
      int64_t mine = 0;
      while (std::chrono::steady_clock::now() < end) {
        call();
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

}  // namespace resx
