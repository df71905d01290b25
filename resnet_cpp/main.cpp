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
    std::cerr << "resx-cpp train: give exactly one RUN/config.json\n";
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

// Reads one line from a file descriptor (without the newline); false at the end of the input.
bool read_line(int fd, std::string& buffer, std::string& line) {
  for (;;) {
    const auto nl = buffer.find('\n');
    if (nl != std::string::npos) {
      line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return true;
    }
    char chunk[65536];
    const auto n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

void write_line(int fd, const std::string& text) {
  const std::string line = text + "\n";
  for (size_t done = 0; done < line.size();) {
    const auto n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw resx::Error("the bench's end of the protocol is closed");
    done += static_cast<size_t>(n);
  }
}

std::string one_line(const std::exception& e) {
  const std::string what = e.what();
  return what.substr(0, what.find('\n'));
}

// A bench worker (resx.bench.protocol describes the protocol): `resx bench` starts one per runtime and
// round, and speaks to it on the two pipes $RESX_WORKER_FDS names, so that nothing printed to stdout or
// stderr (LibTorch's warnings) can enter the protocol.
int run_worker(int argc, char**) {
  if (argc != 0) {
    std::cerr << "resx-cpp worker: takes no arguments (resx bench starts it, with $RESX_WORKER_FDS)\n";
    return 2;
  }
  const char* fds = std::getenv(resx::protocol::kWorkerFds);
  if (fds == nullptr) throw resx::Error("resx-cpp worker: $RESX_WORKER_FDS is not set (resx bench starts workers)");
  const auto ends = resx::split(fds, ',');
  if (ends.size() != 2) throw resx::Error("$RESX_WORKER_FDS: give REQUESTS,ANSWERS");
  const int in = static_cast<int>(resx::parse_int(ends[0], "$RESX_WORKER_FDS"));
  const int out = static_cast<int>(resx::parse_int(ends[1], "$RESX_WORKER_FDS"));
  if (!die_with_parent()) return 128 + SIGTERM;
  std::string buffer, line;
  if (!read_line(in, buffer, line)) return 0;
  std::unique_ptr<resx::Worker> worker;
  try {
    worker = std::make_unique<resx::Worker>(resx::parse_json(line, "open").get<resx::protocol::Open>());
  } catch (const std::exception& e) {
    write_line(out, resx::Json{{"error", one_line(e)}}.dump());
    return 1;
  }
  write_line(out, resx::Json(resx::protocol::Ready{worker->load_seconds()}).dump());
  while (read_line(in, buffer, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    resx::Json answer;
    try {
      const auto request = resx::parse_json(line, "request");
      if (request.value("cmd", "") == "quit") break;
      answer = worker->handle(request);
    } catch (const std::exception& e) {
      answer = {{"error", one_line(e)}};
    }
    write_line(out, answer.dump());
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
    if (command == "worker") return run_worker(argc - 2, argv + 2);
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
