// resx._cpp: the C++ runtime as a Python module. Long calls release the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>

#include "env.h"

namespace nb = nanobind;

NB_MODULE(_cpp, m) {
  m.doc() = "resx C++ runtime (LibTorch), the same code as the resx-cpp executable";

  m.def("env", &resx::env_report, nb::call_guard<nb::gil_scoped_release>(),
        "What LibTorch reports from C++: version, build config, threads, CUDA, CPU, load.");
  m.def("set_num_threads", &resx::set_num_threads, nb::arg("intra_op"), nb::arg("inter_op") = 0,
        "Set LibTorch's intra-op (and, once per process, inter-op) thread counts from C++.");
}
