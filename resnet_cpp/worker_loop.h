// The worker side of the bench protocol's transport (resx.bench.protocol): the two pipes $RESX_WORKER_FDS
// names, one JSON object per line each way, Open first. No torch: resx-cpp and the ExecuTorch runtime
// (resx-executorch, which loads no libtorch) serve it alike.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>

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

// A worker's answers (W: resx::Worker, resx::et::Worker): each request by its name on the wire, read into
// its protocol type, and what answers it. Only the request's own fields are relabelled "request 'NAME':
// ..." when they are missing or mistyped; an error raised while answering passes through as it is.
template <typename W>
class Answers {
 public:
  using Handler = std::function<Json(W&, const Json&)>;
  using Entry = std::pair<const std::string, Handler>;

  template <typename Request>
  static Entry on(const std::string& name, std::function<Json(W&, const Request&)> answer) {
    return {name, [name, answer](W& w, const Json& request) { return answer(w, read<Request>(request, name)); }};
  }

  Answers(std::initializer_list<Entry> entries) : table_(entries) {}

  Json answer(W& w, const Json& request) const {
    const auto name = get<std::string>(request, "cmd", "request");
    const auto it = table_.find(name);
    if (it == table_.end()) throw Error("unknown request '" + name + "'");
    return it->second(w, request);
  }

 private:
  template <typename Request>
  static Request read(const Json& request, const std::string& name) {
    Json fields = request;
    fields.erase("cmd");
    try {
      return fields.get<Request>();
    } catch (const nlohmann::json::exception& e) {
      const std::string what = e.what();
      throw Error("request '" + name + "': " + what.substr(what.find(']') + 2));
    }
  }

  std::map<std::string, Handler> table_;
};

// Serves the protocol until quit or the end of the requests: `open` makes the worker (an exception is one
// line back, exit 1), Ready answers it, then each request gets its answer or {"error": one line}; at the end
// the process exits 0 at once, without teardown. The exit status where it returns; `program` names the
// command in its own errors.
int serve_worker(const std::string& program, const std::function<Opened(const protocol::Open&)>& open);

}  // namespace resx
