// resx-cpp: the C++ runtime as a standalone program, with no Python in the process.
#include <cstring>
#include <iostream>
#include <string>

#include "env.h"
#include "model.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: resx-cpp env [--json] [--threads N]\n"
         "       resx-cpp inspect FILE.pt\n";
  return code;
}

int run_env(int argc, char** argv) {
  bool json = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      resx::set_num_threads(std::stoi(argv[++i]), 0);
    } else {
      std::cerr << "resx-cpp env: unknown argument '" << argv[i] << "' (try --json or --threads N)\n";
      return 2;
    }
  }
  const auto report = resx::env_report();
  if (json) {
    std::cout << resx::to_json(report) << '\n';
  } else {
    for (const auto& [key, value] : report) std::cout << key << ": " << value << '\n';
  }
  return 0;
}

// Prints the manifest and what C++ recomputes of it; exit 1 when they disagree.
int run_inspect(int argc, char** argv) {
  if (argc != 1) {
    std::cerr << "resx-cpp inspect: give exactly one FILE.pt\n";
    return 2;
  }
  resx::Model model(argv[0]);
  if (!model.has_manifest()) {
    std::cerr << "resx-cpp inspect: " << argv[0] << ": no resx manifest (foreign TorchScript file)\n";
    return 1;
  }
  std::cout << model.manifest_json() << '\n'
            << "fingerprint (c++): " << model.fingerprint() << '\n'
            << "weights_hash (c++): " << model.weights_hash() << '\n'
            << "parameters (c++): " << model.parameter_count() << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(std::cerr, 2);
  const std::string command = argv[1];
  try {
    if (command == "env") return run_env(argc - 2, argv + 2);
    if (command == "inspect") return run_inspect(argc - 2, argv + 2);
    if (command == "--help" || command == "-h") return usage(std::cout, 0);
  } catch (const std::exception& e) {
    std::cerr << "resx-cpp " << command << ": " << e.what() << '\n';
    return 1;
  }
  std::cerr << "resx-cpp: unknown command '" << command << "'\n";
  return usage(std::cerr, 2);
}
