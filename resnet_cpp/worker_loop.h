// The worker side of the bench protocol's transport (resx.bench.protocol): the two pipes $RESX_WORKER_FDS
// names, one JSON object per line each way, Open first. No torch: resx-cpp and the ExecuTorch runtime
// (resx-executorch, which loads no libtorch) serve it alike.
#pragma once

#include <functional>
#include <string>

#include "json.h"
#include "protocol.h"

namespace resx {

// A child of resx (RESX_PARENT_PID set) gets SIGTERM when its parent dies, so it never outlives it;
// false when the parent is already gone.
bool die_with_parent();

// A worker opened on the Open request: what answers each later request, and what opening took.
struct Opened {
  std::function<Json(const Json&)> handle;
  double load_seconds = 0;
};

// Serves the protocol until quit or the end of the requests: `open` makes the worker (an exception is one
// line back, exit 1), Ready answers it, then each request gets its answer or {"error": one line}. The exit
// status; `program` names the command in its own errors.
int serve_worker(const std::string& program, const std::function<Opened(const protocol::Open&)>& open);

}  // namespace resx
