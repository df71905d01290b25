#include "distributed.h"

#include <torch/version.h>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <limits>
#include <unordered_map>

#include "files.h"

namespace resx {

DataParallel::DataParallel(const World& world, std::vector<std::pair<std::string, at::Tensor>> params,
                           std::vector<at::Tensor> buffers, const BucketSizes& sizes)
    : world_(world), sizes_(sizes), buffers_(std::move(buffers)) {
  try {
    group_ = c10d::resolve_process_group(world.group_name);
  } catch (const c10::Error&) {
    throw Error("no process group '" + world.group_name + "' (torch.distributed creates it: run under torchrun)");
  }
  std::vector<at::Tensor> tensors;
  std::unordered_map<size_t, std::string> names;
  for (size_t i = 0; i < params.size(); ++i) {
    tensors.push_back(params[i].second);
    names[i] = params[i].first;
  }
  // As DistributedDataParallel's constructor: the same shapes everywhere, then rank 0's state.
  c10d::verify_params_across_processes(group_, tensors, std::nullopt);
  {
    at::NoGradGuard no_grad;  // copied into leaves that require grad, as DDP does under torch.no_grad()
    std::vector<at::Tensor> state(tensors);
    state.insert(state.end(), buffers_.begin(), buffers_.end());
    c10d::broadcast_coalesced(group_, state, static_cast<size_t>(sizes_.broadcast_bucket_bytes), 0);
  }
  // Without unused parameters: one bucket first, rebuilt after the first backward from the order the
  // gradients became ready, with the first bucket kept small.
  const std::vector<bool> no_sparse(tensors.size(), false);
  auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
      tensors, {static_cast<size_t>(std::numeric_limits<int64_t>::max())}, no_sparse);
  std::reverse(buckets.begin(), buckets.end());
  reducer_ = std::make_shared<c10d::Reducer>(tensors, std::move(buckets), group_, no_sparse, sizes_.bucket_bytes_cap,
                                             /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
                                             std::move(names), sizes_.first_bucket_bytes_cap
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 10)
                                             ,
                                             /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
                                             /*bucket_bytes_cap_list=*/std::vector<int64_t>{}
#endif
  );
  logger_ = std::make_shared<c10d::Logger>(reducer_);
  reducer_->set_logger(logger_);
  logger_->set_construction_data_and_log("ResNet", {}, -1, /*broadcast_buffers=*/true, /*has_sync_bn=*/false,
                                         /*static_graph=*/false);
  reducer_->set_ddp_runtime_logging_sample_rate(1);  // DDP's timer on every step, as resx.distributed.wrap
}

DataParallel::~DataParallel() = default;

void DataParallel::before_forward() {
  logger_->set_runtime_stats_and_log();
  reducer_->prepare_for_forward();
  reducer_->rebuild_buckets();
  broadcast_buffers();
}

void DataParallel::after_forward() { reducer_->prepare_for_backward({}); }

void DataParallel::broadcast_buffers() {
  if (buffers_.empty()) return;
  at::NoGradGuard no_grad;
  c10d::broadcast_coalesced(group_, buffers_, static_cast<size_t>(sizes_.broadcast_bucket_bytes), 0);
}

bool DataParallel::any(bool mine) {
  std::vector<at::Tensor> flag{at::full({1}, mine ? 1 : 0, at::kInt)};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  group_->allreduce(flag, options)->wait();
  return flag[0].item<int>() != 0;
}

std::vector<double> DataParallel::sum(const std::vector<double>& values) {
  std::vector<at::Tensor> t{at::tensor(values, at::kDouble)};
  group_->allreduce(t)->wait();
  return {t[0].data_ptr<double>(), t[0].data_ptr<double>() + t[0].numel()};
}

std::vector<std::vector<double>> DataParallel::gather(const std::vector<double>& row) {
  std::vector<at::Tensor> input{at::tensor(row, at::kDouble)};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int64_t r = 0; r < world_.size; ++r) output[0].push_back(at::empty_like(input[0]));
  group_->allgather(output, input)->wait();
  std::vector<std::vector<double>> rows;
  for (const auto& t : output[0]) rows.emplace_back(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
  return rows;
}

DataParallelReport DataParallel::report() const {
  const auto data = logger_->get_ddp_logging_data();
  DataParallelReport r;
  auto sizes = data.strs_map.find("rebuilt_bucket_sizes");  // as rebuilt after the first step
  if (sizes == data.strs_map.end() || sizes->second.empty()) sizes = data.strs_map.find("bucket_sizes");
  if (sizes != data.strs_map.end()) {
    for (const auto& item : split(sizes->second, ',')) {
      if (item.find_first_not_of(' ') != std::string::npos) r.bucket_sizes.push_back(std::stoll(item));
    }
  }
  auto seconds = [&](const char* key) {
    const auto it = data.ints_map.find(key);
    return it == data.ints_map.end() ? 0.0 : static_cast<double>(it->second) / 1e9;
  };
  r.allreduce_s = seconds("avg_backward_comm_time");
  r.allreduce_overlap_s = seconds("avg_backward_compute_comm_overlap_time");
  return r;
}

}  // namespace resx
