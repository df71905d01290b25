// resx-cpp: the C++ runtime as a standalone program, with no Python in the process.
#include <ATen/Parallel.h>

#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "bench.h"
#include "command.h"
#include "engines.h"
#include "env.h"
#include "files.h"
#include "json.h"
#include "model.h"
#include "resnet.h"
#include "serving.h"
#include "train.h"
#include "worker_loop.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: resx-cpp env [--json] [--threads N]\n"
         "       resx-cpp inspect FILE.pt|FILE.pt2|FILE.pth\n"
         "       resx-cpp train RUN/config.json   (written by `resx train --runtime cpp-exe`)\n"
         "       resx-cpp worker      (a bench worker: resx bench starts it, speaking on $RESX_WORKER_FDS)\n";
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
  resx::print_report(resx::env_report(), json);
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

// The run directory's lock that resx train holds and passes down, or -1: take it here.
int inherited_lock_fd() {
  const char* fd = std::getenv("RESX_LOCK_FD");
  return fd ? static_cast<int>(resx::parse_int(fd, "RESX_LOCK_FD")) : -1;
}

// The same loop as the extension's, with no Python in the process. SIGINT or SIGTERM stops it after the
// current step: exit 128 + the signal, like a process the signal ended.
int run_train(int argc, char** argv) {
  if (argc != 1) {
    std::cerr << "resx-cpp train: give exactly one RUN/config.json\n";
    return 2;
  }
  if (!resx::die_with_parent()) return 128 + SIGTERM;
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

// A bench worker (resx.bench.protocol describes the protocol): `resx bench` starts one per runtime and
// round.
int run_worker(int argc, char**) {
  if (argc != 0) {
    std::cerr << "resx-cpp worker: takes no arguments (resx bench starts it, with $RESX_WORKER_FDS)\n";
    return 2;
  }
  return resx::serve_worker("resx-cpp worker", [](const resx::protocol::Open& open) {
    auto worker = std::make_shared<resx::Worker>(open);
    return resx::Opened{[worker](const resx::Json& request) { return worker->handle(request); },
                        worker->load_seconds()};
  });
}

}  // namespace

int main(int argc, char** argv) {
  return resx::run_command("resx-cpp", argc, argv,
                           {{"env", run_env}, {"inspect", run_inspect}, {"train", run_train}, {"worker", run_worker}},
                           usage);
}
