// The bench worker of the ExecuTorch runtimes in C++ (cpp-executorch through resx._executorch, GIL
// released; exe-executorch as resx-executorch, a process that loads no libtorch): the protocol's requests
// answered as resx::Worker answers them for LibTorch's engines, on an ExecuTorch program. With no ATen
// to make the bench's input, it takes each input from the bench (the Input request) and hashes what it got.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "executorch.h"
#include "json.h"
#include "protocol.h"

namespace resx::et {

// What this runtime reports of itself and the machine (resx.env's keys where they apply).
std::map<std::string, std::string> env_report();

class Worker {
 public:
  explicit Worker(const protocol::Open& open);
  // One request {"cmd": NAME, ...} -> its answer; a resx::Error or a malformed request throws.
  Json handle(const Json& request);
  double load_seconds() const { return load_seconds_; }

  Program& program() { return *program_; }
  const EngineOptions& options() const { return options_; }
  // The input of (batch, seed) the bench sent; resx::Error when it sent none.
  const std::vector<float>& input(int64_t batch, uint64_t seed) const;
  // Keeps the input the bench sent; its SHA-1.
  std::string take_input(const protocol::Input& given);

 private:
  EngineOptions options_;
  std::unique_ptr<Program> program_;
  double load_seconds_ = 0;
  std::map<std::pair<int64_t, uint64_t>, std::vector<float>> inputs_;
};

}  // namespace resx::et
