// What a runtime reports of the machine it runs on, torch or not (resx::env_report, the ExecuTorch
// runtime's report). Mirrors resx.env.cpu_model and load_average.
#pragma once

#include <string>

namespace resx {

std::string cpu_model();
std::string cpu_cores();
std::string load_average();  // "1.00 0.50 0.25", or "" where the system has none

}  // namespace resx
