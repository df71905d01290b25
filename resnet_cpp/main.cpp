// resx-cpp: the C++ runtime as a standalone program, with no Python in the process.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>
#include <iostream>
#include <string>

#include "env.h"
#include "model.h"
#include "train.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: resx-cpp env [--json] [--threads N]\n"
         "       resx-cpp inspect FILE.pt\n"
         "       resx-cpp train CONFIG.txt   (written by `resx train --runtime cpp-exe`)\n";
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

resx::Trainer* g_trainer = nullptr;

void on_sigint(int) {
  if (g_trainer != nullptr) g_trainer->request_stop();  // an atomic store: safe in a handler
}

// The same loop as the extension's, with no Python in the process. Exit 130 when interrupted.
int run_train(int argc, char** argv) {
  if (argc != 1) {
    std::cerr << "resx-cpp train: give exactly one CONFIG.txt\n";
    return 2;
  }
  resx::Trainer trainer(resx::TrainConfig::read(argv[0]));
  g_trainer = &trainer;
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  std::atomic<bool> done{false};
  std::thread reporter([&] {  // one progress line per second on stderr, for a person or a parent
    while (!done) {
      const auto p = trainer.progress();
      std::cerr << "progress " << p.phase << " epoch " << p.epoch + (p.phase == "train" ? 1 : 0) << "/" << p.epochs
                << " step " << p.step << "/" << p.steps << " loss " << p.loss << " img/s " << p.images_per_s << "\n";
      for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  bool complete = false;
  try {
    complete = trainer.run();
  } catch (...) {
    done = true;
    reporter.join();
    throw;
  }
  done = true;
  reporter.join();
  g_trainer = nullptr;
  if (!complete) {
    std::cerr << "resx-cpp train: interrupted; the last complete epoch's checkpoint is kept\n";
    return 130;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(std::cerr, 2);
  const std::string command = argv[1];
  try {
    if (command == "env") return run_env(argc - 2, argv + 2);
    if (command == "inspect") return run_inspect(argc - 2, argv + 2);
    if (command == "train") return run_train(argc - 2, argv + 2);
    if (command == "--help" || command == "-h") return usage(std::cout, 0);
  } catch (const std::exception& e) {
    std::cerr << "resx-cpp " << command << ": " << e.what() << '\n';
    return 1;
  }
  std::cerr << "resx-cpp: unknown command '" << command << "'\n";
  return usage(std::cerr, 2);
}
