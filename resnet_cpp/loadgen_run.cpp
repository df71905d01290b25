#include "loadgen_run.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#ifdef RESX_WITH_LOADGEN
#include <loadgen.h>
#include <query_sample_library.h>
#include <system_under_test.h>
#include <test_settings.h>
#endif

namespace resx {

#ifndef RESX_WITH_LOADGEN

bool loadgen_available() { return false; }

Json run_loadgen(const Json&, const std::string& sut, const MakeCaller&) {
  throw Error("this " + sut + " was built without LoadGen's sources: run `make install` (it unpacks them) and rebuild");
}

#else

bool loadgen_available() { return true; }

namespace {

// LoadGen's settings by their own names (test_settings.h); the Python side sets the same attributes of
// mlperf_loadgen.TestSettings. A key this table lacks is refused, so the two cannot drift apart unseen.
using Setter = std::function<void(mlperf::TestSettings&, const Json&)>;
#define RESX_SETTING(name) {#name, [](mlperf::TestSettings& s, const Json& v) { v.get_to(s.name); }}
const std::map<std::string, Setter>& setters() {
  static const std::map<std::string, Setter> table{
      {"scenario",
       [](mlperf::TestSettings& s, const Json& v) {
         static const std::map<std::string, mlperf::TestScenario> names{
             {"SingleStream", mlperf::TestScenario::SingleStream},
             {"MultiStream", mlperf::TestScenario::MultiStream},
             {"Server", mlperf::TestScenario::Server},
             {"Offline", mlperf::TestScenario::Offline}};
         s.scenario = names.at(v.get<std::string>());
       }},
      {"mode",
       [](mlperf::TestSettings& s, const Json& v) {
         if (v.get<std::string>() != "PerformanceOnly") throw Error("LoadGen mode: resx runs PerformanceOnly");
         s.mode = mlperf::TestMode::PerformanceOnly;
       }},
      RESX_SETTING(server_target_qps),
      RESX_SETTING(server_target_latency_ns),
      RESX_SETTING(server_target_latency_percentile),
      RESX_SETTING(single_stream_expected_latency_ns),
      RESX_SETTING(offline_expected_qps),
      RESX_SETTING(min_duration_ms),
      RESX_SETTING(max_duration_ms),
      RESX_SETTING(min_query_count),
      RESX_SETTING(max_query_count),
      RESX_SETTING(qsl_rng_seed),
      RESX_SETTING(sample_index_rng_seed),
      RESX_SETTING(schedule_rng_seed),
      RESX_SETTING(performance_sample_count_override),
  };
  return table;
}
#undef RESX_SETTING

// The sample library: `count` samples the caller holds, for the whole test (LoadGen sees their indices).
class Samples : public mlperf::QuerySampleLibrary {
 public:
  explicit Samples(size_t count) : count_(count) {}
  const std::string& Name() override { return name_; }
  size_t TotalSampleCount() override { return count_; }
  size_t PerformanceSampleCount() override { return TotalSampleCount(); }
  void LoadSamplesToRam(const std::vector<mlperf::QuerySampleIndex>&) override {}
  void UnloadSamplesFromRam(const std::vector<mlperf::QuerySampleIndex>&) override {}

 private:
  size_t count_;
  std::string name_ = "resx-samples";
};

// The system under test: IssueQuery queues the samples in calls of up to `batch`; `workers` threads take
// them in arrival order, run the engine and report each sample complete.
class Server : public mlperf::SystemUnderTest {
 public:
  Server(const MakeCaller& make_caller, int workers, size_t batch, std::string name)
      : make_caller_(make_caller), batch_(batch), name_(std::move(name)) {
    for (int i = 0; i < workers; ++i) pool_.emplace_back([this] { work(); });
  }
  ~Server() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : pool_) t.join();
  }
  const std::string& Name() override { return name_; }
  void IssueQuery(const std::vector<mlperf::QuerySample>& query) override {
    {
      std::lock_guard lock(mutex_);
      for (size_t i = 0; i < query.size(); i += batch_)
        queue_.emplace_back(query.begin() + i, query.begin() + std::min(query.size(), i + batch_));
    }
    ready_.notify_all();
  }
  void FlushQueries() override {}

 private:
  void work() {
    auto call = make_caller_();  // on this thread: what it sets up is the thread's own
    std::vector<size_t> indices;
    std::vector<mlperf::QuerySampleResponse> done;
    for (;;) {
      std::vector<mlperf::QuerySample> query;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        query = std::move(queue_.front());
        queue_.pop_front();
      }
      indices.clear();
      for (const auto& q : query) indices.push_back(q.index);
      call(indices);
      done.assign(query.size(), {});
      for (size_t i = 0; i < query.size(); ++i) done[i] = {query[i].id, 0, 0};
      mlperf::QuerySamplesComplete(done.data(), done.size());
    }
  }

  const MakeCaller& make_caller_;
  size_t batch_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::vector<mlperf::QuerySample> > queue_;
  bool stopping_ = false;
  std::vector<std::thread> pool_;
  std::string name_;
};

}  // namespace

Json run_loadgen(const Json& request, const std::string& sut, const MakeCaller& make_caller) {
  const std::string source = "loadgen request";
  mlperf::TestSettings settings;
  for (const auto& [key, value] : object(request, "settings", source).items()) {
    const auto it = setters().find(key);
    if (it == setters().end()) throw Error(source + ": LoadGen setting '" + key + "' is unknown to " + sut);
    it->second(settings, value);
  }
  mlperf::LogSettings log;
  log.log_output.outdir = get<std::string>(request, "outdir", source);
  log.enable_trace = false;  // the trace grows with every query; the summary and detail log are kept
  const auto workers = get<int>(request, "workers", source);
  const auto batch = get<int64_t>(request, "batch", source);
  if (workers < 1 || batch < 1) throw Error(source + ": workers and batch must be at least 1");
  Samples samples(get<size_t>(request, "samples", source));
  Server server(make_caller, workers, static_cast<size_t>(batch), sut);
  const auto began = std::chrono::steady_clock::now();
  mlperf::StartTest(&server, &samples, settings, log);
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - began;
  return {{"seconds", took.count()}, {"sut", server.Name()}};
}

#endif

}  // namespace resx
