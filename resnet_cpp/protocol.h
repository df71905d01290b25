// The bench worker protocol in C++, name for name the messages of resx.bench.protocol (which defines it and
// says how it runs; tests compare protocol_schema() with Python's). One JSON object per line each way on
// the worker's own pipes ($RESX_WORKER_FDS): Open, then {"cmd": NAME, ...} requests, each answered by its
// answer's fields or {"error": "..."}. NAME is the request's name in snake case.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "json.h"

namespace resx {

// How an engine runs a model (resx.bench.protocol.EngineOptions; resx::Engine, resx::executorch::Program).
struct EngineOptions {
  std::string engine = "script";  // eager (the C++ frontend, from a weights export), script, frozen, aoti, executorch
  std::string device = "cpu";
  std::string dtype = "fp32";  // fp32, or bf16: autocast (TorchScript) / compiled in (AOTInductor)
  bool channels_last = false;
  int64_t runners = 1;                          // AOTInductor: models that may run at once (concurrent callers)
  bool deterministic = false;                   // set_deterministic for the process (CUDA)
  bool cuda_graphs = false;                     // capture the forward in a CUDA graph per batch size, replay it
  std::vector<int64_t> input_shape{3, 32, 32};  // C, H, W of one input (the bench's inputs)
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(EngineOptions, engine, device, dtype, channels_last, runners, deterministic,
                                   cuda_graphs, input_shape)

}  // namespace resx

namespace resx::protocol {

inline constexpr const char* kWorkerFds = "RESX_WORKER_FDS";

struct Compiled {
  int64_t threads = -1;
  double load_seconds = 0;
  double compile_seconds = 0;
  bool recorded = false;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Compiled, threads, load_seconds, compile_seconds, recorded)

// ---- requests
struct Open {
  std::string runtime;
  std::string file;
  EngineOptions options;
};
struct Identify {
  uint64_t seed = 0;
};
struct Threads {
  int n = 0;
};
struct Warmup {
  int64_t batch = 1;
  uint64_t seed = 0;
  int64_t window = 10;
  double tolerance = 0.05;
  int64_t max_calls = 300;
};
struct Time {
  int64_t batch = 1;
  uint64_t seed = 0;
  int64_t calls = 1;
};
struct ThreadsRun {
  int threads = 1;
  double seconds = 1;
  uint64_t seed = 0;
};
struct Profile {
  int64_t batch = 1;
  uint64_t seed = 0;
  int64_t calls = 1;
};
struct DeviceMemory {};
struct Loadgen {  // passed on whole to run_loadgen, which reads LoadGen's settings by their own names
  Json settings;
  int workers = 1;
  int64_t batch = 1;
  int64_t samples = 1;
  uint64_t seed = 0;
  std::string outdir;
};
struct Count {
  int64_t batch = 1;
  uint64_t seed = 0;
  int64_t calls = 1;
};
struct Input {
  int64_t batch = 1;
  uint64_t seed = 0;
  std::string file;
};
struct Quit {};

// ---- answers
struct Ready {
  double load_s = 0;
};
struct Identity {
  std::string fingerprint, weights_hash, state, input_hash;
  std::vector<float> output;
  std::map<std::string, std::string> env;
  Compiled compiled;
};
struct ThreadsSet {
  int threads = 0;
};
struct Warmed {
  int64_t calls = 0;
};
struct Times {
  std::vector<int64_t> ns;
};
struct ThreadsDone {
  int64_t calls = 0, wall_ns = 0;
};
struct Profiled {
  int64_t calls = 0, wall_ns = 0;
  std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>> ops;
};
struct Held {
  int64_t allocated_bytes = 0, reserved_bytes = 0, peak_allocated_bytes = 0, peak_reserved_bytes = 0;
};
struct Served {
  double seconds = 0;
  std::string sut;
};
struct Received {
  std::string input_hash;
};
struct Counted {
  int64_t calls = 0;
  bool under_valgrind = false;
};

}  // namespace resx::protocol

namespace resx::protocol {
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Open, runtime, file, options)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Identify, seed)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Threads, n)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Warmup, batch, seed, window, tolerance, max_calls)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Time, batch, seed, calls)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ThreadsRun, threads, seconds, seed)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Profile, batch, seed, calls)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Loadgen, settings, workers, batch, samples, seed, outdir)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Count, batch, seed, calls)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Input, batch, seed, file)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Ready, load_s)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Identity, fingerprint, weights_hash, state, input_hash, output, env, compiled)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ThreadsSet, threads)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Warmed, calls)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Times, ns)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ThreadsDone, calls, wall_ns)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Profiled, calls, wall_ns, ops)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Held, allocated_bytes, reserved_bytes, peak_allocated_bytes, peak_reserved_bytes)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Served, seconds, sut)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Counted, calls, under_valgrind)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Received, input_hash)
template <typename J>
void to_json(J& j, const DeviceMemory&) {
  j = J::object();
}
template <typename J>
void from_json(const J&, DeviceMemory&) {}

// Every message and its fields, in order: what resx.bench.protocol.schema() lists of the Python side.
Json schema();

}  // namespace resx::protocol
