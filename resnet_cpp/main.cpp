// resx-cpp: the C++ runtime as a standalone program, with no Python in the process.
#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "bench.h"
#include "env.h"
#include "model.h"
#include "train.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: resx-cpp env [--json] [--threads N]\n"
         "       resx-cpp inspect FILE.pt\n"
         "       resx-cpp train CONFIG.txt   (written by `resx train --runtime cpp-exe`)\n"
         "       resx-cpp bench-serve FILE.pt [DEVICE]   (timing commands on stdin, for `resx bench`)\n";
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

// The same loop as the extension's, with no Python in the process. Exit 130 when interrupted.
int run_train(int argc, char** argv) {
  if (argc != 1) {
    std::cerr << "resx-cpp train: give exactly one CONFIG.txt\n";
    return 2;
  }
  resx::Trainer trainer(resx::TrainConfig::read(argv[0]));
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
    complete = resx::run_interruptible(trainer);
  } catch (...) {
    done = true;
    reporter.join();
    throw;
  }
  done = true;
  reporter.join();
  if (!complete) {
    std::cerr << "resx-cpp train: interrupted; the last complete epoch's checkpoint is kept\n";
    return 130;
  }
  return 0;
}

// A long-lived timing server, so that `resx bench` can interleave this process's runs with the
// others' (A B A B ...) without paying a process start and a warm-up per round. One command per
// line on stdin, one answer per line on stdout:
//   threads N                  -> ok N            (intra-op threads)
//   env                        -> {json}
//   output B SEED              -> output v1,v2,...  (logits, "%.9g")
//   warmup B SEED W TOL MAX    -> warmup CALLS
//   time B SEED CALLS          -> ns t1 t2 ...
//   threads-run T SECONDS SEED -> calls CALLS WALL_NS
//   quit
int run_bench_serve(int argc, char** argv) {
  if (argc < 1 || argc > 2) {
    std::cerr << "resx-cpp bench-serve: give FILE.pt [DEVICE]\n";
    return 2;
  }
  const std::string device = argc == 2 ? argv[1] : "cpu";
  resx::Model model(argv[0], device);
  model.train(false);
  std::cout << "ready " << model.fingerprint() << ' ' << model.weights_hash() << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    try {
      if (command == "quit") break;
      if (command == "threads") {
        int n = 0;
        in >> n;
        resx::set_num_threads(n, 0);
        std::cout << "ok " << at::get_num_threads() << std::endl;
      } else if (command == "env") {
        std::cout << resx::to_json(resx::env_report()) << std::endl;
      } else if (command == "output") {
        int64_t batch = 0;
        uint64_t seed = 0;
        in >> batch >> seed;
        c10::InferenceMode guard;
        auto out = model.forward(resx::make_input(batch, seed, model.device())).to(at::kCPU).contiguous();
        std::cout << "output";
        const char* sep = " ";
        char buf[32];
        for (int64_t i = 0; i < out.numel(); ++i) {
          std::snprintf(buf, sizeof buf, "%.9g", out.data_ptr<float>()[i]);
          std::cout << sep << buf;
          sep = ",";
        }
        std::cout << std::endl;
      } else if (command == "warmup") {
        int64_t batch = 0, window = 0, max_calls = 0;
        uint64_t seed = 0;
        double tolerance = 0;
        in >> batch >> seed >> window >> tolerance >> max_calls;
        const auto x = resx::make_input(batch, seed, model.device());
        std::cout << "warmup " << resx::warm_up(model, x, {window, tolerance, max_calls}) << std::endl;
      } else if (command == "time") {
        int64_t batch = 0, calls = 0;
        uint64_t seed = 0;
        in >> batch >> seed >> calls;
        const auto times = resx::time_forward(model, resx::make_input(batch, seed, model.device()), calls);
        std::cout << "ns";
        for (auto t : times) std::cout << ' ' << t;
        std::cout << std::endl;
      } else if (command == "threads-run") {
        int threads = 0;
        double seconds = 0;
        uint64_t seed = 0;
        in >> threads >> seconds >> seed;
        const auto r = resx::time_threads(model, resx::make_input(1, seed, model.device()), threads, seconds);
        std::cout << "calls " << r.calls << ' ' << r.wall_ns << std::endl;
      } else {
        std::cout << "error unknown command '" << command << "'" << std::endl;
      }
    } catch (const std::exception& e) {
      std::string what = e.what();
      std::cout << "error " << what.substr(0, what.find('\n')) << std::endl;
    }
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
    if (command == "bench-serve") return run_bench_serve(argc - 2, argv + 2);
    if (command == "--help" || command == "-h") return usage(std::cout, 0);
  } catch (const std::exception& e) {
    std::cerr << "resx-cpp " << command << ": " << e.what() << '\n';
    return 1;
  }
  std::cerr << "resx-cpp: unknown command '" << command << "'\n";
  return usage(std::cerr, 2);
}
