// valgrind's callgrind client requests, compiled in where valgrind's header was found and no-ops
// elsewhere (callgrind_available() says which). No torch: every runtime and resx._valgrind use them.
#pragma once

#include <cstdint>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define RESX_WITH_CALLGRIND 1
#endif

namespace resx {

inline bool callgrind_available() {
#ifdef RESX_WITH_CALLGRIND
  return true;
#else
  return false;
#endif
}

// Whether this process runs under valgrind now.
inline bool under_valgrind() {
#ifdef RESX_WITH_CALLGRIND
  return RUNNING_ON_VALGRIND != 0;
#else
  return false;
#endif
}

// Instrumentation: a process under callgrind runs uninstrumented (several times faster) until it is on.
inline void start_instrumentation() {
#ifdef RESX_WITH_CALLGRIND
  CALLGRIND_START_INSTRUMENTATION;
#endif
}
inline void stop_instrumentation() {
#ifdef RESX_WITH_CALLGRIND
  CALLGRIND_STOP_INSTRUMENTATION;
#endif
}

// Instrumentation and collection on around what is counted alone, then off (resx.callgrind.count_on/off).
inline void count_on() {
  start_instrumentation();
#ifdef RESX_WITH_CALLGRIND
  CALLGRIND_TOGGLE_COLLECT;
#endif
}
inline void count_off() {
#ifdef RESX_WITH_CALLGRIND
  CALLGRIND_TOGGLE_COLLECT;
#endif
  stop_instrumentation();
}

// `calls` calls with instrumentation and collection switched on around them alone.
template <typename Call>
void count_calls(Call&& call, int64_t calls) {
  count_on();
  for (int64_t i = 0; i < calls; ++i) call();
  count_off();
}

// Set by the bench for a training run it counts: "FIRST,N" counts steps FIRST+1..FIRST+N (resx.callgrind).
inline constexpr const char* kCountSteps = "RESX_COUNT_STEPS";

}  // namespace resx
