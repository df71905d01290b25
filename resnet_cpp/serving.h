// Serving under load with MLPerf's LoadGen on one of LibTorch's engines (resx::run_loadgen in loadgen_run.h
// runs the test; this serves it the bench's input).
#pragma once

#include "engines.h"
#include "json.h"
#include "loadgen_run.h"

namespace resx {

// One LoadGen test on `engine`: the request of loadgen_run.h, its samples make_input(samples, seed) on the
// engine's device.
Json run_loadgen(Engine& engine, const Json& request);

}  // namespace resx
