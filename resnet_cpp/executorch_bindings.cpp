// resx._executorch: ExecuTorch's C++ runtime as a Python module (the cpp-executorch runtime's worker):
// no torch in this module, whose ExecuTorch headers must not meet torch's. Requests are answered in C++
// with the GIL released, as resx._cpp.Worker answers them for LibTorch's engines.
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>

#include "executorch.h"
#include "executorch_worker.h"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_executorch, m) {
  m.doc() = "ExecuTorch's C++ runtime (Module API, XNNPACK), linked without libtorch";
  nb::class_<resx::et::Worker>(m, "Worker",
                               "A bench worker (resx.bench.protocol) on an ExecuTorch program, answering in C++ "
                               "with the GIL released.")
      .def(
          "__init__",
          [](resx::et::Worker* self, const std::string& open) {
            const auto parsed = resx::parse_json(open, "open").get<resx::protocol::Open>();
            nb::gil_scoped_release release;
            new (self) resx::et::Worker(parsed);
          },
          "open"_a, "An Open request (JSON).")
      .def(
          "handle",
          [](resx::et::Worker& self, const std::string& request) {
            const auto parsed = resx::parse_json(request, "request");
            nb::gil_scoped_release release;
            return self.handle(parsed).dump();
          },
          "request"_a, "One request (JSON) -> its answer (JSON).")
      .def_prop_ro("load_seconds", &resx::et::Worker::load_seconds);
  m.def("env", &resx::et::env_report, "What this runtime reports of itself and the machine.");
  m.def("version", &resx::et::version, "The ExecuTorch release resx was built against.");
  // resx::Error is an input the user can fix: Python sees a resx.errors.ResxError (one line, no traceback).
  nb::exception<resx::Error>(m, "ExecutorchError", nb::module_::import_("resx.errors").attr("ResxError").ptr());
}
