// What the C++ runtime sees of LibTorch and the machine: the C++ half of `resx env`.
#pragma once

#include <map>
#include <string>

namespace resx {

// Keys mirror resx.env.python_env(); values are strings so both sides compare as text.
using EnvReport = std::map<std::string, std::string>;

EnvReport env_report();

void set_num_threads(int intra_op, int inter_op);

// Deterministic algorithms, cuDNN deterministic and not benchmarking, and the cuBLAS workspace that
// deterministic cuBLAS needs; mirrors resx.env.set_deterministic.
void set_deterministic(bool on);

}  // namespace resx
