#include "train.h"

#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "env.h"
#include "io.h"

namespace resx {
namespace fs = std::filesystem;

const char* const kMetricsHeader =
    "Epoch,Wall Time,Epoch time,Train_loss,Train_top_1,Test_loss,Test_top_1,Eval time,"
    "data_s,forward_s,backward_s,optimizer_s,images_per_s,lr\n";
const char* const kStepsHeader = "epoch,step,lr,loss,batch_size,data_s,forward_s,backward_s,optimizer_s\n";

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string fixed6(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

const std::string& need(const std::map<std::string, std::string>& kv, const std::string& key, const std::string& path) {
  auto it = kv.find(key);
  if (it == kv.end()) throw std::runtime_error(path + ": missing key '" + key + "'");
  return it->second;
}

int64_t to_int(const std::string& text, const std::string& key) {
  try {
    size_t used = 0;
    const auto v = std::stoll(text, &used);
    if (used != text.size()) throw std::invalid_argument(key);
    return v;
  } catch (const std::exception&) {
    throw std::runtime_error("config key '" + key + "': '" + text + "' is not an integer");
  }
}

std::array<double, 3> triple(const std::string& text, const std::string& key) {
  auto v = parse_doubles(text, key);
  if (v.size() != 3) throw std::runtime_error("config key '" + key + "' needs 3 values");
  return {v[0], v[1], v[2]};
}

c10::Dict<std::string, at::Tensor> tensor_dict(const c10::IValue& checkpoint, const std::string& key,
                                               const std::string& path) {
  auto dict = checkpoint.toGenericDict();
  if (!dict.contains(key)) throw std::runtime_error(path + ": checkpoint has no '" + key + "'");
  c10::Dict<std::string, at::Tensor> out;
  for (const auto& item : dict.at(key).toGenericDict()) out.insert(item.key().toStringRef(), item.value().toTensor());
  return out;
}

}  // namespace

TrainConfig TrainConfig::read(const std::string& path) {
  const auto kv = read_key_values(path);
  auto get = [&](const std::string& key) { return need(kv, key, path); };
  if (get("format") != "resx-config/1") throw std::runtime_error(path + ": not a resx-config/1 file");
  TrainConfig c;
  c.raw = kv;
  c.runtime = kv.count("runtime") ? kv.at("runtime") : "cpp-exe";
  c.model_file = get("model_file");
  c.data_dir = get("data_dir");
  c.run_dir = get("run_dir");
  c.device = get("device");
  c.model_config_json = get("model_config");
  c.epochs = to_int(get("epochs"), "epochs");
  c.batch_size = to_int(get("batch_size"), "batch_size");
  c.seed = to_int(get("seed"), "seed");
  c.threads = to_int(get("threads"), "threads");
  c.subset = to_int(get("subset"), "subset");
  c.test_subset = to_int(get("test_subset"), "test_subset");
  c.eval_every = to_int(get("eval_every"), "eval_every");
  c.momentum = parse_doubles(get("momentum"), "momentum").at(0);
  c.weight_decay = parse_doubles(get("weight_decay"), "weight_decay").at(0);
  c.label_smoothing = parse_doubles(get("label_smoothing"), "label_smoothing").at(0);
  c.nesterov = to_int(get("nesterov"), "nesterov") != 0;
  c.drop_last = to_int(get("drop_last"), "drop_last") != 0;
  c.prefetch = to_int(get("prefetch"), "prefetch") != 0;
  c.resume = to_int(get("resume"), "resume") != 0;
  c.spec =
      AugmentSpec{to_int(get("crop"), "crop"), to_int(get("padding"), "padding"),
                  parse_doubles(get("flip_p"), "flip_p").at(0), triple(get("mean"), "mean"), triple(get("std"), "std")};
  c.lrs = parse_doubles(get("lrs"), "lrs");
  if (c.epochs < 1) throw std::runtime_error(path + ": epochs must be at least 1");
  if (c.batch_size < 1) throw std::runtime_error(path + ": batch_size must be at least 1");
  return c;
}

c10::IValue read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": no such checkpoint");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw std::runtime_error(path + ": not a resx checkpoint (" + e.what_without_backtrace() + ")");
  }
  if (!value.isGenericDict() || !value.toGenericDict().contains("format") ||
      value.toGenericDict().at("format").toStringRef() != kCheckpointFormat) {
    throw std::runtime_error(path + ": not a resx checkpoint (no format " + std::string(kCheckpointFormat) + ")");
  }
  return value;
}

void load_weights(Model& model, const std::string& checkpoint_path) {
  const auto checkpoint = read_checkpoint(checkpoint_path);
  const auto fingerprint = checkpoint.toGenericDict().at("fingerprint").toStringRef();
  if (fingerprint != model.fingerprint()) {
    throw std::runtime_error(checkpoint_path + ": weights are for another architecture (fingerprint " +
                             fingerprint.substr(0, 12) + " != model " + model.fingerprint().substr(0, 12) + ")");
  }
  const auto tensors = tensor_dict(checkpoint, "model", checkpoint_path);
  torch::NoGradGuard no_grad;
  auto copy = [&](const std::string& name, at::Tensor target) {
    if (!tensors.contains(name)) throw std::runtime_error(checkpoint_path + ": no tensor '" + name + "'");
    target.copy_(tensors.at(name));
  };
  for (const auto& [name, t] : model.named_parameters()) copy(name, t);
  for (const auto& [name, t] : model.named_buffers()) copy(name, t);
}

EvalResult evaluate(Model& model, CifarLoader& loader, const at::Device& device) {
  c10::InferenceMode guard;
  model.train(false);
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    auto x = batch->inputs.to(device);
    auto y = batch->labels.to(device);
    auto logits = model.module().forward({x}).toTensor();
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    seen += y.size(0);
  }
  return {seen ? loss_sum / seen : 0, seen ? 100.0 * correct / seen : 0, seen};
}

Trainer::Trainer(TrainConfig config)
    : config_(std::move(config)), device_(config_.device), model_(config_.model_file, config_.device) {
  if (config_.threads > 0) set_num_threads(static_cast<int>(config_.threads), 0);
  for (const auto& [name, p] : model_.named_parameters()) {
    param_names_.push_back(name);
    params_.push_back(p);
  }
  optimizer_ =
      std::make_unique<torch::optim::SGD>(params_, torch::optim::SGDOptions(config_.lrs.empty() ? 0.0 : config_.lrs[0])
                                                       .momentum(config_.momentum)
                                                       .weight_decay(config_.weight_decay)
                                                       .nesterov(config_.nesterov));
  auto [train_x, train_y] = first_n(load_split(config_.data_dir, "train"), config_.subset);
  auto [test_x, test_y] = first_n(load_split(config_.data_dir, "test"), config_.test_subset);
  train_loader_ = std::make_unique<CifarLoader>(train_x, train_y, config_.batch_size, true, config_.seed,
                                                config_.drop_last, config_.spec, config_.prefetch);
  test_loader_ = std::make_unique<CifarLoader>(test_x, test_y, config_.batch_size, false, config_.seed, false,
                                               config_.spec, config_.prefetch);
  const auto steps = train_loader_->size() * config_.epochs;
  if (static_cast<int64_t>(config_.lrs.size()) != steps) {
    throw std::runtime_error("config: " + std::to_string(config_.lrs.size()) + " learning rates for " +
                             std::to_string(steps) + " steps");
  }
  metrics_csv_ = kMetricsHeader;
  steps_csv_ = kStepsHeader;
  const auto checkpoint = (fs::path(config_.run_dir) / "checkpoint.pt").string();
  if (config_.resume && fs::exists(checkpoint)) restore(read_checkpoint(checkpoint));
}

void Trainer::restore(const c10::IValue& checkpoint) {
  const auto path = (fs::path(config_.run_dir) / "checkpoint.pt").string();
  load_weights(model_, path);
  auto dict = checkpoint.toGenericDict();
  start_epoch_ = dict.at("epoch").toInt();
  step_ = dict.at("step").toInt();
  wall_offset_ = dict.at("wall_time").toDouble();
  metrics_csv_ = dict.at("metrics_csv").toStringRef();
  steps_csv_ = dict.at("steps_csv").toStringRef();
  const auto momentum = tensor_dict(checkpoint, "momentum", path);
  auto& state = optimizer_->state();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!momentum.contains(param_names_[i])) continue;  // no step taken yet for this parameter
    auto param_state = std::make_unique<torch::optim::SGDParamState>();
    param_state->momentum_buffer(momentum.at(param_names_[i]).to(device_).clone());
    state[params_[i].unsafeGetTensorImpl()] = std::move(param_state);
  }
}

void Trainer::save_checkpoint(const std::string& path, int64_t epochs_done, bool with_momentum) const {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  c10::impl::GenericDict tensors(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [name, t] : model_.named_parameters()) tensors.insert(name, t.detach().to(at::kCPU).clone());
  for (const auto& [name, t] : model_.named_buffers()) tensors.insert(name, t.detach().to(at::kCPU).clone());
  c10::impl::GenericDict momentum(c10::StringType::get(), c10::TensorType::get());
  if (with_momentum) {
    const auto& state = optimizer_->state();
    for (size_t i = 0; i < params_.size(); ++i) {
      auto it = state.find(params_[i].unsafeGetTensorImpl());
      if (it == state.end()) continue;
      const auto& s = static_cast<const torch::optim::SGDParamState&>(*it->second);
      if (s.momentum_buffer().defined()) momentum.insert(param_names_[i], s.momentum_buffer().to(at::kCPU).clone());
    }
  }
  dict.insert("format", std::string(kCheckpointFormat));
  dict.insert("fingerprint", model_.fingerprint());
  dict.insert("model_config", config_.model_config_json);
  dict.insert("epoch", epochs_done);
  dict.insert("step", step_);
  dict.insert("wall_time", wall_offset_);
  dict.insert("model", tensors);
  dict.insert("momentum", momentum);
  dict.insert("metrics_csv", metrics_csv_);
  dict.insert("steps_csv", steps_csv_);
  const auto bytes = torch::pickle_save(dict);
  atomic_write(path, std::string(bytes.begin(), bytes.end()));
}

Progress Trainer::progress() const {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  return progress_;
}

void Trainer::set_progress(const Progress& p) {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  progress_ = p;
}

void Trainer::write_outputs(bool complete, const EvalResult& last_eval) const {
  const fs::path dir(config_.run_dir);
  atomic_write((dir / "metrics.csv").string(), metrics_csv_);
  atomic_write((dir / "steps.csv").string(), steps_csv_);
  if (!complete) return;
  std::ostringstream json;
  json << "{\n  \"runtime\": " << json_quote(config_.runtime) << ",\n  \"status\": \"complete\",\n  \"config\": {";
  const char* sep = "";
  for (const auto& [k, v] : config_.raw) {
    if (k == "lrs") continue;  // thousands of numbers; they are in steps.csv
    json << sep << "\n    " << json_quote(k) << ": " << json_quote(v);
    sep = ",";
  }
  json << "\n  },\n  \"env\": " << to_json(env_report()) << ",\n  \"fingerprint\": " << json_quote(model_.fingerprint())
       << ",\n  \"final\": {\"epochs\": " << config_.epochs << ", \"steps\": " << step_
       << ", \"wall_time\": " << format_double(wall_offset_) << ", \"test_loss\": " << format_double(last_eval.loss)
       << ", \"test_top_1\": " << format_double(last_eval.top1)
       << ", \"train_loss\": " << format_double(losses_.empty() ? 0.0 : losses_.back()) << "}\n}\n";
  atomic_write((dir / "run.json").string(), json.str());
}

bool Trainer::run() {
  namespace F = torch::nn::functional;
  const auto loss_options = F::CrossEntropyFuncOptions().label_smoothing(config_.label_smoothing);
  const int64_t steps = train_loader_->size();
  const fs::path dir(config_.run_dir);
  EvalResult last_eval;
  set_progress({"train", start_epoch_, config_.epochs, 0, steps, 0, 0});
  for (int64_t epoch = start_epoch_; epoch < config_.epochs; ++epoch) {
    model_.train(true);
    const auto epoch_start = Clock::now();
    train_loader_->start_epoch(epoch);
    double loss_sum = 0, data_s = 0, forward_s = 0, backward_s = 0, optimizer_s = 0;
    int64_t correct = 0, seen = 0, step_in_epoch = 0;
    double lr = 0;
    while (true) {
      if (stop_.load()) {
        set_progress({"interrupted", epoch, config_.epochs, step_in_epoch, steps, 0, 0});
        return false;
      }
      auto t0 = Clock::now();
      auto batch = train_loader_->next();
      if (!batch) break;
      auto x = batch->inputs.to(device_);
      auto y = batch->labels.to(device_);
      sync_device(device_);
      const double t_data = seconds_since(t0);
      lr = config_.lrs[step_];
      static_cast<torch::optim::SGDOptions&>(optimizer_->param_groups()[0].options()).lr(lr);
      optimizer_->zero_grad(true);
      auto t1 = Clock::now();
      auto logits = model_.module().forward({x}).toTensor();
      auto loss = F::cross_entropy(logits, y, loss_options);
      sync_device(device_);
      const double t_forward = seconds_since(t1);
      auto t2 = Clock::now();
      loss.backward();
      sync_device(device_);
      const double t_backward = seconds_since(t2);
      auto t3 = Clock::now();
      optimizer_->step();
      sync_device(device_);
      const double t_optimizer = seconds_since(t3);
      const double loss_value = loss.item<double>();
      const int64_t n = y.size(0);
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      loss_sum += loss_value * static_cast<double>(n);
      seen += n;
      data_s += t_data, forward_s += t_forward, backward_s += t_backward, optimizer_s += t_optimizer;
      losses_.push_back(loss_value);
      steps_csv_ += std::to_string(epoch + 1) + "," + std::to_string(step_ + 1) + "," + format_double(lr) + "," +
                    format_double(loss_value) + "," + std::to_string(n) + "," + fixed6(t_data) + "," +
                    fixed6(t_forward) + "," + fixed6(t_backward) + "," + fixed6(t_optimizer) + "\n";
      ++step_, ++step_in_epoch;
      set_progress({"train", epoch, config_.epochs, step_in_epoch, steps, loss_value,
                    static_cast<double>(seen) / seconds_since(epoch_start)});
    }
    const double epoch_time = seconds_since(epoch_start);
    const bool eval_now = (epoch + 1) % config_.eval_every == 0 || epoch + 1 == config_.epochs;
    const auto eval_start = Clock::now();
    if (eval_now) {
      set_progress({"eval", epoch, config_.epochs, steps, steps, 0, 0});
      last_eval = evaluate(model_, *test_loader_, device_);
    }
    const double eval_time = eval_now ? seconds_since(eval_start) : 0.0;
    wall_offset_ += epoch_time + eval_time;
    metrics_csv_ += std::to_string(epoch + 1) + "," + fixed6(wall_offset_) + "," + fixed6(epoch_time) + "," +
                    format_double(seen ? loss_sum / seen : 0) + "," + format_double(seen ? 100.0 * correct / seen : 0) +
                    "," + (eval_now ? format_double(last_eval.loss) : "") + "," +
                    (eval_now ? format_double(last_eval.top1) : "") + "," + fixed6(eval_time) + "," + fixed6(data_s) +
                    "," + fixed6(forward_s) + "," + fixed6(backward_s) + "," + fixed6(optimizer_s) + "," +
                    format_double(seen / epoch_time) + "," + format_double(lr) + "\n";
    save_checkpoint((dir / "checkpoint.pt").string(), epoch + 1, true);
    write_outputs(false, last_eval);
    set_progress({"train", epoch + 1, config_.epochs, steps, steps, 0, 0});
  }
  save_checkpoint((dir / "final.pt").string(), config_.epochs, false);
  write_outputs(true, last_eval);
  set_progress({"done", config_.epochs, config_.epochs, steps, steps, 0, 0});
  return true;
}

std::vector<int64_t> bare_train_steps(Model& model, const at::Tensor& inputs, const at::Tensor& labels, int64_t steps,
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
    auto loss = torch::nn::functional::cross_entropy(model.module().forward({x}).toTensor(), y);
    loss.backward();
    optimizer.step();
    sync_device(model.device());
    times.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  }
  return times;
}

namespace {
std::atomic<Trainer*> g_interruptible{nullptr};
void stop_on_signal(int) {
  if (Trainer* t = g_interruptible.load()) t->request_stop();  // atomic stores only: signal-safe
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
