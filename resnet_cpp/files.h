// File helpers of the C++ runtime: the user-facing error, atomic writes, and the text parsers the CSV
// files need. Mirrors resx.files (resnet_py/resx/files.py).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace resx {

// A problem the user can fix (a bad input, a full disk): one line naming the thing and the fix. The
// extension raises it as a resx.errors.ResxError, resx-cpp exits 1 with it; other exceptions are bugs.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Write to .NAME.XXXXXXXX.tmp beside PATH (mode 0666 less the umask), fsync, then rename: readers never
// see a partial file, and a failure names the file and the cause and removes the temporary. Mirrors
// resx.files.atomic_write.
void atomic_write(const std::string& path, const std::string& bytes);
bool is_temp(const std::string& name);
std::string read_file(const std::string& path, const std::string& what);

// "%.17g": the shortest text that gives back the same double (Python writes the same digits).
std::string format_double(double value);

// Whole-text parsers: "0.1abc" or "" is an error naming `what`.
double parse_double(const std::string& text, const std::string& what);
int64_t parse_int(const std::string& text, const std::string& what);

// The fields of text between separators ("a,,b" gives "a", "", "b"; a trailing separator, a last "").
std::vector<std::string> split(const std::string& text, char sep);

}  // namespace resx
