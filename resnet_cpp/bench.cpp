#include "bench.h"

#include "model.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <thread>

#ifdef RESX_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <ATen/Parallel.h>

#include "callgrind.h"
#include "env.h"
#include "serving.h"
#include "timing.h"
#include "worker_loop.h"

namespace resx {
namespace {

// The operators seen on the profiling thread, and those open now (the innermost last).
struct OpRecord {
  Json ops = Json::array();
  std::vector<size_t> open;
};
thread_local OpRecord* recording = nullptr;

struct OpIndex : at::ObserverContext {
  explicit OpIndex(size_t i) : index(i) {}
  size_t index;
};

std::unique_ptr<at::ObserverContext> op_started(const at::RecordFunction& fn) {
  if (recording == nullptr) return nullptr;  // another thread (an intra-op worker)
  auto& r = *recording;
  const int64_t parent = r.open.empty() ? -1 : static_cast<int64_t>(r.open.back());
  r.ops.push_back(Json::array({fn.name(), now_ns(), int64_t{0}, parent}));
  r.open.push_back(r.ops.size() - 1);
  return std::make_unique<OpIndex>(r.ops.size() - 1);
}

void op_ended(const at::RecordFunction&, at::ObserverContext* context) {
  if (recording == nullptr || context == nullptr) return;
  const auto index = static_cast<OpIndex*>(context)->index;
  recording->ops[index][2] = now_ns();
  while (!recording->open.empty()) {
    const auto top = recording->open.back();
    recording->open.pop_back();
    if (top == index) break;
  }
}

}  // namespace

at::Tensor make_input(int64_t batch, uint64_t seed, const at::Device& device, const std::vector<int64_t>& shape) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<int64_t> sizes{batch};
  sizes.insert(sizes.end(), shape.begin(), shape.end());
  return at::randn(sizes, gen, at::kFloat).to(device);
}

namespace {

// One forward call, the device synchronised: what every loop times.
struct Forward {
  Engine& engine;
  const at::Tensor& input;
  void operator()() {
    auto out = engine.forward(input);
    sync_device(engine.device());
  }
};

// A caller of its own thread: inference mode for the thread's life (it is thread-local), its own input.
struct Caller {
  Caller(Engine& engine, const at::Tensor& input) : x(input.clone()), forward{engine, x} {}
  c10::InferenceMode guard;
  at::Tensor x;
  Forward forward;
  void operator()() { forward(); }
};

}  // namespace

int64_t warm_up(Engine& engine, const at::Tensor& input, const WarmupRule& rule) {
  c10::InferenceMode guard;
  return warm_up(Forward{engine, input}, rule);
}

std::vector<int64_t> time_forward(Engine& engine, const at::Tensor& input, int64_t calls) {
  c10::InferenceMode guard;
  return time_calls(Forward{engine, input}, calls);
}

ThreadsResult time_threads(Engine& engine, const at::Tensor& input, int threads, double seconds) {
  return time_callers([&] { return Caller(engine, input); }, threads, seconds);
}

Json profile_forward(Engine& engine, const at::Tensor& input, int64_t calls) {
  c10::InferenceMode guard;
  OpRecord record;
  // Recording on this thread while alive, however the calls end.
  struct Recording {
    explicit Recording(OpRecord& r)
        : handle(at::addThreadLocalCallback(
              at::RecordFunctionCallback(op_started, op_ended).scopes({at::RecordScope::FUNCTION}))) {
      recording = &r;
    }
    ~Recording() {
      at::removeCallback(handle);
      recording = nullptr;
    }
    at::CallbackHandle handle;
  };
  int64_t wall = 0;
  {
    Recording on(record);
    const auto t0 = now_ns();
    for (int64_t i = 0; i < calls; ++i) {
      auto out = engine.forward(input);
      sync_device(engine.device());
    }
    wall = now_ns() - t0;
  }
  return {{"calls", calls}, {"wall_ns", wall}, {"ops", std::move(record.ops)}};
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

void count_forward(Engine& engine, const at::Tensor& input, int64_t calls) {
  c10::InferenceMode guard;
  count_calls(Forward{engine, input}, calls);
}

namespace {

at::Tensor input_of(Worker& w, int64_t batch, uint64_t seed) {
  return make_input(batch, seed, w.engine().device(), w.engine().options().input_shape);
}

const Answers<Worker>& answers() {
  namespace p = protocol;
  using A = Answers<Worker>;
  static const A table{
      A::on<p::Identify>("identify",
                         [](Worker& w, const p::Identify& r) {
                           auto& e = w.engine();
                           at::Tensor y;
                           {
                             c10::InferenceMode guard;
                             y = e.forward(input_of(w, 1, r.seed)).to(at::kCPU).contiguous();
                           }
                           const p::Compiled compiled{e.compiled_threads(), e.load_seconds(), 0.0, e.recorded()};
                           return Json(
                               p::Identity{e.fingerprint(), e.weights_hash(), e.state_fingerprint(),
                                           tensor_sha1(make_input(1, r.seed, at::kCPU, e.options().input_shape)),
                                           std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel()),
                                           env_report(), compiled});
                         }),
      A::on<p::Threads>("threads",
                        [](Worker&, const p::Threads& r) {
                          set_num_threads(r.n, 0);
                          return Json(p::ThreadsSet{at::get_num_threads()});
                        }),
      A::on<p::Warmup>("warmup",
                       [](Worker& w, const p::Warmup& r) {
                         const WarmupRule rule{r.window, r.tolerance, r.max_calls};
                         return Json(p::Warmed{warm_up(w.engine(), input_of(w, r.batch, r.seed), rule)});
                       }),
      A::on<p::Time>("time",
                     [](Worker& w, const p::Time& r) {
                       return Json(p::Times{time_forward(w.engine(), input_of(w, r.batch, r.seed), r.calls)});
                     }),
      A::on<p::ThreadsRun>("threads_run",
                           [](Worker& w, const p::ThreadsRun& r) {
                             const auto done = time_threads(w.engine(), input_of(w, 1, r.seed), r.threads, r.seconds);
                             return Json(p::ThreadsDone{done.calls, done.wall_ns});
                           }),
      A::on<p::Profile>("profile",
                        [](Worker& w, const p::Profile& r) {
                          return profile_forward(w.engine(), input_of(w, r.batch, r.seed), r.calls);
                        }),
      A::on<p::DeviceMemory>("device_memory",
                             [](Worker& w, const p::DeviceMemory&) {
                               const auto held = device_memory(w.engine().device());
                               return held.empty() ? Json(p::Held{}) : held;
                             }),
      {"loadgen", [](Worker& w, const Json& request) { return run_loadgen(w.engine(), request); }},
      A::on<p::Count>("count",
                      [](Worker& w, const p::Count& r) {
                        count_forward(w.engine(), input_of(w, r.batch, r.seed), r.calls);
                        return Json(p::Counted{r.calls, under_valgrind()});
                      }),
  };
  return table;
}

// A default instance's keys, in the order the macros list the fields.
template <typename Message>
Json fields_of() {
  const Json message = Message{};  // kept alive: items() refers to it
  Json names = Json::array();
  for (const auto& item : message.items()) names.push_back(item.key());
  return names;
}

}  // namespace

Worker::Worker(const protocol::Open& open) {
  const auto began = std::chrono::steady_clock::now();
  engine_ = Engine::open(open.file, open.options);
  load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
}

Json Worker::handle(const Json& request) { return answers().answer(*this, request); }

namespace protocol {

Json schema() {
  return {{"EngineOptions", fields_of<EngineOptions>()},
          {"Compiled", fields_of<Compiled>()},
          {"Open", fields_of<Open>()},
          {"Identify", fields_of<Identify>()},
          {"Threads", fields_of<Threads>()},
          {"Warmup", fields_of<Warmup>()},
          {"Time", fields_of<Time>()},
          {"ThreadsRun", fields_of<ThreadsRun>()},
          {"Profile", fields_of<Profile>()},
          {"DeviceMemory", Json::array()},
          {"Loadgen", fields_of<Loadgen>()},
          {"Count", fields_of<Count>()},
          {"Input", fields_of<Input>()},
          {"Quit", Json::array()},
          {"Ready", fields_of<Ready>()},
          {"Identity", fields_of<Identity>()},
          {"ThreadsSet", fields_of<ThreadsSet>()},
          {"Warmed", fields_of<Warmed>()},
          {"Times", fields_of<Times>()},
          {"ThreadsDone", fields_of<ThreadsDone>()},
          {"Profiled", fields_of<Profiled>()},
          {"Held", fields_of<Held>()},
          {"Served", fields_of<Served>()},
          {"Counted", fields_of<Counted>()},
          {"Received", fields_of<Received>()}};
}

}  // namespace protocol

}  // namespace resx
