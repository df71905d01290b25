// Training and evaluation in the C++ runtime: the same loop as resx.train (resnet_py/train.py),
// on the scripted file, with torch::optim::SGD, the C++ data pipeline and its prefetch thread.
#pragma once

#include <torch/optim/sgd.h>
#include <torch/script.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "data.h"
#include "model.h"

namespace resx {

// Everything comes from the config file that resx.recipe.TrainConfig writes (resx-config/1):
// recipe constants and the learning rate of every step are never retyped here.
struct TrainConfig {
  std::string runtime;  // "cpp" (extension) or "cpp-exe" (standalone), recorded in run.json
  std::string model_file, data_dir, run_dir, device;
  std::string model_config_json;  // resx.models.ModelConfig, stored in checkpoints
  int64_t epochs = 0, batch_size = 0, seed = 0, threads = 0, subset = 0, test_subset = 0, eval_every = 1;
  double momentum = 0, weight_decay = 0, label_smoothing = 0;
  bool nesterov = false, drop_last = true, prefetch = true, resume = false;
  AugmentSpec spec{};
  std::vector<double> lrs;                 // one per optimizer step, all epochs
  std::map<std::string, std::string> raw;  // the file as read, echoed into run.json

  static TrainConfig read(const std::string& path);
};

struct Progress {
  std::string phase = "starting";  // starting, train, eval, done, interrupted
  int64_t epoch = 0, epochs = 0, step = 0, steps = 0;
  double loss = 0, images_per_s = 0;
};

struct EvalResult {
  double loss = 0;  // mean cross-entropy
  double top1 = 0;  // percent
  int64_t images = 0;
};

// Checkpoints: a dict that `torch.load(weights_only=True)` and torch::pickle_load both read.
// Keys: format, fingerprint, model_config, epoch, step, wall_time, model{name: tensor},
// momentum{name: tensor}, metrics_csv, steps_csv (the history up to `epoch`, for resume).
inline constexpr const char* kCheckpointFormat = "resx-checkpoint/1";
c10::IValue read_checkpoint(const std::string& path);
// Copy a checkpoint's "model" tensors into the model; refuses another architecture.
void load_weights(Model& model, const std::string& checkpoint_path);

EvalResult evaluate(Model& model, CifarLoader& loader, const at::Device& device);

class Trainer {
 public:
  explicit Trainer(TrainConfig config);

  // Trains to the last epoch (true) or until request_stop() (false, after the current step;
  // the last complete checkpoint stays).
  bool run();
  void request_stop() { stop_.store(true); }
  Progress progress() const;
  const std::vector<double>& losses() const { return losses_; }

 private:
  void set_progress(const Progress& p);
  void save_checkpoint(const std::string& path, int64_t epochs_done, bool with_momentum) const;
  void restore(const c10::IValue& checkpoint);
  void write_outputs(bool complete, const EvalResult& last_eval) const;

  TrainConfig config_;
  at::Device device_;
  Model model_;
  std::vector<std::string> param_names_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::SGD> optimizer_;
  std::unique_ptr<CifarLoader> train_loader_, test_loader_;
  int64_t start_epoch_ = 0, step_ = 0;
  double wall_offset_ = 0;
  std::string metrics_csv_, steps_csv_;
  std::vector<double> losses_;
  std::atomic<bool> stop_{false};
  mutable std::mutex progress_mutex_;
  Progress progress_;
};

// Trainer::run with SIGINT/SIGTERM turned into request_stop() for its duration (the previous
// handlers come back after). The extension and resx-cpp both train this way, on the calling thread:
// a loop on a secondary thread was measured ~15% slower here (glibc gives it another malloc arena).
bool run_interruptible(Trainer& trainer);

// The reference for the runtime's overhead: forward, loss, backward and SGD step on one pre-made
// batch, nothing else (no data pipeline, no bookkeeping). Nanoseconds per step.
std::vector<int64_t> bare_train_steps(Model& model, const at::Tensor& inputs, const at::Tensor& labels, int64_t steps,
                                      double lr, double momentum, double weight_decay);

extern const char* const kMetricsHeader;
extern const char* const kStepsHeader;

}  // namespace resx
