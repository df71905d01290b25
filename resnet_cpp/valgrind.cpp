// resx._valgrind: valgrind's callgrind client requests for the Python runtimes, which torch's own requests
// (torch._C._valgrind_toggle: collection on and off) do not cover: instrumentation on and off, so that a
// process under callgrind runs uninstrumented (several times faster) until the calls it counts. No torch.
#include <nanobind/nanobind.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define RESX_WITH_CALLGRIND 1
#endif

namespace nb = nanobind;

NB_MODULE(_valgrind, m) {
  m.doc() = "callgrind's client requests (instrumentation), compiled in where valgrind's header was found";
  m.def("available", [] {
#ifdef RESX_WITH_CALLGRIND
    return true;
#else
    return false;
#endif
  });
  m.def("running", [] {
#ifdef RESX_WITH_CALLGRIND
    return RUNNING_ON_VALGRIND != 0;
#else
    return false;
#endif
  });
  m.def("start_instrumentation", [] {
#ifdef RESX_WITH_CALLGRIND
    CALLGRIND_START_INSTRUMENTATION;
#endif
  });
  m.def("stop_instrumentation", [] {
#ifdef RESX_WITH_CALLGRIND
    CALLGRIND_STOP_INSTRUMENTATION;
#endif
  });
}
