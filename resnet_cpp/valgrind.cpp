// resx._valgrind: valgrind's callgrind client requests for the Python runtimes, which torch's own requests
// (torch._C._valgrind_toggle: collection on and off) do not cover: instrumentation on and off, so that a
// process under callgrind runs uninstrumented (several times faster) until the calls it counts. No torch.
#include <nanobind/nanobind.h>

#include "callgrind.h"

namespace nb = nanobind;

NB_MODULE(_valgrind, m) {
  m.doc() = "callgrind's client requests (instrumentation), compiled in where valgrind's header was found";
  m.def("available", &resx::callgrind_available);
  m.def("running", &resx::under_valgrind);
  m.def("start_instrumentation", &resx::start_instrumentation);
  m.def("stop_instrumentation", &resx::stop_instrumentation);
}
