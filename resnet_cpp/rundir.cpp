#include "rundir.h"

#include <torch/serialize.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "files.h"

namespace resx {
namespace fs = std::filesystem;

namespace {

std::string format_cell(const Table::Column& c, const Json& value) {
  if (value.is_null()) return "";
  if (c.kind == "int") return std::to_string(value.get<int64_t>());
  const auto d = value.get<double>();
  if (c.kind == "exact") return format_double(d);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.6f", d);
  return buf;
}

}  // namespace

Table::Table(const Json& spec, const std::vector<std::pair<std::string, std::string>>& fields,
             const std::string& source)
    : file_(get<std::string>(spec, "file", source)) {
  const auto what = source + " " + file_ + " columns";
  for (const auto& c : get<std::vector<Json>>(spec, "columns", source)) {
    Column column{get<std::string>(c, "header", what), get<std::string>(c, "field", what),
                  get<std::string>(c, "kind", what)};
    if (column.kind != "int" && column.kind != "exact" && column.kind != "seconds") {
      throw Error(what + ": kind '" + column.kind + "' is not int, exact or seconds");
    }
    const bool known =
        std::any_of(fields.begin(), fields.end(), [&](const auto& f) { return f.first == column.field; });
    if (!known) throw Error(what + ": field '" + column.field + "' is unknown to resx-cpp");
    columns_.push_back(std::move(column));
  }
  if (columns_.empty()) throw Error(what + ": none given");
}

std::string Table::format(const std::vector<Json>& rows) const {
  std::string out;
  for (size_t i = 0; i < columns_.size(); ++i) out += (i ? "," : "") + columns_[i].header;
  out += '\n';
  for (const auto& row : rows) {
    for (size_t i = 0; i < columns_.size(); ++i) {
      if (i) out += ',';
      out += format_cell(columns_[i], row.value(columns_[i].field, Json()));
    }
    out += '\n';
  }
  return out;
}

std::vector<Json> Table::parse(const std::string& text, const std::string& source) const {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line)) throw Error(source + ": not a resx " + file_ + " (empty)");
  const auto header = split(line, ',');
  std::vector<size_t> index;
  for (const auto& c : columns_) {
    const auto it = std::find(header.begin(), header.end(), c.header);
    if (it == header.end()) throw Error(source + ": not a resx " + file_ + " (no column " + c.header + ")");
    index.push_back(static_cast<size_t>(it - header.begin()));
  }
  std::vector<Json> rows;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto cells = split(line, ',');
    if (cells.size() != header.size()) throw Error(source + ": malformed " + file_ + " row '" + line + "'");
    Json row = Json::object();
    for (size_t i = 0; i < columns_.size(); ++i) {
      const auto& cell = cells[index[i]];
      const auto& c = columns_[i];
      if (cell.empty()) {
        row[c.field] = nullptr;
      } else if (c.kind == "int") {
        row[c.field] = parse_int(cell, source + " " + c.header);
      } else {
        row[c.field] = parse_double(cell, source + " " + c.header);
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

RunFiles RunFiles::from(const Json& j, const std::string& source) {
  const auto what = source + " run_files";
  return {get<std::string>(j, "checkpoint_format", what),
          get<std::string>(j, "checkpoint", what),
          get<std::string>(j, "final", what),
          get<std::string>(j, "run", what),
          get<std::string>(j, "lock", what),
          object(j, "steps", what),
          object(j, "metrics", what)};
}

// ------------------------------------------------------------------------------------ checkpoints

c10::impl::GenericDict read_dict(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": no such " + what);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    std::string reason = e.what_without_backtrace();
    throw Error(path + ": not a " + what + " (" + reason.substr(0, reason.find('\n')) + ")");
  }
  if (!value.isGenericDict()) throw Error(path + ": not a " + what + " (not a dict)");
  return value.toGenericDict();
}

c10::impl::GenericDict read_checkpoint(const std::string& path, const std::string& format) {
  if (!std::filesystem::is_regular_file(path)) throw Error(path + ": no such checkpoint");
  auto dict = read_dict(path, "resx checkpoint");
  auto has = [&](const char* key, bool (c10::IValue::*is)() const) {
    return dict.contains(key) && (dict.at(key).*is)();
  };
  if (!has("format", &c10::IValue::isString) || dict.at("format").toStringRef() != format) {
    throw Error(path + ": not a resx checkpoint (no format " + format + ")");
  }
  // The keys resx.rundir.read_checkpoint checks, with their types.
  const std::vector<std::pair<const char*, bool (c10::IValue::*)() const>> keys = {
      {"fingerprint", &c10::IValue::isString},
      {"model_config", &c10::IValue::isString},
      {"config_digest", &c10::IValue::isString},
      {"steps_per_epoch", &c10::IValue::isInt},
      {"epoch", &c10::IValue::isInt},
      {"step", &c10::IValue::isInt},
      {"wall_time", &c10::IValue::isDouble},
      {"model", &c10::IValue::isGenericDict},
      {"momentum", &c10::IValue::isGenericDict},
      {"metrics_csv", &c10::IValue::isString},
      {"steps_csv", &c10::IValue::isString}};
  for (const auto& [key, is] : keys) {
    if (!has(key, is)) throw Error(path + ": malformed resx checkpoint ('" + key + "' missing or of another type)");
  }
  return dict;
}

c10::Dict<std::string, at::Tensor> tensor_dict(const c10::impl::GenericDict& checkpoint, const std::string& key,
                                               const std::string& path) {
  c10::Dict<std::string, at::Tensor> out;
  for (const auto& item : checkpoint.at(key).toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor()) {
      throw Error(path + ": malformed resx checkpoint ('" + key + "' holds something other than named tensors)");
    }
    out.insert(item.key().toStringRef(), item.value().toTensor());
  }
  return out;
}

void check_tensors(const std::string& path, const std::string& what,
                   const std::vector<std::pair<std::string, at::Tensor>>& expected,
                   const c10::Dict<std::string, at::Tensor>& got, bool partial) {
  std::map<std::string, at::Tensor> want(expected.begin(), expected.end());
  std::vector<std::string> missing, extra;
  if (!partial) {
    for (const auto& [name, t] : want) {
      if (!got.contains(name)) missing.push_back(name);
    }
  }
  for (const auto& item : got) {
    if (!want.count(item.key())) extra.push_back(item.key());
  }
  if (!missing.empty() || !extra.empty()) {
    std::string names;
    auto all = missing;
    all.insert(all.end(), extra.begin(), extra.end());
    for (size_t i = 0; i < all.size() && i < 3; ++i) names += (i ? ", " : "") + all[i];
    throw Error(path + ": " + what + " tensors do not match the model (" + std::to_string(missing.size()) +
                " missing, " + std::to_string(extra.size()) + " unknown: " + names + ")");
  }
  for (const auto& item : got) {
    const auto& t = item.value();
    const auto& w = want.at(item.key());
    if (t.sizes() != w.sizes() || t.scalar_type() != w.scalar_type()) {
      std::ostringstream msg;
      msg << path << ": " << what << " tensor '" << item.key() << "' is " << t.sizes() << ' '
          << c10::toString(t.scalar_type()) << ", the model's is " << w.sizes() << ' '
          << c10::toString(w.scalar_type());
      throw Error(msg.str());
    }
  }
}

void check_resumable(const std::string& path, const c10::impl::GenericDict& checkpoint, const std::string& fingerprint,
                     const std::string& config_digest, int64_t steps_per_epoch, int64_t epochs) {
  const auto& fp = checkpoint.at("fingerprint").toStringRef();
  if (fp != fingerprint) {
    throw Error(path + ": weights are for another architecture (fingerprint " + fp.substr(0, 12) +
                " != " + fingerprint.substr(0, 12) + ")");
  }
  if (checkpoint.at("config_digest").toStringRef() != config_digest ||
      checkpoint.at("steps_per_epoch").toInt() != steps_per_epoch) {
    throw Error(path + ": made by another configuration than this run's; start a new run with -o");
  }
  const auto epoch = checkpoint.at("epoch").toInt(), step = checkpoint.at("step").toInt();
  if (epoch < 0 || epoch > epochs || step != epoch * steps_per_epoch) {
    throw Error(path + ": position (epoch " + std::to_string(epoch) + ", step " + std::to_string(step) +
                ") does not fit this run (" + std::to_string(epochs) + " epochs of " + std::to_string(steps_per_epoch) +
                " steps)");
  }
}

// ----------------------------------------------------------------------------------------- RunDir

RunDir::RunDir(std::string path, RunFiles files, int lock_fd, bool writes)
    : path_(std::move(path)),
      files_(std::move(files)),
      steps_(files_.steps, record_schema<StepRecord>(), "run_files"),
      metrics_(files_.metrics, record_schema<EpochRecord>(), "run_files") {
  if (!fs::is_directory(path_)) throw Error(path_ + ": no such run directory (prepare it with `resx train`)");
  if (!writes) return;
  if (lock_fd < 0) {
    take_lock();
    return;
  }
  struct stat held{}, lock{};
  if (::fstat(lock_fd, &held) != 0 || ::stat(file(files_.lock).c_str(), &lock) != 0 || held.st_dev != lock.st_dev ||
      held.st_ino != lock.st_ino) {
    throw Error("lock fd " + std::to_string(lock_fd) + " is not " + file(files_.lock) +
                "'s; run resx-cpp train without RESX_LOCK_FD");
  }
}

RunDir::~RunDir() {
  if (owned_lock_fd_ >= 0) ::close(owned_lock_fd_);
}

void RunDir::take_lock() {
  const auto path = file(files_.lock);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) throw Error(path + ": cannot open (" + std::string(std::strerror(errno)) + ")");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {0};
    const auto n = ::pread(fd, holder, sizeof holder - 1, 0);
    std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "unknown";
    pid.erase(pid.find_last_not_of(" \n") + 1);
    ::close(fd);
    throw Error(path_ + ": in use by another resx run (pid " + pid +
                "); wait for it to end or choose another run directory");
  }
  const auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    ::close(fd);
    throw Error(path + ": cannot write (" + std::string(std::strerror(errno)) + ")");
  }
  owned_lock_fd_ = fd;
  remove_temporaries();
}

void RunDir::remove_temporaries() const {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path_, ec)) {
    if (is_temp(entry.path().filename().string())) fs::remove(entry.path(), ec);
  }
}

std::string RunDir::file(const std::string& name) const { return (fs::path(path_) / name).string(); }

void RunDir::write_history(const std::vector<StepRecord>& steps, const std::vector<EpochRecord>& epochs) const {
  std::vector<Json> step_rows, epoch_rows;
  for (const auto& r : steps) step_rows.push_back(record_json(r));
  for (const auto& r : epochs) epoch_rows.push_back(record_json(r));
  atomic_write(file(steps_.file()), steps_.format(step_rows));
  atomic_write(file(metrics_.file()), metrics_.format(epoch_rows));
}

void RunDir::write_run_json(const Json& info) const { atomic_write(file(files_.run), info.dump(2) + "\n"); }

void RunDir::save_checkpoint(const std::string& name, const c10::impl::GenericDict& checkpoint) const {
  const auto bytes = torch::pickle_save(checkpoint);
  atomic_write(file(name), std::string(bytes.begin(), bytes.end()));
}

}  // namespace resx
