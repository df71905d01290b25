#include "train.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "callgrind.h"
#include "engines.h"
#include "env.h"
#include "files.h"
#include "resnet.h"
#include "timing.h"

namespace resx {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

using Clock = std::chrono::steady_clock;

at::Tensor to_device(const at::Tensor& x, const at::Device& device, bool channels_last) {
  auto y = x.to(device, /*non_blocking=*/true);  // the loader pins batches for a GPU
  return channels_last ? y.contiguous(at::MemoryFormat::ChannelsLast) : y;
}

}  // namespace

TrainConfig TrainConfig::read(const std::string& path) {
  const auto text = read_file(path, "config file (write one with `resx train --runtime cpp-exe`)");
  if (text.find("format = resx-config/1") != std::string::npos) {
    throw Error(path + ": a resx-config/1 file from an older resx; continue the run with `resx train --resume " +
                fs::path(path).parent_path().string() + "`, which writes its config.json");
  }
  const auto j = parse_json(text, path);
  if (j.value("format", "") != "resx-config/2") {
    throw Error(path + ": not a resx-config/2 file (a run directory's config.json; rewrite it with `resx train`)");
  }
  const auto& r = object(j, "config", path);
  const auto what = path + " config";
  TrainConfig c;
  c.epochs = get<int64_t>(r, "epochs", what);
  c.batch_size = get<int64_t>(r, "batch_size", what);
  c.seed = get<int64_t>(r, "seed", what);
  c.threads = get<int64_t>(r, "threads", what);
  c.subset = get<int64_t>(r, "subset", what);
  c.test_subset = get<int64_t>(r, "test_subset", what);
  c.eval_every = get<int64_t>(r, "eval_every", what);
  c.momentum = get<double>(r, "momentum", what);
  c.weight_decay = get<double>(r, "weight_decay", what);
  c.label_smoothing = get<double>(r, "label_smoothing", what);
  c.nesterov = get<bool>(r, "nesterov", what);
  c.drop_last = get<bool>(r, "drop_last", what);
  c.channels_last = get<bool>(r, "channels_last", what);
  c.deterministic = get<bool>(r, "deterministic", what);
  c.device = get<std::string>(r, "device", what);
  c.dtype = get<std::string>(r, "dtype", what);
  c.world_size = get<int64_t>(r, "world_size", what);
  const auto& a = object(r, "augment", what);
  c.augment =
      AugmentSpec{get<int64_t>(a, "crop", what), get<int64_t>(a, "padding", what), get<double>(a, "flip_p", what),
                  get<std::array<double, 3>>(a, "mean", what), get<std::array<double, 3>>(a, "std", what)};
  c.runtime = get<std::string>(j, "runtime", path);
  c.module = get<std::string>(j, "module", path);
  if (c.module != "eager" && c.module != "scripted") throw Error(path + ": module must be eager or scripted");
  c.model_file = get<std::string>(j, "model_file", path);
  c.data_dir = get<std::string>(j, "data_dir", path);
  c.run_dir = get<std::string>(j, "run_dir", path);
  c.config_digest = get<std::string>(j, "config_digest", path);
  c.model_config = get<std::string>(j, "model_config", path);
  c.model_seeds = get<std::vector<int64_t>>(j, "model_seeds", path);
  c.saved = object(j, "saved", path);
  c.steps_per_epoch = get<int64_t>(j, "steps_per_epoch", path);
  c.prefetch = get<bool>(j, "prefetch", path);
  const auto& d = object(j, "distributed", path);
  c.buckets = {get<int64_t>(d, "bucket_bytes_cap", path), get<int64_t>(d, "first_bucket_bytes_cap", path),
               get<int64_t>(d, "broadcast_bucket_bytes", path)};
  c.rank_columns = get<std::vector<std::string>>(d, "rank_columns", path);
  c.files = RunFiles::from(object(j, "run_files", path), path);
  c.lrs = get<std::vector<double>>(j, "lrs", path);
  // resx.recipe validated these; a file edited by hand is checked again.
  if (c.dtype != "fp32" && c.dtype != "bf16") throw Error(path + ": dtype must be fp32 or bf16");
  if (c.epochs < 1 || c.batch_size < 1 || c.steps_per_epoch < 1 || c.eval_every < 1 || c.threads < 0 ||
      c.world_size < 1) {
    throw Error(path + ": epochs, batch_size, steps_per_epoch, eval_every and world_size must be >= 1, threads >= 0");
  }
  if (static_cast<int64_t>(c.model_seeds.size()) != c.epochs) throw Error(path + ": one model seed per epoch needed");
  if (static_cast<int64_t>(c.lrs.size()) != c.epochs * c.steps_per_epoch) {
    throw Error(path + ": " + std::to_string(c.lrs.size()) + " learning rates for " +
                std::to_string(c.epochs * c.steps_per_epoch) + " steps (rewrite it with `resx train`)");
  }
  for (double lr : c.lrs) {
    if (!std::isfinite(lr) || lr <= 0) throw Error(path + ": learning rates must be finite and positive");
  }
  return c;
}

Json progress_json(const Progress& p) {
  return {{"phase", p.phase},
          {"epoch", p.epoch},
          {"epochs", p.epochs},
          {"step", p.step},
          {"steps", p.steps},
          {"loss", p.loss},
          {"images_per_s", p.images_per_s}};
}

void load_weights(Network& model, const std::string& checkpoint_path, const std::string& checkpoint_format) {
  const auto checkpoint = read_checkpoint(checkpoint_path, checkpoint_format);
  const auto& fingerprint = checkpoint.at("fingerprint").toStringRef();
  if (fingerprint != model.fingerprint()) {
    throw Error(checkpoint_path + ": weights are for another architecture (fingerprint " + fingerprint.substr(0, 12) +
                " != model " + model.fingerprint().substr(0, 12) + ")");
  }
  const auto tensors = tensor_dict(checkpoint, "model", checkpoint_path);
  const auto state = model.state();
  check_tensors(checkpoint_path, "model", state, tensors);
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : state) t.copy_(tensors.at(name));
}

EvalResult evaluate(Network& model, CifarLoader& loader, const at::Device& device, const std::string& dtype,
                    bool channels_last) {
  return eval_result(evaluate_sums(model, loader, device, dtype, channels_last));
}

EvalResult eval_result(const std::vector<double>& sums) {
  const double loss_sum = sums.at(0), correct = sums.at(1), seen = sums.at(2);
  return {seen > 0 ? loss_sum / seen : 0, seen > 0 ? 100.0 * correct / seen : 0, static_cast<int64_t>(seen)};
}

std::vector<double> evaluate_sums(Network& model, CifarLoader& loader, const at::Device& device,
                                  const std::string& dtype, bool channels_last) {
  c10::InferenceMode guard;
  const AutocastGuard autocast(device.type(), dtype == "bf16");
  model.train(false);
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    auto x = to_device(batch->inputs, device, channels_last);
    auto y = batch->labels.to(device);
    auto logits = model.forward(x);
    loss_sum += F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    seen += y.size(0);
  }
  return {loss_sum, static_cast<double>(correct), static_cast<double>(seen)};
}

Json world_json(const World& world, const DataParallelReport* ddp, const std::vector<std::string>& columns,
                const std::vector<std::vector<double>>& rows) {
  Json ranks = Json::array();
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    if (row.size() != columns.size()) {
      throw Error("rank " + std::to_string(r) + " reported " + std::to_string(row.size()) + " values for " +
                  std::to_string(columns.size()) + " rank_columns (config.json)");
    }
    Json rank = {{"rank", r}};
    for (size_t k = 0; k < row.size(); ++k) {
      if (columns[k] == "steps") {
        rank[columns[k]] = static_cast<int64_t>(row[k]);
      } else {
        rank[columns[k]] = row[k];
      }
    }
    // The share of the step spent waiting for the all-reduce once backward's compute had ended.
    const double exposed = std::max(0.0, rank.value("allreduce_s", 0.0) - rank.value("allreduce_overlap_s", 0.0));
    const double step = rank.value("step_s", 0.0);
    rank["allreduce_share"] = step > 0 ? exposed / step : 0.0;
    ranks.push_back(std::move(rank));
  }
  return {{"size", world.size},
          {"backend", world.backend.empty() ? Json() : Json(world.backend)},
          {"bucket_sizes", ddp ? Json(ddp->bucket_sizes) : Json()},
          {"ranks", ranks}};
}

// ---------------------------------------------------------------------------------------- Trainer

namespace {

// $RESX_COUNT_STEPS as (steps before counting, steps counted), or nullopt (resx.callgrind.counted_steps).
std::optional<std::pair<int64_t, int64_t>> counted_steps() {
  const char* text = std::getenv(kCountSteps);
  if (text == nullptr || *text == '\0') return std::nullopt;
  long long first = -1, n = 0;
  char end = 0;
  if (std::sscanf(text, "%lld,%lld%c", &first, &n, &end) != 2 || first < 0 || n < 1) {
    throw Error(std::string("$") + kCountSteps + " '" + text +
                "': give FIRST,N (steps before counting, at least 0; steps counted, at least 1)");
  }
  return std::make_pair(static_cast<int64_t>(first), static_cast<int64_t>(n));
}

}  // namespace

Trainer::Trainer(TrainConfig config, int lock_fd, World world)
    : config_(std::move(config)),
      world_(std::move(world)),
      run_dir_(config_.run_dir, config_.files, lock_fd, world_.writes()),
      device_(config_.device),
      model_(open_network(config_.model_file, config_.device, config_.module)) {
  if (world_.size != config_.world_size) {
    throw Error(config_.run_dir + ": the run trains on " + std::to_string(config_.world_size) +
                " process(es), this one is of " + std::to_string(world_.size));
  }
  if (config_.threads > 0) set_num_threads(static_cast<int>(config_.threads), 0);
  set_deterministic(config_.deterministic);
  counted_ = counted_steps();
  if (config_.channels_last) model_->to_channels_last();
  params_ = model_->named_parameters();
  std::vector<at::Tensor> tensors;
  for (const auto& [name, p] : params_) tensors.push_back(p);
  optimizer_ = std::make_unique<torch::optim::SGD>(tensors, torch::optim::SGDOptions(config_.lrs.at(0))
                                                                .momentum(config_.momentum)
                                                                .weight_decay(config_.weight_decay)
                                                                .nesterov(config_.nesterov));
  auto [train_x, train_y] = first_n(load_split(config_.data_dir, "train"), config_.subset);
  auto [test_x, test_y] = first_n(load_split(config_.data_dir, "test"), config_.test_subset);
  const bool pin = device_.is_cuda();
  train_loader_ =
      std::make_unique<CifarLoader>(train_x, train_y, config_.batch_size, true, config_.seed, config_.drop_last,
                                    config_.augment, config_.prefetch, pin, world_.rank, world_.size);
  test_loader_ = std::make_unique<CifarLoader>(test_x, test_y, config_.batch_size, false, config_.seed, false,
                                               config_.augment, config_.prefetch, pin, world_.rank, world_.size);
  if (train_loader_->size() != config_.steps_per_epoch) {
    throw Error(config_.data_dir + ": makes " + std::to_string(train_loader_->size()) + " batches per epoch, the run " +
                "was prepared for " + std::to_string(config_.steps_per_epoch) + " (the data changed?)");
  }
  progress_ = {"starting", 0, config_.epochs, 0, config_.steps_per_epoch, 0, 0};
  // A run directory holds a checkpoint only when a run of this config made it (resx.rundir refuses other
  // directories): continue from it.
  const auto checkpoint = run_dir_.file(config_.files.checkpoint);
  if (fs::exists(checkpoint)) restore(read_checkpoint(checkpoint, config_.files.checkpoint_format));
  // After the restore, as resx.train.Trainer: the construction broadcasts rank 0's parameters and buffers.
  if (world_.distributed()) {
    std::vector<at::Tensor> buffers;
    for (const auto& [name, b] : model_->named_buffers()) buffers.push_back(b);
    ddp_ = std::make_unique<DataParallel>(world_, params_, buffers, config_.buckets);
  }
}

void Trainer::restore(const c10::impl::GenericDict& checkpoint) {
  const auto path = run_dir_.file(config_.files.checkpoint);
  check_resumable(path, checkpoint, model_->fingerprint(), config_.config_digest, config_.steps_per_epoch,
                  config_.epochs);
  const auto tensors = tensor_dict(checkpoint, "model", path);
  const auto momentum = tensor_dict(checkpoint, "momentum", path);
  const auto state = model_->state();
  check_tensors(path, "model", state, tensors);
  check_tensors(path, "momentum", params_, momentum, true);
  std::vector<StepRecord> steps;
  std::vector<EpochRecord> epochs;
  for (const auto& f : run_dir_.steps().parse(checkpoint.at("steps_csv").toStringRef(), path)) {
    steps.push_back(record_from<StepRecord>(f, path + " steps_csv"));
  }
  for (const auto& f : run_dir_.metrics().parse(checkpoint.at("metrics_csv").toStringRef(), path)) {
    epochs.push_back(record_from<EpochRecord>(f, path + " metrics_csv"));
  }
  const auto epoch = checkpoint.at("epoch").toInt(), step = checkpoint.at("step").toInt();
  if (static_cast<int64_t>(steps.size()) != step || static_cast<int64_t>(epochs.size()) != epoch) {
    throw Error(path + ": its history does not match its position; the checkpoint is damaged");
  }
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : state) t.copy_(tensors.at(name));
  }
  auto& optimizer_state = optimizer_->state();
  for (const auto& [name, p] : params_) {
    if (!momentum.contains(name)) continue;  // no step taken yet for this parameter
    auto param_state = std::make_unique<torch::optim::SGDParamState>();
    param_state->momentum_buffer(momentum.at(name).to(device_).clone());
    optimizer_state[p.unsafeGetTensorImpl()] = std::move(param_state);
  }
  epochs_done_ = epoch;
  steps_done_ = step;
  wall_time_ = checkpoint.at("wall_time").toDouble();
  steps_ = std::move(steps);
  epochs_ = std::move(epochs);
}

std::optional<StepRecord> Trainer::step(int64_t epoch) {
  if (counted_ && steps_done_ == counted_->first) count_on();
  auto record = take_step(epoch);
  if (counted_ && record && steps_done_ == counted_->first + counted_->second) {
    count_off();
    counted_.reset();
  }
  return record;
}

std::optional<StepRecord> Trainer::take_step(int64_t epoch) {
  const auto t0 = Clock::now();
  auto batch = train_loader_->next();
  if (!batch) return std::nullopt;
  if (steps_done_ >= static_cast<int64_t>(config_.lrs.size())) {
    throw Error("step " + std::to_string(steps_done_ + 1) + " is past the run's " + std::to_string(config_.lrs.size()) +
                " learning rates");
  }
  auto x = to_device(batch->inputs, device_, config_.channels_last);
  auto y = batch->labels.to(device_, /*non_blocking=*/true);
  sync_device(device_);
  const double t_data = seconds_since(t0);
  const double lr = config_.lrs[static_cast<size_t>(steps_done_)];
  static_cast<torch::optim::SGDOptions&>(optimizer_->param_groups()[0].options()).lr(lr);
  optimizer_->zero_grad(true);
  const auto t1 = Clock::now();
  at::Tensor logits, loss;
  {
    const AutocastGuard autocast(device_.type(), config_.dtype == "bf16");
    if (ddp_) ddp_->before_forward();
    logits = model_->forward(x);
    if (ddp_) ddp_->after_forward();
    loss = F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().label_smoothing(config_.label_smoothing));
  }
  sync_device(device_);
  const double t_forward = seconds_since(t1);
  const auto t2 = Clock::now();
  loss.backward();
  sync_device(device_);
  const double t_backward = seconds_since(t2);
  const auto t3 = Clock::now();
  optimizer_->step();
  sync_device(device_);
  const double t_optimizer = seconds_since(t3);
  ++steps_done_;
  double loss_value = loss.item<double>();
  int64_t n = y.size(0), correct = logits.argmax(1).eq(y).sum().item<int64_t>();
  if (ddp_) {  // the step of the global batch
    const auto sums =
        ddp_->sum({loss_value * static_cast<double>(n), static_cast<double>(correct), static_cast<double>(n)});
    loss_value = sums[0] / sums[2];
    correct = static_cast<int64_t>(sums[1]);
    n = static_cast<int64_t>(sums[2]);
  }
  const double times[] = {1, t_data, t_forward, t_backward, t_optimizer};
  for (size_t k = 0; k < taken_.size(); ++k) taken_[k] += times[k];
  StepRecord record{epoch + 1, steps_done_, lr, loss_value, n, correct, t_data, t_forward, t_backward, t_optimizer};
  steps_.push_back(record);
  return record;
}

EvalResult Trainer::evaluate() {
  // Every rank its share of the test set, with rank 0's BatchNorm statistics; the sums over ranks.
  if (ddp_) ddp_->broadcast_buffers();
  auto sums = evaluate_sums(*model_, *test_loader_, device_, config_.dtype, config_.channels_last);
  return eval_result(ddp_ ? ddp_->sum(sums) : sums);
}

bool Trainer::stopping() {
  const bool asked = stop_signal() != 0;
  if (!ddp_) return asked;
  const bool agreed = ddp_->any(asked);
  if (agreed && !asked) request_stop(SIGTERM);  // another rank was asked
  return agreed;
}

Json Trainer::world_report() {
  if (!ddp_) return world_json(world_);
  const double n = taken_[0];
  std::vector<double> means;
  for (size_t k = 1; k < taken_.size(); ++k) means.push_back(n > 0 ? taken_[k] / n : 0.0);
  const auto report = ddp_->report();
  std::vector<double> row{n, means[0] + means[1] + means[2] + means[3]};
  row.insert(row.end(), means.begin(), means.end());
  row.push_back(report.allreduce_s);
  row.push_back(report.allreduce_overlap_s);
  return world_json(world_, &report, config_.rank_columns, ddp_->gather(row));
}

void Trainer::save_checkpoint(const std::string& name, bool with_momentum) const {
  if (!world_.writes()) return;
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  c10::impl::GenericDict tensors(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [pname, t] : model_->state()) tensors.insert(pname, t.detach().to(at::kCPU).clone());
  c10::impl::GenericDict momentum(c10::StringType::get(), c10::TensorType::get());
  if (with_momentum) {
    const auto& state = optimizer_->state();
    for (const auto& [pname, p] : params_) {
      const auto it = state.find(p.unsafeGetTensorImpl());
      if (it == state.end()) continue;
      const auto& s = static_cast<const torch::optim::SGDParamState&>(*it->second);
      if (s.momentum_buffer().defined()) momentum.insert(pname, s.momentum_buffer().to(at::kCPU).clone());
    }
  }
  std::vector<Json> step_rows, epoch_rows;
  for (const auto& r : steps_) step_rows.push_back(record_json(r));
  for (const auto& r : epochs_) epoch_rows.push_back(record_json(r));
  dict.insert("format", config_.files.checkpoint_format);
  dict.insert("fingerprint", model_->fingerprint());
  dict.insert("model_config", config_.model_config);
  dict.insert("config_digest", config_.config_digest);
  dict.insert("steps_per_epoch", config_.steps_per_epoch);
  dict.insert("epoch", epochs_done_);
  dict.insert("step", steps_done_);
  dict.insert("wall_time", wall_time_);
  dict.insert("model", tensors);
  dict.insert("momentum", momentum);
  dict.insert("metrics_csv", run_dir_.metrics().format(epoch_rows));
  dict.insert("steps_csv", run_dir_.steps().format(step_rows));
  run_dir_.save_checkpoint(name, dict);
}

void Trainer::write_outputs(const std::string& status) {
  const auto world = world_report();
  if (!world_.writes()) return;
  run_dir_.write_history(steps_, epochs_);
  Json final;  // null until complete
  if (status == "complete") {
    const EpochRecord* last = epochs_.empty() ? nullptr : &epochs_.back();
    final = {{"epochs", config_.epochs},
             {"steps", steps_done_},
             {"wall_time", wall_time_},
             {"test_loss", last ? Json(last->test_loss) : Json()},
             {"test_top_1", last ? Json(last->test_top_1) : Json()},
             {"train_loss", steps_.empty() ? Json() : Json(steps_.back().loss)},
             {"compile_seconds", 0}};
  }
  // The keys of resx.train.write_run_json.
  run_dir_.write_run_json({{"runtime", config_.runtime},
                           {"status", status},
                           {"epochs_done", epochs_done_},
                           {"config", config_.saved},
                           {"env", {{config_.runtime, env_report()}}},
                           {"fingerprint", model_->fingerprint()},
                           {"final", final},
                           {"world", world}});
}

Progress Trainer::progress() const {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  return progress_;
}

void Trainer::report(const Progress& p) {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  progress_ = p;
}

bool Trainer::run() {
  Progress p = progress();
  p.phase = "train";
  p.epoch = epochs_done_;
  report(p);
  for (int64_t epoch = epochs_done_; epoch < config_.epochs; ++epoch) {
    torch::manual_seed(static_cast<uint64_t>(config_.model_seeds.at(static_cast<size_t>(epoch))));  // dropout's
    model_->train(true);
    const auto start = Clock::now();
    train_loader_->start_epoch(epoch);
    double loss_sum = 0, data_s = 0, forward_s = 0, backward_s = 0, optimizer_s = 0;
    int64_t correct = 0, seen = 0, in_epoch = 0;
    while (true) {
      if (stopping()) {
        write_outputs("interrupted");
        p.phase = "stopped";
        report(p);
        return false;
      }
      const auto record = step(epoch);
      if (!record) break;
      loss_sum += record->loss * static_cast<double>(record->batch_size);
      correct += record->correct;
      seen += record->batch_size;
      ++in_epoch;
      data_s += record->data_s, forward_s += record->forward_s, backward_s += record->backward_s,
          optimizer_s += record->optimizer_s;
      p.phase = "train", p.step = in_epoch, p.loss = record->loss;
      p.images_per_s = static_cast<double>(seen) / seconds_since(start);
      report(p);
    }
    const double epoch_time = seconds_since(start);
    const bool evaluated = (epoch + 1) % config_.eval_every == 0 || epoch + 1 == config_.epochs;
    std::optional<EvalResult> result;
    double eval_time = 0;
    if (evaluated) {
      p.phase = "eval";
      report(p);
      const auto t = Clock::now();
      result = evaluate();
      eval_time = seconds_since(t);
    }
    wall_time_ += epoch_time + eval_time;
    EpochRecord r;
    r.epoch = epoch + 1;
    r.wall_time = wall_time_;
    r.epoch_time = epoch_time;
    r.train_loss = loss_sum / static_cast<double>(seen);
    r.train_top_1 = 100.0 * static_cast<double>(correct) / static_cast<double>(seen);
    if (result) r.test_loss = result->loss, r.test_top_1 = result->top_1;
    r.eval_time = eval_time;
    r.data_s = data_s, r.forward_s = forward_s, r.backward_s = backward_s, r.optimizer_s = optimizer_s;
    r.images_per_s = static_cast<double>(seen) / epoch_time;
    r.lr = steps_.back().lr;
    epochs_.push_back(r);
    epochs_done_ = epoch + 1;
    save_checkpoint(config_.files.checkpoint, true);
    write_outputs("running");
    p.phase = "train", p.epoch = epochs_done_, p.step = 0;
    report(p);
  }
  save_checkpoint(config_.files.final, false);
  write_outputs("complete");
  p.phase = "done", p.step = config_.steps_per_epoch;
  report(p);
  return true;
}

std::vector<int64_t> bare_train_steps(Network& model, const at::Tensor& inputs, const at::Tensor& labels, int64_t steps,
                                      double lr, double momentum, double weight_decay) {
  std::vector<at::Tensor> params;
  for (const auto& [name, p] : model.named_parameters()) params.push_back(p);
  torch::optim::SGD optimizer(params, torch::optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay));
  model.train(true);
  const auto x = inputs.to(model.device()), y = labels.to(model.device());
  std::vector<int64_t> times;
  for (int64_t i = 0; i < steps; ++i) {
    const auto t0 = Clock::now();
    optimizer.zero_grad(true);
    auto loss = F::cross_entropy(model.forward(x), y);
    loss.backward();
    optimizer.step();
    sync_device(model.device());
    times.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  }
  return times;
}

namespace {
std::atomic<Trainer*> g_interruptible{nullptr};
void stop_on_signal(int signal) {
  if (Trainer* t = g_interruptible.load()) t->request_stop(signal);  // atomic operations only: signal-safe
}
}  // namespace

bool run_interruptible(Trainer& trainer) {
  struct sigaction action{}, old_int{}, old_term{};
  action.sa_handler = stop_on_signal;
  sigemptyset(&action.sa_mask);
  g_interruptible.store(&trainer);
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  struct Restore {
    struct sigaction *i, *t;
    ~Restore() {
      sigaction(SIGINT, i, nullptr);
      sigaction(SIGTERM, t, nullptr);
      g_interruptible.store(nullptr);
    }
  } restore{&old_int, &old_term};
  return trainer.run();
}

}  // namespace resx
