// ExecuTorch's C++ runtime seen from resx: an exported program (.pte, `resx export -o FILE.pte`) run by
// ExecuTorch's Module API with XNNPACK's delegate, no libtorch. Mirrors resx.export.executorch.Program.
// This header shows neither ExecuTorch's nor torch's: ExecuTorch vendors c10 headers of its own, which
// must not meet torch's in one translation unit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "json.h"

namespace resx::et {

inline constexpr const char* kFormat = "resx-executorch/1";
inline constexpr const char* kManifestMethod = "resx_manifest";

// The ExecuTorch release resx was built against (the installed wheel's, from meson.build).
std::string version();

class Program {
 public:
  explicit Program(const std::string& path);
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  // The forward of a float32 batch [batch, shape...] in C order; the float32 output, flattened. A loaded
  // method owns its planned buffers: one call at a time (concurrent callers queue, as in Python).
  std::vector<float> forward(const float* data, int64_t batch, const std::vector<int64_t>& shape);
  // The largest batch ExecuTorch planned the input's buffer for (0: unknown); a larger batch is refused.
  int64_t max_batch() const;
  // The resx manifest the program carries (its resx_manifest method); resx::Error for a program without.
  Json manifest() const;

  // XNNPACK's threadpool, shared by the process: resized, then the program loaded again (the delegate
  // keeps the pool it was loaded with). The count it now has.
  int set_threads(int n);
  static int threads();

 private:
  void load();
  struct Impl;
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace resx::et
