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
#include "engines.h"
#include "env.h"
#include "files.h"
#include "json.h"
#include "model.h"
#include "resnet.h"
#include "serving.h"
#include "train.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: resx-cpp env [--json] [--threads N]\n"
         "       resx-cpp inspect FILE.pt|FILE.pt2|FILE.pth\n"
         "       resx-cpp train CONFIG.txt   (written by `resx train --runtime cpp-exe`)\n"
         "       resx-cpp bench-serve FILE [--device D] [--engine eager|script|frozen|aoti] [--dtype fp32|bf16]\n"
         "                            [--channels-last] [--runners N] [--deterministic] [--cuda-graphs]\n"
         "                            [--input-shape C,H,W]\n"
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
    std::cout << resx::Json(report).dump() << '\n';
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
    // A weights export (.pth) opens in the C++ frontend, with no TorchScript; anything else as TorchScript.
    const bool weights = path.size() > 4 && path.substr(path.size() - 4) == ".pth";
    const auto model = resx::open_network(path, "cpu", weights ? "eager" : "scripted");
    if (!model->has_manifest()) throw resx::Error(path + ": no resx manifest (a foreign TorchScript file)");
    claims = resx::manifest_claims(model->manifest_json(), path);
    found = resx::describe(*model, claims.at("model.name"));
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
      std::cerr << resx::Json{{"progress", resx::progress_json(trainer.progress())}}.dump() + "\n" << std::flush;
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
// runtimes that live in Python: JSON lines. {"ready": true, "load_s"} once loaded (load_s: the model's
// load, which the parent's spawn-to-ready time includes), then one request per line on
// stdin, {"cmd": NAME, ...arguments}, and one answer per line on stdout, a JSON object or
// {"error": "..."}:
//   identity {seed}                                -> {fingerprint, weights_hash, state, input_hash, output, env,
//                                                      compiled}
//   threads {n}                                    -> {threads}   (intra-op threads, as now set)
//   warmup {batch, seed, window, tolerance, max_calls} -> {calls}
//   time {batch, seed, calls}                      -> {ns: [...]}
//   threads_run {threads, seconds, seed}           -> {calls, wall_ns}
//   loadgen {settings, workers, batch, samples, seed, outdir} -> {seconds, sut}  (resx.bench.serving)
//   profile {batch, seed, calls}                   -> {calls, wall_ns, ops: [[name, start_ns, end_ns, parent]]}
//   device_memory                                  -> {allocated_bytes, reserved_bytes, peak_allocated_bytes,
//                                                      peak_reserved_bytes}, or {} off CUDA
//   quit
resx::Json serve(resx::Engine& engine, const resx::Json& request) {
  using resx::get;
  const std::string source = "request";
  const auto command = get<std::string>(request, "cmd", source);
  const auto seed = request.value("seed", uint64_t{0});
  const auto batch = request.value("batch", int64_t{1});
  const auto& shape = engine.options().input_shape;
  if (command == "threads") {
    resx::set_num_threads(get<int>(request, "n", source), 0);
    return {{"threads", at::get_num_threads()}};
  }
  if (command == "identity") {
    c10::InferenceMode guard;
    const auto y = engine.forward(resx::make_input(1, seed, engine.device(), shape)).to(at::kCPU).contiguous();
    return {{"fingerprint", engine.fingerprint()},
            {"weights_hash", engine.weights_hash()},
            {"state", engine.state_fingerprint()},
            {"input_hash", resx::tensor_sha1(resx::make_input(1, seed, at::kCPU, shape))},
            {"output", std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel())},
            {"env", resx::env_report()},
            {"compiled", resx::compiled_json(engine)}};
  }
  if (command == "warmup") {
    const resx::WarmupRule rule{get<int64_t>(request, "window", source), get<double>(request, "tolerance", source),
                                get<int64_t>(request, "max_calls", source)};
    return {{"calls", resx::warm_up(engine, resx::make_input(batch, seed, engine.device(), shape), rule)}};
  }
  if (command == "time") {
    const auto calls = get<int64_t>(request, "calls", source);
    return {{"ns", resx::time_forward(engine, resx::make_input(batch, seed, engine.device(), shape), calls)}};
  }
  if (command == "threads_run") {
    const auto r = resx::time_threads(engine, resx::make_input(1, seed, engine.device(), shape),
                                      get<int>(request, "threads", source), get<double>(request, "seconds", source));
    return {{"calls", r.calls}, {"wall_ns", r.wall_ns}};
  }
  if (command == "profile") {
    return resx::profile_forward(engine, resx::make_input(batch, seed, engine.device(), shape),
                                 get<int64_t>(request, "calls", source));
  }
  if (command == "loadgen") return resx::run_loadgen(engine, request);
  if (command == "device_memory") return resx::device_memory(engine.device());
  return {{"error", "unknown command '" + command + "'"}};
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
    } else if (flag == "--input-shape" && has_value) {
      options.input_shape.clear();
      for (const auto& v : resx::split(argv[++i], ','))
        options.input_shape.push_back(resx::parse_int(v, "--input-shape"));
      if (options.input_shape.size() != 3) throw resx::Error("--input-shape: give C,H,W");
    } else {
      std::cerr << "resx-cpp bench-serve: unknown argument '" << flag << "'\n";
      return 2;
    }
  }
  if (!die_with_parent()) return 128 + SIGTERM;
  const auto began = std::chrono::steady_clock::now();
  const auto engine = resx::Engine::open(argv[0], options);
  const std::chrono::duration<double> load = std::chrono::steady_clock::now() - began;
  std::cout << resx::Json{{"ready", true}, {"load_s", load.count()}}.dump() << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    resx::Json answer;
    try {
      const auto request = resx::parse_json(line, "request");
      if (request.value("cmd", "") == "quit") break;
      answer = serve(*engine, request);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      answer = {{"error", what.substr(0, what.find('\n'))}};
    }
    std::cout << answer.dump() << std::endl;
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
