// The run directory in the C++ runtime: its files, their columns, its lock and its checkpoints.
// Mirrors resx.rundir (resnet_py/resx/rundir.py), which owns the names, formats and columns and hands them
// over in the run's config.json (RunFiles below), so none of them is retyped here.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "json.h"

namespace resx {

// The records are fixed structs in both languages; `fields` lists each field once, in order, with its
// name, and JSON, the CSV files and tests/test_records.py (which compares them with resx.rundir's
// dataclasses) all go through it.

// One optimizer step (resx.rundir.StepRecord). epoch and step count from 1; step over the whole run.
struct StepRecord {
  int64_t epoch = 0, step = 0;
  double lr = 0, loss = 0;
  int64_t batch_size = 0, correct = 0;
  double data_s = 0, forward_s = 0, backward_s = 0, optimizer_s = 0;

  template <typename R, typename F>
  static void fields(R& r, F&& f) {
    f("epoch", r.epoch), f("step", r.step), f("lr", r.lr), f("loss", r.loss), f("batch_size", r.batch_size);
    f("correct", r.correct), f("data_s", r.data_s), f("forward_s", r.forward_s), f("backward_s", r.backward_s);
    f("optimizer_s", r.optimizer_s);
  }
};

// One epoch (resx.rundir.EpochRecord); test_* are empty in epochs without evaluation.
struct EpochRecord {
  int64_t epoch = 0;
  double wall_time = 0, epoch_time = 0, train_loss = 0, train_top_1 = 0;
  std::optional<double> test_loss, test_top_1;
  double eval_time = 0, data_s = 0, forward_s = 0, backward_s = 0, optimizer_s = 0, images_per_s = 0, lr = 0;

  template <typename R, typename F>
  static void fields(R& r, F&& f) {
    f("epoch", r.epoch), f("wall_time", r.wall_time), f("epoch_time", r.epoch_time), f("train_loss", r.train_loss);
    f("train_top_1", r.train_top_1), f("test_loss", r.test_loss), f("test_top_1", r.test_top_1);
    f("eval_time", r.eval_time), f("data_s", r.data_s), f("forward_s", r.forward_s), f("backward_s", r.backward_s);
    f("optimizer_s", r.optimizer_s), f("images_per_s", r.images_per_s), f("lr", r.lr);
  }
};

template <typename R>
Json record_json(const R& record) {
  Json j = Json::object();
  R::fields(record, [&](const char* name, const auto& value) { j[name] = value; });
  return j;
}

template <typename R>
R record_from(const Json& j, const std::string& source) {
  R record;
  R::fields(record, [&](const char* name, auto& value) {
    using T = std::decay_t<decltype(value)>;
    value = get<T>(j, name, source);
  });
  return record;
}

// (name, kind) of every field: int, float, or float? (may be missing). What the drift test compares.
template <typename R>
std::vector<std::pair<std::string, std::string>> record_schema() {
  std::vector<std::pair<std::string, std::string>> out;
  R record;
  R::fields(record, [&](const char* name, const auto& value) {
    using T = std::decay_t<decltype(value)>;
    out.emplace_back(name, std::is_same_v<T, int64_t> ? "int" : std::is_same_v<T, double> ? "float" : "float?");
  });
  return out;
}

// A CSV file of records by column name; its layout comes from resx.rundir.Table (config.json's
// run_files): {"file": NAME, "columns": [{"header", "field", "kind"}, ...]}, kind int, exact (%.17g) or
// seconds (%.6f). `fields`: the record's fields, which every column must name.
class Table {
 public:
  struct Column {
    std::string header, field, kind;
  };
  Table(const Json& spec, const std::vector<std::pair<std::string, std::string>>& fields, const std::string& source);
  const std::string& file() const { return file_; }
  std::string format(const std::vector<Json>& rows) const;
  std::vector<Json> parse(const std::string& text, const std::string& source) const;

 private:
  std::string file_;
  std::vector<Column> columns_;
};

// The run directory's file names and formats, from resx.rundir.RunDir.cpp_files() (config.json's run_files).
struct RunFiles {
  std::string checkpoint_format, checkpoint, final, run, lock;
  Json steps, metrics;  // Table specs
  static RunFiles from(const Json& j, const std::string& source);
};

// A dict of strings, numbers and tensors written by torch.save or torch::pickle_save (torch::pickle_load);
// `what` names the kind of file in the errors.
c10::impl::GenericDict read_dict(const std::string& path, const std::string& what);

// A checkpoint: a dict that torch.load(weights_only=True) and torch::pickle_load both read; its keys and
// their types are checked (resx.rundir.read_checkpoint).
c10::impl::GenericDict read_checkpoint(const std::string& path, const std::string& format);
c10::Dict<std::string, at::Tensor> tensor_dict(const c10::impl::GenericDict& checkpoint, const std::string& key,
                                               const std::string& path);
// Names, shapes and dtypes against the model's, before anything is copied (copy_ would broadcast).
void check_tensors(const std::string& path, const std::string& what,
                   const std::vector<std::pair<std::string, at::Tensor>>& expected,
                   const c10::Dict<std::string, at::Tensor>& got, bool partial = false);
// A checkpoint continues a run only if that run's config made it (resx.rundir.check_resumable).
void check_resumable(const std::string& path, const c10::impl::GenericDict& checkpoint, const std::string& fingerprint,
                     const std::string& config_digest, int64_t steps_per_epoch, int64_t epochs);

// The run directory, locked for the life of this object: it adopts the lock that the process which
// prepared the run holds on `lock_fd` (resx train), or takes it itself (resx-cpp train run by hand).
// writes=false: a rank other than 0 of a data-parallel run, which reads it and neither locks nor writes.
class RunDir {
 public:
  RunDir(std::string path, RunFiles files, int lock_fd, bool writes = true);
  ~RunDir();
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;

  std::string file(const std::string& name) const;
  const RunFiles& files() const { return files_; }
  const Table& steps() const { return steps_; }
  const Table& metrics() const { return metrics_; }

  void write_history(const std::vector<StepRecord>& steps, const std::vector<EpochRecord>& epochs) const;
  void write_run_json(const Json& info) const;
  void save_checkpoint(const std::string& name, const c10::impl::GenericDict& checkpoint) const;

 private:
  void take_lock();
  void remove_temporaries() const;

  std::string path_;
  RunFiles files_;
  Table steps_, metrics_;
  int owned_lock_fd_ = -1;  // a lock this object took (not one it adopted)
};

}  // namespace resx
