#include "serving.h"

#include "bench.h"
#include "model.h"

namespace resx {

Json run_loadgen(Engine& engine, const Json& request) {
  const auto samples =
      make_input(get<int64_t>(request, "samples", "loadgen request"), get<uint64_t>(request, "seed", "loadgen request"),
                 engine.device(), engine.options().input_shape);
  return run_loadgen(request, "resx-cpp", [&]() -> SampleCall {
    // Inference mode for the worker thread's life (it is thread-local), set on that thread.
    auto guard = std::make_shared<c10::InferenceMode>();
    return [&, guard](const std::vector<size_t>& indices) {
      // One call's input: a batch-1 view of one sample, or the samples gathered into one batch.
      at::Tensor x;
      if (indices.size() == 1) {
        x = samples.narrow(0, static_cast<int64_t>(indices[0]), 1);
      } else {
        std::vector<int64_t> index(indices.begin(), indices.end());
        x = samples.index_select(0, at::tensor(index, at::kLong).to(samples.device()));
      }
      engine.forward(x);
      sync_device(engine.device());
    };
  });
}

}  // namespace resx
