// Data-parallel training in the C++ runtime on PyTorch's own engine: the process group that Python
// created (torch.distributed, resolved here by its registered name), and c10d::Reducer with
// c10d::Logger, which are what torch.nn.parallel.DistributedDataParallel drives from Python: the same
// checks and broadcasts at construction, the same buckets (one at first, rebuilt after the first step in
// the order gradients became ready), autograd hooks, gradients averaged by all-reduce overlapped with
// backward, rank 0's buffers before each forward, and DDP's timer. Mirrors resx.distributed.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace c10d {
class ProcessGroup;
class Reducer;
class Logger;
}  // namespace c10d

namespace resx {

// Where this process is in the run: torchrun's RANK and WORLD_SIZE, the backend, and the name under
// which Python registered the process group (resx.distributed.World).
struct World {
  int64_t rank = 0, size = 1;
  std::string backend, group_name;
  bool distributed() const { return size > 1; }
  bool writes() const { return rank == 0; }  // global rank 0 owns the run directory
};

// DistributedDataParallel's sizes (resx.distributed, through config.json).
struct BucketSizes {
  int64_t bucket_bytes_cap = 0, first_bucket_bytes_cap = 0, broadcast_bucket_bytes = 0;
};

// DDP's own record (c10d::Logger): bucket sizes and its mean all-reduce times, in seconds.
struct DataParallelReport {
  std::vector<int64_t> bucket_sizes;
  double allreduce_s = 0, allreduce_overlap_s = 0;
};

class DataParallel {
 public:
  // params and buffers: the module's, in its order.
  DataParallel(const World& world, std::vector<std::pair<std::string, at::Tensor>> params,
               std::vector<at::Tensor> buffers, const BucketSizes& sizes);
  ~DataParallel();

  // DDP's pre-forward: timer, reducer, buckets rebuilt once, rank 0's buffers.
  void before_forward();
  // DDP's post-forward: the reducer expects this step's gradients.
  void after_forward();
  // Rank 0's buffers to every rank (before an evaluation).
  void broadcast_buffers();
  // Whether any rank asks to stop: every rank stops after the same step.
  bool any(bool mine);
  // Element-wise sums over the ranks, in float64.
  std::vector<double> sum(const std::vector<double>& values);
  // Every rank's row, by rank.
  std::vector<std::vector<double>> gather(const std::vector<double>& row);
  DataParallelReport report() const;

 private:
  World world_;
  BucketSizes sizes_;
  std::vector<at::Tensor> buffers_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::shared_ptr<c10d::Reducer> reducer_;
  std::shared_ptr<c10d::Logger> logger_;
};

}  // namespace resx
