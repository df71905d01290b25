#include "executorch_worker.h"

#include <openssl/evp.h>

#include <chrono>
#include <cstring>
#include <functional>

#include "callgrind.h"
#include "loadgen_run.h"
#include "machine.h"
#include "timing.h"
#include "worker_loop.h"

namespace resx::et {
namespace {

// SHA-1 of bytes as hex: what resx.export.tensor_sha1 gives for a tensor holding them.
std::string sha1_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha1(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL's SHA-1 failed");
  }
  static const char* hex = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < size; ++i) text += {hex[digest[i] >> 4], hex[digest[i] & 15]};
  return text;
}

int64_t per_sample(const EngineOptions& o) {
  int64_t n = 1;
  for (const auto d : o.input_shape) n *= d;
  return n;
}

// One forward call on an input the bench sent.
struct Forward {
  Program& program;
  const std::vector<float>& x;
  int64_t batch;
  const std::vector<int64_t>& shape;
  void operator()() { program.forward(x.data(), batch, shape); }
};

Forward forward_of(Worker& w, int64_t batch, uint64_t seed) {
  return {w.program(), w.input(batch, seed), batch, w.options().input_shape};
}

const Answers<Worker>& answers() {
  namespace p = protocol;
  using A = Answers<Worker>;
  static const A table{
      A::on<p::Input>("input", [](Worker& w, const p::Input& r) { return Json(p::Received{w.take_input(r)}); }),
      A::on<p::Identify>("identify",
                         [](Worker& w, const p::Identify& r) {
                           const auto manifest = w.program().manifest();
                           const auto& x = w.input(1, r.seed);
                           auto y = w.program().forward(x.data(), 1, w.options().input_shape);
                           const std::string bytes(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float));
                           const p::Compiled compiled{0, w.load_seconds(), 0.0, true};  // threads: sized at run time
                           return Json(p::Identity{manifest.value("fingerprint", ""),
                                                   manifest.value("weights_hash", ""),
                                                   manifest.value("state_fingerprint", ""), sha1_hex(bytes),
                                                   std::move(y), env_report(), compiled});
                         }),
      A::on<p::Threads>(
          "threads", [](Worker& w, const p::Threads& r) { return Json(p::ThreadsSet{w.program().set_threads(r.n)}); }),
      A::on<p::Warmup>("warmup",
                       [](Worker& w, const p::Warmup& r) {
                         const WarmupRule rule{r.window, r.tolerance, r.max_calls};
                         return Json(p::Warmed{warm_up(forward_of(w, r.batch, r.seed), rule)});
                       }),
      A::on<p::Time>("time",
                     [](Worker& w, const p::Time& r) {
                       return Json(p::Times{time_calls(forward_of(w, r.batch, r.seed), r.calls)});
                     }),
      A::on<p::ThreadsRun>(
          "threads_run",
          [](Worker& w, const p::ThreadsRun& r) {
            const auto& x = w.input(1, r.seed);
            const auto done = time_callers(
                [&] { return [&w, mine = x] { w.program().forward(mine.data(), 1, w.options().input_shape); }; },
                r.threads, r.seconds);
            return Json(p::ThreadsDone{done.calls, done.wall_ns});
          }),
      A::on<p::Profile>("profile",
                        [](Worker&, const p::Profile&) -> Json {
                          throw Error("ExecuTorch's kernels are not ATen's: no operators to record");
                        }),
      A::on<p::DeviceMemory>("device_memory", [](Worker&, const p::DeviceMemory&) { return Json(p::Held{}); }),
      {"loadgen",
       [](Worker& w, const Json& request) {
         const auto& all = w.input(get<int64_t>(request, "samples", "loadgen request"),
                                   get<uint64_t>(request, "seed", "loadgen request"));
         const auto per = per_sample(w.options());
         return run_loadgen(request, "resx-executorch", [&]() -> SampleCall {
           return [&, x = std::vector<float>()](const std::vector<size_t>& indices) mutable {
             // One call's input: the samples gathered into one batch.
             x.resize(indices.size() * per);
             for (size_t i = 0; i < indices.size(); ++i) {
               std::memcpy(x.data() + i * per, all.data() + indices[i] * per, per * sizeof(float));
             }
             w.program().forward(x.data(), static_cast<int64_t>(indices.size()), w.options().input_shape);
           };
         });
       }},
      A::on<p::Count>("count",
                      [](Worker& w, const p::Count& r) {
                        count_calls(forward_of(w, r.batch, r.seed), r.calls);
                        return Json(p::Counted{r.calls, under_valgrind()});
                      }),
  };
  return table;
}

}  // namespace

std::map<std::string, std::string> env_report() {
  return {{"executorch_version", version()},
          {"intra_op_threads", std::to_string(Program::threads())},
          {"cpu_model", cpu_model()},
          {"cpu_cores", cpu_cores()},
          {"load_average", load_average()}};
}

Worker::Worker(const protocol::Open& open) : options_(open.options) {
  const auto& o = options_;
  if (o.engine != "executorch") throw Error("this worker runs ExecuTorch programs, not the " + o.engine + " engine");
  if (o.device != "cpu" || o.dtype != "fp32" || o.channels_last || o.cuda_graphs) {
    throw Error("the executorch engine runs its program as exported: cpu, fp32, contiguous inputs");
  }
  const auto began = std::chrono::steady_clock::now();
  program_ = std::make_unique<Program>(open.file);
  program_->manifest();  // refused here, as in Python, when it carries none
  load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
}

std::string Worker::take_input(const protocol::Input& given) {
  const auto bytes = read_file(given.file, "input");
  const auto expected = given.batch * per_sample(options_) * static_cast<int64_t>(sizeof(float));
  if (given.batch < 1 || static_cast<int64_t>(bytes.size()) != expected) {
    throw Error(given.file + ": " + std::to_string(bytes.size()) + " bytes, not the " + std::to_string(expected) +
                " of a float32 batch of " + std::to_string(given.batch));
  }
  std::vector<float> x(bytes.size() / sizeof(float));
  std::memcpy(x.data(), bytes.data(), bytes.size());
  const auto key = std::make_pair(given.batch, given.seed);
  inputs_[key] = std::move(x);
  return sha1_hex(bytes);
}

const std::vector<float>& Worker::input(int64_t batch, uint64_t seed) const {
  const auto it = inputs_.find({batch, seed});
  if (it == inputs_.end()) {
    throw Error("no input of batch " + std::to_string(batch) + " and seed " + std::to_string(seed) +
                " was given (the bench sends each with an 'input' request first)");
  }
  return it->second;
}

Json Worker::handle(const Json& request) { return answers().answer(*this, request); }

}  // namespace resx::et
