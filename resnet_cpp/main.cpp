// resx-cpp: the C++ runtime as a standalone program, with no Python in the process.
#include <ATen/Parallel.h>

#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "bench.h"
#include "engine.h"
#include "env.h"
#include "io.h"
#include "model.h"
#include "train.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: resx-cpp env [--json] [--threads N]\n"
         "       resx-cpp inspect FILE.pt|FILE.pt2\n"
         "       resx-cpp train CONFIG.txt   (written by `resx train --runtime cpp-exe`)\n"
         "       resx-cpp bench-serve FILE [--device D] [--engine script|frozen|aoti] [--dtype fp32|bf16]\n"
         "                            [--channels-last] [--runners N] [--deterministic] [--cuda-graphs]\n"
         "                            (timing commands on stdin, for `resx bench`)\n";
  return code;
}

int run_env(int argc, char** argv) {
  bool json = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      resx::set_num_threads(static_cast<int>(resx::parse_int(argv[++i], "--threads")), 0);
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

// Prints what C++ recomputes of a file beside what its manifest states; exit 1 on any disagreement.
int run_inspect(int argc, char** argv) {
  if (argc != 1) {
    std::cerr << "resx-cpp inspect: give exactly one FILE.pt or FILE.pt2\n";
    return 2;
  }
  const std::string path = argv[0];
  std::map<std::string, std::string> claims, found;
  if (path.size() > 4 && path.substr(path.size() - 4) == ".pt2") {  // an AOTInductor package: no graph
    std::string manifest;
    found = resx::describe_package(path, &manifest);
    const auto stated = resx::manifest_claims(manifest, path);
    for (const char* key : {"fingerprint", "weights_hash", "parameters"}) {
      std::cout << key << ": " << stated.at(key) << "  (recorded at export: compiled code shows neither graph nor "
                << "weights; its outputs prove them)\n";
    }
    claims = {{"runs", "yes"}};
  } else {
    resx::Model model(path);
    if (!model.has_manifest()) throw resx::Error(path + ": no resx manifest (a foreign TorchScript file)");
    claims = resx::manifest_claims(model.manifest_json(), path);
    found = resx::describe(model, claims.at("model.name"));
  }
  std::string mismatches;
  for (const auto& [key, claimed] : claims) {
    const auto it = found.find(key);
    const std::string value = it == found.end() ? "(absent)" : it->second;
    const bool same = value == claimed;
    std::cout << key << ": " << value << (same ? "" : "  MISMATCH, manifest: " + claimed) << '\n';
    if (!same) mismatches += (mismatches.empty() ? "" : ", ") + key;
  }
  if (!mismatches.empty()) throw resx::Error(path + ": " + mismatches + " do not match the manifest; re-export it");
  return 0;
}

// A child of resx (RESX_PARENT_PID set) gets SIGTERM when its parent dies, so it never outlives it;
// false when the parent is already gone.
bool die_with_parent() {
  const char* parent = std::getenv("RESX_PARENT_PID");
  if (parent == nullptr) return true;
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  return std::to_string(::getppid()) == parent;
}

// The run directory's lock that resx train holds and passes down, or -1: take it here.
int inherited_lock_fd() {
  const char* fd = std::getenv("RESX_LOCK_FD");
  return fd ? static_cast<int>(resx::parse_int(fd, "RESX_LOCK_FD")) : -1;
}

// The same loop as the extension's, with no Python in the process. SIGINT or SIGTERM stops it after the
// current step: exit 128 + the signal, like a process the signal ended.
int run_train(int argc, char** argv) {
  if (argc != 1) {
    std::cerr << "resx-cpp train: give exactly one CONFIG.txt\n";
    return 2;
  }
  if (!die_with_parent()) return 128 + SIGTERM;
  resx::Trainer trainer(resx::TrainConfig::read(argv[0]), inherited_lock_fd());
  std::atomic<bool> done{false};
  std::thread reporter([&] {  // one progress line per 0.2 s on stderr, for a person or a parent; one at the end
    for (bool last = false; !last;) {
      last = done;
      const auto p = trainer.progress();
      std::ostringstream line;  // the field names of resx.train.Progress
      line << "progress phase=" << p.phase << " epoch=" << p.epoch << " epochs=" << p.epochs << " step=" << p.step
           << " steps=" << p.steps << " loss=" << resx::format_double(p.loss)
           << " images_per_s=" << resx::format_double(p.images_per_s) << '\n';
      std::cerr << line.str() << std::flush;
      for (int i = 0; i < 2 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  struct Join {
    std::atomic<bool>& done;
    std::thread& t;
    ~Join() {
      done = true;
      t.join();
    }
  } join{done, reporter};
  if (resx::run_interruptible(trainer)) return 0;
  std::cerr << "resx-cpp train: stopped by " << (trainer.stop_signal() == SIGTERM ? "SIGTERM" : "SIGINT")
            << "; the last complete epoch's checkpoint is kept\n";
  return 128 + trainer.stop_signal();
}

// A timing server: `resx bench` starts one per runtime and round (a fresh process each round) and
// interleaves the runtimes round by round. resx.bench.runners.serve speaks the same protocol for the
// runtimes that live in Python. "ready" once loaded, then one command per line on stdin, one answer
// per line on stdout:
//   fingerprint                -> fingerprint HEX  (of the graph it runs)
//   compiled                   -> compiled THREADS LOAD_S COMPILE_S RECORDED (threads compiled in: 0
//                                 dynamic, -1 none; RECORDED 1: fingerprint and weights as recorded at export)
//   weights                    -> weights HEX      (of the weights it holds)
//   threads N                  -> ok N             (intra-op threads)
//   env                        -> env {json}
//   input B SEED               -> input SHA1       (of the input tensor's bytes)
//   output B SEED              -> output v1,v2,... (logits, "%.9g")
//   warmup B SEED W TOL MAX    -> warmup CALLS
//   time B SEED CALLS          -> ns t1 t2 ...
//   threads-run T SECONDS SEED -> calls CALLS WALL_NS
//   quit
// One bench-serve command (the words after it in `in`) -> its answer line.
std::string serve(resx::Engine& engine, const std::string& command, std::istream& in) {
  std::ostringstream out;
  int64_t batch = 0;
  uint64_t seed = 0;
  if (command == "threads") {
    int n = 0;
    in >> n;
    resx::set_num_threads(n, 0);
    out << "ok " << at::get_num_threads();
  } else if (command == "fingerprint") {
    out << "fingerprint " << engine.fingerprint();
  } else if (command == "weights") {
    out << "weights " << engine.weights_hash();
  } else if (command == "compiled") {
    out << "compiled " << engine.compiled_threads() << ' ' << resx::format_double(engine.load_seconds()) << " 0 "
        << (engine.recorded() ? 1 : 0);
  } else if (command == "env") {
    out << "env " << resx::to_json(resx::env_report());
  } else if (command == "input") {
    in >> batch >> seed;
    out << "input " << resx::tensor_sha1(resx::make_input(batch, seed, at::kCPU));
  } else if (command == "output") {
    in >> batch >> seed;
    c10::InferenceMode guard;
    const auto y = engine.forward(resx::make_input(batch, seed, engine.device())).to(at::kCPU).contiguous();
    char buf[32];
    out << "output";
    for (int64_t i = 0; i < y.numel(); ++i) {
      std::snprintf(buf, sizeof buf, "%.9g", y.data_ptr<float>()[i]);
      out << (i ? "," : " ") << buf;
    }
  } else if (command == "warmup") {
    int64_t window = 0, max_calls = 0;
    double tolerance = 0;
    in >> batch >> seed >> window >> tolerance >> max_calls;
    const auto x = resx::make_input(batch, seed, engine.device());
    out << "warmup " << resx::warm_up(engine, x, {window, tolerance, max_calls});
  } else if (command == "time") {
    int64_t calls = 0;
    in >> batch >> seed >> calls;
    out << "ns";
    for (auto t : resx::time_forward(engine, resx::make_input(batch, seed, engine.device()), calls)) out << ' ' << t;
  } else if (command == "threads-run") {
    int threads = 0;
    double seconds = 0;
    in >> threads >> seconds >> seed;
    const auto r = resx::time_threads(engine, resx::make_input(1, seed, engine.device()), threads, seconds);
    out << "calls " << r.calls << ' ' << r.wall_ns;
  } else {
    out << "error unknown command '" << command << "'";
  }
  return out.str();
}

int run_bench_serve(int argc, char** argv) {
  if (argc < 1) {
    std::cerr
        << "resx-cpp bench-serve: give FILE [--device D] [--engine E] [--dtype T] [--channels-last] [--runners N]\n";
    return 2;
  }
  resx::EngineOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    if (flag == "--channels-last") {
      options.channels_last = true;
    } else if (flag == "--deterministic") {
      options.deterministic = true;
    } else if (flag == "--cuda-graphs") {
      options.cuda_graphs = true;
    } else if (flag == "--device" && has_value) {
      options.device = argv[++i];
    } else if (flag == "--engine" && has_value) {
      options.engine = argv[++i];
    } else if (flag == "--dtype" && has_value) {
      options.dtype = argv[++i];
    } else if (flag == "--runners" && has_value) {
      options.runners = resx::parse_int(argv[++i], "--runners");
    } else {
      std::cerr << "resx-cpp bench-serve: unknown argument '" << flag << "'\n";
      return 2;
    }
  }
  if (!die_with_parent()) return 128 + SIGTERM;
  const auto engine = resx::Engine::open(argv[0], options);
  std::cout << "ready" << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "quit") break;
    try {
      std::cout << serve(*engine, command, in) << std::endl;
    } catch (const std::exception& e) {
      const std::string what = e.what();
      std::cout << "error " << what.substr(0, what.find('\n')) << std::endl;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(std::cerr, 2);
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write (EFBIG, one line), as in Python
  const std::string command = argv[1];
  try {
    if (command == "env") return run_env(argc - 2, argv + 2);
    if (command == "inspect") return run_inspect(argc - 2, argv + 2);
    if (command == "train") return run_train(argc - 2, argv + 2);
    if (command == "bench-serve") return run_bench_serve(argc - 2, argv + 2);
    if (command == "--help" || command == "-h") return usage(std::cout, 0);
  } catch (const resx::Error& e) {  // an input the user can fix: one line
    std::cerr << "resx-cpp " << command << ": " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {  // a bug: say so
    const std::string what = e.what();
    std::cerr << "resx-cpp " << command << ": internal error: " << what.substr(0, what.find('\n'))
              << " (a bug in resx; please report it with the command you ran)\n";
    return 70;
  }
  std::cerr << "resx-cpp: unknown command '" << command << "'\n";
  return usage(std::cerr, 2);
}
