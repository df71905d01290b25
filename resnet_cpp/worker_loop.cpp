#include "worker_loop.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>

namespace resx {
namespace {

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
    if (n <= 0) throw Error("the bench's end of the protocol is closed");
    done += static_cast<size_t>(n);
  }
}

std::string one_line(const std::exception& e) {
  const std::string what = e.what();
  return what.substr(0, what.find('\n'));
}

}  // namespace

bool die_with_parent() {
  const char* parent = std::getenv("RESX_PARENT_PID");
  if (parent == nullptr) return true;
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  return std::to_string(::getppid()) == parent;
}

// The protocol on two pipes of its own, so that nothing printed to stdout or stderr (a runtime's
// warnings) can enter it.
int serve_worker(const std::string& program, const std::function<Opened(const protocol::Open&)>& open) {
  const char* fds = std::getenv(protocol::kWorkerFds);
  if (fds == nullptr) throw Error(program + ": $RESX_WORKER_FDS is not set (resx bench starts workers)");
  const auto ends = split(fds, ',');
  if (ends.size() != 2) throw Error("$RESX_WORKER_FDS: give REQUESTS,ANSWERS");
  const int in = static_cast<int>(parse_int(ends[0], "$RESX_WORKER_FDS"));
  const int out = static_cast<int>(parse_int(ends[1], "$RESX_WORKER_FDS"));
  if (!die_with_parent()) return 128 + SIGTERM;
  std::string buffer, line;
  if (!read_line(in, buffer, line)) return 0;
  Opened worker;
  try {
    worker = open(parse_json(line, "open").get<protocol::Open>());
  } catch (const std::exception& e) {
    write_line(out, Json{{"error", one_line(e)}}.dump());
    return 1;
  }
  write_line(out, Json(protocol::Ready{worker.load_seconds}).dump());
  while (read_line(in, buffer, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json answer;
    try {
      const auto request = parse_json(line, "request");
      if (request.value("cmd", "") == "quit") break;
      answer = worker.handle(request);
    } catch (const std::exception& e) {
      answer = {{"error", one_line(e)}};
    }
    write_line(out, answer.dump());
  }
  // Straight out, as the Python worker: freeing the model and LibTorch's statics takes 0.2 s of every
  // stop, and nothing the worker holds needs it (valgrind writes its counts on any exit).
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace resx
