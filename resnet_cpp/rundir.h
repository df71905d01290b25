// The run directory in the C++ runtime: its files, their columns, its lock and its checkpoints.
// Mirrors resx.rundir (resnet_py/rundir.py), which owns the names, formats and columns and hands them
// over in the run's config.txt (RunFiles below), so none of them is retyped here.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace resx {

// A record's fields by name: an integer, a double, or nothing (an epoch without evaluation).
using Value = std::variant<std::monostate, int64_t, double>;
using Fields = std::map<std::string, Value>;

// One optimizer step (resx.rundir.StepRecord). epoch and step count from 1; step over the whole run.
struct StepRecord {
  int64_t epoch = 0, step = 0;
  double lr = 0, loss = 0;
  int64_t batch_size = 0, correct = 0;
  double data_s = 0, forward_s = 0, backward_s = 0, optimizer_s = 0;

  Fields fields() const;
  static StepRecord from(const Fields& f);
};

// One epoch (resx.rundir.EpochRecord); test_* are empty in epochs without evaluation.
struct EpochRecord {
  int64_t epoch = 0;
  double wall_time = 0, epoch_time = 0, train_loss = 0, train_top_1 = 0;
  std::optional<double> test_loss, test_top_1;
  double eval_time = 0, data_s = 0, forward_s = 0, backward_s = 0, optimizer_s = 0, images_per_s = 0, lr = 0;

  Fields fields() const;
  static EpochRecord from(const Fields& f);
};

// A CSV file of records by column name; `spec` is resx.rundir.Table.spec(): header:field:kind,...
class Table {
 public:
  struct Column {
    std::string header, field, kind;  // kind: int, exact (%.17g), seconds (%.6f)
  };
  Table(std::string file, const std::string& spec, const Fields& known);
  const std::string& file() const { return file_; }
  std::string format(const std::vector<Fields>& rows) const;
  std::vector<Fields> parse(const std::string& text, const std::string& source) const;

 private:
  std::string file_;
  std::vector<Column> columns_;
};

// What resx.rundir.RunDir.cpp_keys() passes in config.txt.
struct RunFiles {
  std::string checkpoint_format, steps_file, steps_columns, metrics_file, metrics_columns, checkpoint_file, final_file,
      run_file, lock_file;
};

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
  void write_run_json(const std::string& json) const;
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
