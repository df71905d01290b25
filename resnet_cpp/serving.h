// Serving under load with MLPerf's LoadGen, in the C++ runtime: LoadGen issues the queries (Poisson
// arrivals for Server, one at a time for SingleStream, all at once for Offline) and times each from its
// scheduled arrival to its completion, so queueing counts; `workers` std::threads answer them. Mirrors
// resx.bench.serving, which defines the request and reads LoadGen's logs for both languages.
#pragma once

#include "engines.h"
#include "json.h"

namespace resx {

// Whether this build compiled LoadGen's sources in (meson.build found them).
bool loadgen_available();

// One LoadGen test on `engine`, as resx.bench.serving.LoadgenRun.request() describes it:
//   {settings: {LoadGen TestSettings field: value, scenario and mode by name}, workers, batch (samples per
//    call, Offline), samples (the sample library: make_input(samples, seed)), seed, outdir (LoadGen's logs)}
// -> {seconds (the test's wall time), sut}. LoadGen writes its summary and detail log under outdir.
Json run_loadgen(Engine& engine, const Json& request);

}  // namespace resx
