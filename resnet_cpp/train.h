// Training and evaluation in the C++ runtime. resx::Trainer and resx.train.Trainer (resnet_py/resx/train/)
// are one design in two languages, method for method: restore, step, evaluate, save_checkpoint,
// write_outputs, run. It trains the C++ frontend module (resx::ResNet) or the scripted file with
// torch::optim::SGD and the C++ data pipeline.
#pragma once

#include <torch/optim/sgd.h>
#include <torch/script.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "data.h"
#include "distributed.h"
#include "json.h"
#include "model.h"
#include "rundir.h"

namespace resx {

// Everything comes from the config.json that resx.recipe.TrainConfig.cpp_config writes
// (resx-config/2): recipe constants, the learning rate of every step and the run directory's files are
// never retyped here. The recipe's fields have the names of resx.recipe.TrainConfig's.
struct TrainConfig {
  int64_t epochs = 0, batch_size = 0, seed = 0, threads = 0, subset = 0, test_subset = 0, eval_every = 1;
  double momentum = 0, weight_decay = 0, label_smoothing = 0;
  bool nesterov = false, drop_last = true, channels_last = false, deterministic = false;
  std::string device, dtype = "fp32";  // bf16: autocast around forward and loss
  int64_t world_size = 1;              // processes of a data-parallel run; batch_size is per process
  AugmentSpec augment{};
  // What the run adds to the recipe.
  std::string runtime;  // "cpp" (extension) or "cpp-exe" (standalone), recorded in run.json
  // eager: the C++ frontend module (resx::Frontend) from the weights export model_file, no TorchScript;
  // scripted: the TorchScript file model_file (resx::Model).
  std::string module = "eager";
  std::string model_file, data_dir, run_dir;
  std::string config_digest;         // what a checkpoint of this run carries (TrainConfig.digest)
  std::string model_config;          // what checkpoints record of the model (TrainConfig.checkpoint_model)
  std::vector<int64_t> model_seeds;  // the default generator's seed at each epoch's start (dropout)
  Json saved;                        // train_config.json, echoed into run.json
  int64_t steps_per_epoch = 0;
  bool prefetch = true;
  BucketSizes buckets;                    // DistributedDataParallel's
  std::vector<std::string> rank_columns;  // run.json's per-rank keys (resx.distributed.RANK_COLUMNS)
  RunFiles files;
  std::vector<double> lrs;  // one per optimizer step, all epochs

  static TrainConfig read(const std::string& path);
};

// Mirrors resx.train.Progress.
struct Progress {
  std::string phase = "starting";  // starting, train, eval, done, stopped
  int64_t epoch = 0, epochs = 0;   // epochs done
  int64_t step = 0, steps = 0;     // steps done in the current epoch
  double loss = 0;                 // of the last step
  double images_per_s = 0;         // in the current epoch so far
};

// {"phase": ..., "epoch": ..., ...}: the progress line of resx-cpp train (stderr), by field name.
Json progress_json(const Progress& p);

struct EvalResult {
  double loss = 0;   // mean cross-entropy
  double top_1 = 0;  // percent
  int64_t images = 0;
};

// Copy a checkpoint's "model" tensors into the model, after checking architecture, names, shapes, dtypes.
void load_weights(Network& model, const std::string& checkpoint_path, const std::string& checkpoint_format);

// In the run's dtype and memory format; mirrors resx.train.evaluate.
EvalResult evaluate(Network& model, CifarLoader& loader, const at::Device& device, const std::string& dtype = "fp32",
                    bool channels_last = false);
// {summed loss, correct, images} over the loader; mirrors resx.train.evaluate_sums.
std::vector<double> evaluate_sums(Network& model, CifarLoader& loader, const at::Device& device,
                                  const std::string& dtype = "fp32", bool channels_last = false);
EvalResult eval_result(const std::vector<double>& sums);  // resx.train.EvalResult.of

// run.json's "world"; mirrors resx.train.world_report. rows: per rank, one value per column of columns
// (resx.distributed.RANK_COLUMNS).
Json world_json(const World& world, const DataParallelReport* ddp = nullptr,
                const std::vector<std::string>& columns = {}, const std::vector<std::vector<double>>& rows = {});

class Trainer {
 public:
  // lock_fd: the run directory's lock held by the process that prepared the run, or -1 to take it.
  // world: this process's place in a data-parallel run (the process group comes from Python).
  explicit Trainer(TrainConfig config, int lock_fd = -1, World world = {});

  void restore(const c10::impl::GenericDict& checkpoint);
  // One optimizer step; nullopt at the epoch's end. Under a bench's count ($RESX_COUNT_STEPS), the counted
  // steps run with callgrind on, whole.
  std::optional<StepRecord> step(int64_t epoch);
  EvalResult evaluate();
  void save_checkpoint(const std::string& name, bool with_momentum) const;
  void write_outputs(const std::string& status);  // a collective in a data-parallel run
  // Trains to the last epoch (true) or until request_stop() (false, after the current step; the last
  // complete epoch's checkpoint stays).
  bool run();

  void request_stop(int signal) {
    int none = 0;
    stop_signal_.compare_exchange_strong(none, signal);
  }
  int stop_signal() const { return stop_signal_.load(); }
  // Whether the run stops before the next step: asked here, or on any rank (then every rank agrees).
  bool stopping();
  // run.json's "world", with every rank's times (a collective: every rank calls it).
  Json world_report();
  Progress progress() const;
  const std::vector<StepRecord>& steps() const { return steps_; }

 private:
  void report(const Progress& p);
  std::optional<StepRecord> take_step(int64_t epoch);

  TrainConfig config_;
  World world_;
  RunDir run_dir_;
  at::Device device_;
  std::unique_ptr<Network> model_;
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::unique_ptr<torch::optim::SGD> optimizer_;
  std::unique_ptr<CifarLoader> train_loader_, test_loader_;
  std::unique_ptr<DataParallel> ddp_;
  std::array<double, 5> taken_{};  // steps this process took, their data/forward/backward/optimizer seconds
  int64_t epochs_done_ = 0, steps_done_ = 0;
  double wall_time_ = 0;
  std::vector<StepRecord> steps_;
  std::vector<EpochRecord> epochs_;
  std::atomic<int> stop_signal_{0};
  mutable std::mutex progress_mutex_;
  Progress progress_;
  std::optional<std::pair<int64_t, int64_t>> counted_;  // steps before counting, steps counted
};

// Trainer::run with SIGINT/SIGTERM turned into request_stop() for its duration (the previous handlers
// come back after). The extension and resx-cpp both train this way, on the calling thread: a loop on a
// secondary thread was measured ~15% slower here (glibc gives it another malloc arena).
bool run_interruptible(Trainer& trainer);

// The reference for the runtime's overhead: forward, loss, backward and SGD step on one pre-made batch,
// nothing else (no data pipeline, no bookkeeping). Nanoseconds per step.
std::vector<int64_t> bare_train_steps(Network& model, const at::Tensor& inputs, const at::Tensor& labels, int64_t steps,
                                      double lr, double momentum, double weight_decay);

}  // namespace resx
