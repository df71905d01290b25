// Serving under load with MLPerf's LoadGen, in C++: LoadGen issues the queries (Poisson arrivals for
// Server, one at a time for SingleStream, all at once for Offline) and times each from its scheduled
// arrival to its completion, so queueing counts; `workers` std::threads answer them. No torch: every C++
// runtime serves through it (resx::run_loadgen for LibTorch's engines, the ExecuTorch worker). Mirrors
// resx.bench.serving, which defines the request and reads LoadGen's logs for both languages.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "json.h"

namespace resx {

// Whether this build compiled LoadGen's sources in (meson.build found them).
bool loadgen_available();

// What runs one call: the indices of the samples it answers (one, or up to `batch` for Offline).
using SampleCall = std::function<void(const std::vector<size_t>&)>;
// Made once on each worker thread, before its first call: thread-local set-up belongs in it.
using MakeCaller = std::function<SampleCall()>;

// One LoadGen test, as resx.bench.serving.LoadgenRun.request() describes it:
//   {settings: {LoadGen TestSettings field: value, scenario and mode by name}, workers, batch (samples per
//    call, Offline), samples (the sample library's size; the caller holds them), seed, outdir (LoadGen's logs)}
// -> {seconds (the test's wall time), sut}. LoadGen writes its summary and detail log under outdir.
Json run_loadgen(const Json& request, const std::string& sut, const MakeCaller& make_caller);

}  // namespace resx
