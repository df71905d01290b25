// Inference timing in the C++ runtime, on any engine. Raw per-call nanoseconds go back to Python
// (resx.stats computes every statistic, for every runtime, in one place).
#pragma once

#include <cstdint>
#include <vector>

#include "callgrind.h"
#include "engines.h"
#include "json.h"
#include "protocol.h"
#include "timing.h"

namespace resx {

// The benchmark input of a batch size: randn from a CPU generator seeded with `seed`, the same
// ATen call as resx.bench.runners.make_input, so every runtime sees the same numbers. shape: C, H, W.
at::Tensor make_input(int64_t batch, uint64_t seed, const at::Device& device,
                      const std::vector<int64_t>& shape = {3, 32, 32});

// c10::InferenceMode, device synchronised around every call.
int64_t warm_up(Engine& engine, const at::Tensor& input, const WarmupRule& rule);
std::vector<int64_t> time_forward(Engine& engine, const at::Tensor& input, int64_t calls);

// `threads` std::threads, each calling forward on its own copy of `input` until `seconds` pass.
ThreadsResult time_threads(Engine& engine, const at::Tensor& input, int threads, double seconds);

// Every operator that `calls` forward calls dispatch on this thread, seen through a RecordFunction
// callback (the hook torch.profiler's events come from), c10::InferenceMode as timed:
// {calls, wall_ns, ops: [[name, start_ns, end_ns, parent], ...]}, parent the index of the operator it
// ran inside (-1: none). resx.bench.language.OpProfile reads it, and the same list made from
// torch.profiler's events for the runtimes that live in Python.
Json profile_forward(Engine& engine, const at::Tensor& input, int64_t calls);

// The CUDA caching allocator's figures for the device since the process started: {allocated_bytes,
// reserved_bytes, peak_allocated_bytes, peak_reserved_bytes}; {} off CUDA. Mirrors
// resx.bench.runners.python.PyRunner.device_memory (torch.cuda.memory_stats).
Json device_memory(const at::Device& device);

// `calls` forward calls with callgrind's instrumentation and collection switched on around them alone
// (valgrind's client requests; a no-op outside valgrind). c10::InferenceMode, device synchronised.
void count_forward(Engine& engine, const at::Tensor& input, int64_t calls);

// A bench worker: the engine a protocol::Open names, answering the protocol's requests (resx.bench.protocol)
// for `resx-cpp worker` and, through the extension, for the cpp runtimes' Python worker.
class Worker {
 public:
  explicit Worker(const protocol::Open& open);
  // One request {"cmd": NAME, ...} -> its answer; a resx::Error or a malformed request throws.
  Json handle(const Json& request);
  Engine& engine() { return *engine_; }
  double load_seconds() const { return load_seconds_; }

 private:
  std::unique_ptr<Engine> engine_;
  double load_seconds_ = 0;
};

}  // namespace resx
