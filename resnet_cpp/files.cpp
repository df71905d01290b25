#include "files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace resx {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void write_failed(const std::string& path, int error, const std::string& tmp) {
  if (!tmp.empty()) ::unlink(tmp.c_str());
  throw Error(path + ": cannot write (" + std::strerror(error) + ")");
}

std::string temp_name(const fs::path& target) {
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(std::random_device{}()));
  std::string name = ".";
  name += target.filename().string();
  name += std::string(".") + suffix + ".tmp";
  return (target.parent_path() / name).string();
}

}  // namespace

bool is_temp(const std::string& name) {
  return name.size() > 5 && name.front() == '.' && name.compare(name.size() - 4, 4, ".tmp") == 0;
}

void atomic_write(const std::string& path, const std::string& bytes) {
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (ec) write_failed(path, ec.value(), "");
  const std::string tmp = temp_name(target);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) write_failed(path, errno, "");
  const char* data = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      write_failed(path, error, tmp);
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  // ENOSPC can surface only here; and the rename must not overtake the data.
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    write_failed(path, error, tmp);
  }
  if (::close(fd) != 0) write_failed(path, errno, tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) write_failed(path, errno, tmp);
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": no such " + what);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string format_double(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  return buf;
}

double parse_double(const std::string& text, const std::string& what) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(what + ": '" + text + "' is not a number");
}

int64_t parse_int(const std::string& text, const std::string& what) {
  try {
    size_t used = 0;
    const auto v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(what + ": '" + text + "' is not an integer");
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, sep);) out.push_back(item);
  if (!text.empty() && text.back() == sep) out.emplace_back();
  return out;
}

}  // namespace resx
