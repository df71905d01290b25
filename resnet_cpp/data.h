// CIFAR-10 in the C++ runtime: reader, epoch randomness, augmentation, and a prefetching loader.
// Mirrors resx.data (resnet_py/resx/data.py) name for name; tests prove the batches bit-identical.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

namespace resx {

inline constexpr int64_t kRecordBytes = 1 + 3 * 32 * 32;

// Never defaulted here: the values come from Python (resx.data.AUGMENT) or from a manifest/config.
struct AugmentSpec {
  int64_t crop;
  int64_t padding;
  double flip_p;
  std::array<double, 3> mean;
  std::array<double, 3> std;
};

// uint8 images [N,3,32,32] and int64 labels [N] of one binary batch file.
std::pair<at::Tensor, at::Tensor> read_binary(const std::string& path);
// All files of a split ("train" or "test") from DIR or DIR/cifar-10-batches-bin.
std::pair<at::Tensor, at::Tensor> load_split(const std::string& data_dir, const std::string& split);

// The first n samples of a split (all when n <= 0 or n >= its size): --subset / --test-subset.
std::pair<at::Tensor, at::Tensor> first_n(std::pair<at::Tensor, at::Tensor> split, int64_t n);

uint64_t epoch_seed(uint64_t seed, uint64_t epoch);

struct EpochPlan {
  at::Tensor order;    // int64 [n]
  at::Tensor offsets;  // int64 [n, 2]: (dy, dx) into the padded image
  at::Tensor flips;    // bool [n]
  static EpochPlan draw(uint64_t seed, uint64_t epoch, int64_t n, const AugmentSpec& spec);
  // A rank's share (DistributedSampler's rule, padding); mirrors resx.data.EpochPlan.shard.
  EpochPlan shard(int64_t rank, int64_t world) const;
};

// uint8 -> float32 (x / 255 - mean) / std as a [3, 256] table, built with the same ATen ops as
// resx.data.normalize so every value is bit-identical.
at::Tensor normalization_table(const AugmentSpec& spec);

struct Batch {
  at::Tensor images;  // uint8, augmented
  at::Tensor inputs;  // float32, normalised
  at::Tensor labels;  // int64
};

// One tight pass: gather the samples `index` of `images`, pad, crop, flip, and normalise.
// offsets/flips undefined: no augmentation (test time).
// pinned: the float inputs and the labels in page-locked memory, for non-blocking copies to a GPU.
Batch make_batch(const at::Tensor& images, const at::Tensor& labels, const at::Tensor& index, const at::Tensor& offsets,
                 const at::Tensor& flips, const AugmentSpec& spec, const at::Tensor& table, bool pinned = false);

at::Tensor augment_batch(const at::Tensor& images, const at::Tensor& offsets, const at::Tensor& flips,
                         const AugmentSpec& spec);
at::Tensor normalize(const at::Tensor& images, const AugmentSpec& spec);

// Batches of one split; train=true shuffles and augments from the epoch plan. With prefetch, a
// background thread prepares the next batches while the caller runs its step; the output is the
// same as without. pin_memory: batches in page-locked memory, for a GPU (resx.data.CifarLoader).
class CifarLoader {
 public:
  CifarLoader(at::Tensor images, at::Tensor labels, int64_t batch_size, bool train, uint64_t seed, bool drop_last,
              AugmentSpec spec, bool prefetch, bool pin_memory = false, int64_t rank = 0, int64_t world = 1);
  ~CifarLoader();
  CifarLoader(const CifarLoader&) = delete;
  CifarLoader& operator=(const CifarLoader&) = delete;

  int64_t size() const;  // batches per epoch
  int64_t num_samples() const { return images_.size(0); }
  void start_epoch(int64_t epoch);
  std::optional<Batch> next();

 private:
  Batch produce(int64_t index) const;
  void stop();

  at::Tensor images_, labels_, table_;
  int64_t batch_size_;
  bool train_;
  uint64_t seed_;
  bool drop_last_;
  AugmentSpec spec_;
  bool prefetch_, pin_memory_;
  int64_t rank_, world_;
  int64_t samples() const;  // this rank's per epoch

  EpochPlan plan_;
  int64_t cursor_ = -1;  // next batch handed out; -1 before the first start_epoch

  // prefetch state
  static constexpr size_t kDepth = 2;
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace resx
