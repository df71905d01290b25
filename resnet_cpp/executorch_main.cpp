// resx-executorch: ExecuTorch's C++ runtime as a deployment ships it, a process with no Python and no
// libtorch, running resx's exported programs (.pte) as a bench worker, and re-verifying one.
#include <cmath>
#include <cstring>
#include <iostream>
#include <string>

#include "command.h"
#include "executorch.h"
#include "executorch_worker.h"
#include "files.h"
#include "json.h"
#include "worker_loop.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: resx-executorch env [--json]\n"
         "       resx-executorch inspect FILE.pte   (runs it, prints its manifest's claims)\n"
         "       resx-executorch worker   (a bench worker: resx bench starts it, speaking on $RESX_WORKER_FDS)\n";
  return code;
}

int run_env(int argc, char** argv) {
  const bool json = argc == 1 && std::strcmp(argv[0], "--json") == 0;
  if (argc != 0 && !json) {
    std::cerr << "resx-executorch env: unknown argument '" << argv[0] << "' (try --json)\n";
    return 2;
  }
  resx::print_report(resx::et::env_report(), json);
  return 0;
}

// What C++ sees of a program: its manifest, and that it runs at batch 1 and 3 giving finite
// [batch, classes] logits (resx.export.executorch.inspect_program checks the same in Python).
int run_inspect(int argc, char** argv) {
  if (argc != 1) {
    std::cerr << "resx-executorch inspect: give exactly one FILE.pte\n";
    return 2;
  }
  const std::string path = argv[0];
  resx::et::Program program(path);
  const auto manifest = program.manifest();
  const auto& model = resx::object(manifest, "model", path + ": its manifest");
  const auto classes = resx::get<int64_t>(model, "num_classes", path + ": its manifest's model");
  const auto& input = resx::object(manifest, "input", path + ": its manifest");
  auto shape = resx::get<std::vector<int64_t>>(input, "shape", path + ": its manifest's input");
  shape.erase(shape.begin());  // [1, C, H, W]: one sample's
  int64_t per = 1;
  for (const auto d : shape) per *= d;
  bool runs = true;
  for (const int64_t batch : {1, 3}) {
    const std::vector<float> x(static_cast<size_t>(batch * per), 0.5f);
    const auto y = program.forward(x.data(), batch, shape);
    runs = runs && static_cast<int64_t>(y.size()) == batch * classes;
    for (const float v : y) runs = runs && std::isfinite(v);
  }
  std::cout << resx::Json{{"runs", runs ? "yes" : "no"},
                          {"threads", resx::et::Program::threads()},
                          {"executorch_version", resx::et::version()},
                          {"manifest", manifest}}
                   .dump()
            << '\n';
  if (!runs) throw resx::Error(path + ": does not give finite [batch, " + std::to_string(classes) + "] logits");
  return 0;
}

int run_worker(int argc, char**) {
  if (argc != 0) {
    std::cerr << "resx-executorch worker: takes no arguments (resx bench starts it, with $RESX_WORKER_FDS)\n";
    return 2;
  }
  return resx::serve_worker("resx-executorch worker", [](const resx::protocol::Open& open) {
    auto worker = std::make_shared<resx::et::Worker>(open);
    return resx::Opened{[worker](const resx::Json& request) { return worker->handle(request); },
                        worker->load_seconds()};
  });
}

}  // namespace

int main(int argc, char** argv) {
  return resx::run_command("resx-executorch", argc, argv,
                           {{"env", run_env}, {"inspect", run_inspect}, {"worker", run_worker}}, usage);
}
