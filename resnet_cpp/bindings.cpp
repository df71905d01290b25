// resx._cpp: the C++ runtime as a Python module. Tensors cross by DLPack (no copies); long calls
// release the GIL.
#include <ATen/DLConvertor.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "bench.h"
#include "data.h"
#include "engines.h"
#include "env.h"
#include "files.h"
#include "model.h"
#include "resnet.h"
#include "serving.h"
#include "train.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

// torch.Tensor -> at::Tensor sharing its memory, through the tensor's own __dlpack__ capsule.
at::Tensor from_torch(nb::handle tensor) {
  nb::capsule capsule = nb::borrow<nb::capsule>(tensor.attr("__dlpack__")());
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (managed == nullptr) throw nb::python_error();
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");  // ownership moves to the at::Tensor
  return at::fromDLPack(managed);
}

// at::Tensor -> torch.Tensor sharing its memory.
nb::object to_torch(const at::Tensor& tensor) {
  DLManagedTensor* managed = at::toDLPack(tensor);
  // A raw capsule: its destructor must free the tensor only if torch did not consume it (the
  // consumer renames it to "used_dltensor"), which nb::capsule's cleanup cannot tell.
  auto destructor = [](PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      if (m->deleter != nullptr) m->deleter(m);
    }
  };
  auto capsule = nb::steal<nb::capsule>(PyCapsule_New(managed, "dltensor", destructor));
  return nb::module_::import_("torch").attr("from_dlpack")(capsule);
}

}  // namespace

// at::Tensor in signatures: a torch.Tensor on the Python side, shared without copies (DLPack). Only
// torch.Tensor converts; anything else is a TypeError naming the expected type.
namespace nanobind::detail {
template <>
struct type_caster<at::Tensor> {
  NB_TYPE_CASTER(at::Tensor, const_name("torch.Tensor"))

  bool from_python(handle src, uint8_t, cleanup_list*) noexcept {
    try {
      // torch.Tensor, looked up once and kept for the life of the process.
      static PyObject* tensor_type = nb::object(nb::module_::import_("torch").attr("Tensor")).release().ptr();
      if (PyObject_IsInstance(src.ptr(), tensor_type) != 1) return false;
      value = from_torch(src);
      return true;
    } catch (...) {
      PyErr_Clear();
      return false;
    }
  }

  static handle from_cpp(const at::Tensor& tensor, rv_policy, cleanup_list*) noexcept {
    try {
      return to_torch(tensor).release();
    } catch (nb::python_error& e) {
      e.restore();
      return handle();
    }
  }
};
}  // namespace nanobind::detail

namespace {

nb::tuple batch_tuple(const resx::Batch& b) { return nb::make_tuple(b.images, b.inputs, b.labels); }

std::vector<std::pair<std::string, at::Tensor>> detached(std::vector<std::pair<std::string, at::Tensor>> items) {
  for (auto& item : items) item.second = item.second.detach();
  return items;
}

// ---- environment and model (mirrors resx.env and resx.export)
void bind_model(nb::module_& m) {
  m.def("env", &resx::env_report, nb::call_guard<nb::gil_scoped_release>(),
        "What LibTorch reports from C++: version, build config, threads, CUDA, CPU, load.");
  m.def("set_num_threads", &resx::set_num_threads, "intra_op"_a, "inter_op"_a = 0,
        "Set LibTorch's intra-op (and, once per process, inter-op) thread counts from C++.");

  nb::class_<resx::Network>(m, "Network", "What C++ trains and evaluates: a TorchScript file or the C++ frontend.")
      .def(
          "fingerprint", [](const resx::Network& self) { return self.fingerprint(); },
          nb::call_guard<nb::gil_scoped_release>())
      .def("weights_hash", &resx::Network::weights_hash, nb::call_guard<nb::gil_scoped_release>())
      .def("state_fingerprint", &resx::Network::state_fingerprint)
      .def("parameter_count", &resx::Network::parameter_count)
      .def("named_parameters", [](const resx::Network& self) { return detached(self.named_parameters()); })
      .def("named_buffers", [](const resx::Network& self) { return detached(self.named_buffers()); })
      .def("train", &resx::Network::train, "on"_a = true)
      .def("eval", [](resx::Network& self) { self.train(false); })
      .def_prop_ro("training", &resx::Network::is_training)
      .def_prop_ro("manifest_json", &resx::Network::manifest_json)
      .def_prop_ro("has_manifest", &resx::Network::has_manifest)
      .def(
          "forward",
          [](resx::Network& self, const at::Tensor& input) {
            nb::gil_scoped_release release;
            torch::NoGradGuard no_grad;
            return self.forward(input.to(self.device()));
          },
          "input"_a, "Forward on a torch.Tensor, without copies and with the GIL released.")
      .def("__call__", [](nb::handle self, nb::handle input) { return self.attr("forward")(input); }, "input"_a);

  nb::class_<resx::Frontend, resx::Network>(m, "Frontend",
                                            "A resx ResNet in LibTorch's C++ frontend (torch::nn), from a weights "
                                            "export or a checkpoint: no torch::jit.")
      .def(nb::init<const std::string&, const std::string&>(), "path"_a, "device"_a = "cpu",
           nb::call_guard<nb::gil_scoped_release>());

  nb::class_<resx::Model, resx::Network>(m, "Model", "A resx export loaded with torch::jit::load.")
      .def(nb::init<const std::string&, const std::string&>(), "path"_a, "device"_a = "cpu",
           nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("path", &resx::Model::path)
      .def("canonical_form", &resx::Model::canonical_form, nb::call_guard<nb::gil_scoped_release>());
}

// ---- data (mirrors resx.data)
void bind_data(nb::module_& m) {
  nb::class_<resx::AugmentSpec>(m, "AugmentSpec", "Built from resx.data.AUGMENT; never defaulted in C++.")
      .def(nb::init<int64_t, int64_t, double, std::array<double, 3>, std::array<double, 3>>(), "crop"_a, "padding"_a,
           "flip_p"_a, "mean"_a, "std"_a)
      .def_rw("crop", &resx::AugmentSpec::crop)
      .def_rw("padding", &resx::AugmentSpec::padding)
      .def_rw("flip_p", &resx::AugmentSpec::flip_p)
      .def_rw("mean", &resx::AugmentSpec::mean)
      .def_rw("std", &resx::AugmentSpec::std);

  m.def(
      "read_binary",
      [](const std::string& path) {
        nb::gil_scoped_release release;
        return resx::read_binary(path);
      },
      "path"_a);
  m.def(
      "load_split",
      [](const std::string& dir, const std::string& split) {
        nb::gil_scoped_release release;
        return resx::load_split(dir, split);
      },
      "data_dir"_a, "split"_a);
  m.def("epoch_seed", &resx::epoch_seed, "seed"_a, "epoch"_a);
  m.def(
      "draw_epoch_plan",
      [](uint64_t seed, uint64_t epoch, int64_t n, const resx::AugmentSpec& spec) {
        auto plan = resx::EpochPlan::draw(seed, epoch, n, spec);
        return std::make_tuple(plan.order, plan.offsets, plan.flips);
      },
      "seed"_a, "epoch"_a, "n"_a, "spec"_a);
  m.def(
      "augment_batch",
      [](const at::Tensor& images, const at::Tensor& offsets, const at::Tensor& flips, const resx::AugmentSpec& spec) {
        return resx::augment_batch(images, offsets, flips, spec);
      },
      "images"_a, "offsets"_a, "flips"_a, "spec"_a);
  m.def("normalize", &resx::normalize, "images"_a, "spec"_a);

  nb::class_<resx::CifarLoader>(m, "CifarLoader", "Mirrors resx.data.CifarLoader; optional prefetch thread.")
      .def(
          "__init__",
          [](resx::CifarLoader* self, const at::Tensor& images, const at::Tensor& labels, int64_t batch_size,
             bool train, uint64_t seed, bool drop_last, const resx::AugmentSpec& spec, bool prefetch, int64_t rank,
             int64_t world) {
            new (self) resx::CifarLoader(images, labels, batch_size, train, seed, drop_last, spec, prefetch, false,
                                         rank, world);
          },
          "images"_a, "labels"_a, "batch_size"_a, "train"_a, "seed"_a, "drop_last"_a, "spec"_a, "prefetch"_a = true,
          "rank"_a = 0, "world"_a = 1)
      .def("__len__", &resx::CifarLoader::size)
      .def("start_epoch", &resx::CifarLoader::start_epoch, "epoch"_a, nb::call_guard<nb::gil_scoped_release>())
      .def(
          "next",
          [](resx::CifarLoader& self) -> nb::object {
            std::optional<resx::Batch> batch;
            {
              nb::gil_scoped_release release;
              batch = self.next();
            }
            return batch ? nb::object(batch_tuple(*batch)) : nb::none();
          },
          "(images uint8, inputs float32, labels int64), or None at the end of the epoch");
}

// ---- training (mirrors resx.train)
void bind_training(nb::module_& m) {
  nb::class_<resx::Progress>(m, "Progress")
      .def_ro("phase", &resx::Progress::phase)
      .def_ro("epoch", &resx::Progress::epoch)
      .def_ro("epochs", &resx::Progress::epochs)
      .def_ro("step", &resx::Progress::step)
      .def_ro("steps", &resx::Progress::steps)
      .def_ro("loss", &resx::Progress::loss)
      .def_ro("images_per_s", &resx::Progress::images_per_s);

  nb::class_<resx::Trainer>(m, "Trainer", "The C++ training loop, configured by a run's config.json (resx-config/2).")
      .def(
          "__init__",
          [](resx::Trainer* self, const std::string& config_path, const std::string& runtime, int lock_fd, int64_t rank,
             int64_t world_size, const std::string& backend, const std::string& group_name) {
            auto config = resx::TrainConfig::read(config_path);
            config.runtime = runtime;
            nb::gil_scoped_release release;
            new (self) resx::Trainer(std::move(config), lock_fd, resx::World{rank, world_size, backend, group_name});
          },
          "config_path"_a, "runtime"_a = "cpp", "lock_fd"_a = -1, "rank"_a = 0, "world_size"_a = 1, "backend"_a = "",
          "group_name"_a = "",
          "lock_fd: the run directory's lock held by this process (resx.rundir.RunDir.lock_fd), -1 to take it. "
          "rank, world_size, backend, group_name: a data-parallel run's (resx.distributed.World), whose process "
          "group torch.distributed has created.")
      .def("run", &resx::run_interruptible, nb::call_guard<nb::gil_scoped_release>(),
           "Train on this thread (GIL released); SIGINT, SIGTERM or request_stop() stops it after the current "
           "step and it returns False.")
      .def("request_stop", &resx::Trainer::request_stop, "signal"_a, "Stop after the current step.")
      .def("stop_signal", &resx::Trainer::stop_signal, "The signal that stopped the run (0: none).")
      .def("progress", &resx::Trainer::progress);

  m.def(
      "evaluate",
      [](const std::string& checkpoint, const std::string& checkpoint_format, const std::string& data_dir,
         int64_t batch_size, int64_t test_subset, const resx::AugmentSpec& spec, const std::string& device,
         const std::string& model_file) {
        nb::gil_scoped_release release;
        std::unique_ptr<resx::Network> model;
        if (model_file.empty()) {  // the C++ frontend, from the checkpoint alone: no TorchScript
          model = std::make_unique<resx::Frontend>(checkpoint, device, checkpoint_format);
        } else {
          model = std::make_unique<resx::Model>(model_file, device);
          resx::load_weights(*model, checkpoint, checkpoint_format);
        }
        auto [x, y] = resx::first_n(resx::load_split(data_dir, "test"), test_subset);
        resx::CifarLoader loader(x, y, batch_size, false, 0, false, spec, true);
        auto r = resx::evaluate(*model, loader, at::Device(device));
        return std::make_tuple(r.loss, r.top_1, r.images);
      },
      "checkpoint"_a, "checkpoint_format"_a, "data_dir"_a, "batch_size"_a, "test_subset"_a, "spec"_a,
      "device"_a = "cpu", "model_file"_a = "",
      "Test loss, top-1 and images of a checkpoint's weights: in the C++ frontend module, or in the TorchScript "
      "model_file when given.");

  m.def(
      "record_schema",
      [](const std::string& record) {
        if (record == "StepRecord") return resx::record_schema<resx::StepRecord>();
        if (record == "EpochRecord") return resx::record_schema<resx::EpochRecord>();
        throw resx::Error("unknown record '" + record + "': StepRecord or EpochRecord");
      },
      "record"_a, "(name, kind) of every field of resx::StepRecord or resx::EpochRecord, in order.");
  m.def("describe", &resx::describe, "model"_a, "claimed_name"_a, nb::call_guard<nb::gil_scoped_release>(),
        "What a file says of itself, recomputed in C++ (the keys of manifest_claims).");
  m.def("manifest_claims", &resx::manifest_claims, "manifest_json"_a, "source"_a);
}

// ---- inference timing (mirrors resx.bench.runners)
// The extension's handle on an engine: Engine::open returns one of its subclasses.
struct EngineHandle {
  std::unique_ptr<resx::Engine> engine;
};

void bind_timing(nb::module_& m) {
  nb::class_<EngineHandle>(m, "Engine", "One engine (eager, script, frozen, aoti) running a resx model for inference.")
      .def(
          "__init__",
          [](EngineHandle* self, const std::string& path, const std::string& engine, const std::string& device,
             const std::string& dtype, bool channels_last, int64_t runners, bool deterministic, bool cuda_graphs,
             const std::vector<int64_t>& input_shape) {
            const resx::EngineOptions options{engine,  device,        dtype,       channels_last,
                                              runners, deterministic, cuda_graphs, input_shape};
            std::unique_ptr<resx::Engine> opened;
            {
              nb::gil_scoped_release release;
              opened = resx::Engine::open(path, options);
            }
            new (self) EngineHandle{std::move(opened)};
          },
          "path"_a, "engine"_a = "script", "device"_a = "cpu", "dtype"_a = "fp32", "channels_last"_a = false,
          "runners"_a = 1, "deterministic"_a = false, "cuda_graphs"_a = false,
          "input_shape"_a = std::vector<int64_t>{3, 32, 32})
      .def(
          "forward",
          [](EngineHandle& self, const at::Tensor& input) {
            nb::gil_scoped_release release;
            c10::InferenceMode guard;
            return self.engine->forward(input);
          },
          "input"_a, "Eval-mode forward with the GIL released; float32 in and out.")
      .def("fingerprint", [](const EngineHandle& self) { return self.engine->fingerprint(); })
      .def("state_fingerprint", [](const EngineHandle& self) { return self.engine->state_fingerprint(); })
      .def("weights_hash",
           [](const EngineHandle& self) {
             nb::gil_scoped_release release;
             return self.engine->weights_hash();
           })
      .def("compiled_threads", [](const EngineHandle& self) { return self.engine->compiled_threads(); })
      .def("recorded", [](const EngineHandle& self) { return self.engine->recorded(); })
      .def_prop_ro("load_seconds", [](const EngineHandle& self) { return self.engine->load_seconds(); });

  nb::class_<resx::Worker>(m, "Worker",
                           "A bench worker (resx.bench.protocol): the engine an Open request names, answering the "
                           "protocol's requests in C++ with the GIL released (the cpp runtimes' worker).")
      .def(
          "__init__",
          [](resx::Worker* self, const std::string& open) {
            const auto parsed = resx::parse_json(open, "open").get<resx::protocol::Open>();
            nb::gil_scoped_release release;
            new (self) resx::Worker(parsed);
          },
          "open"_a, "An Open request (JSON).")
      .def(
          "handle",
          [](resx::Worker& self, const std::string& request) {
            const auto parsed = resx::parse_json(request, "request");
            nb::gil_scoped_release release;
            return self.handle(parsed).dump();
          },
          "request"_a, "One request (JSON) -> its answer (JSON).")
      .def_prop_ro("load_seconds", &resx::Worker::load_seconds);
  m.def(
      "protocol_schema", [] { return resx::protocol::schema().dump(); },
      "Every protocol message and its fields, as C++ defines them (JSON).");
  m.def("callgrind_available", &resx::callgrind_available,
        "Whether this build has valgrind's callgrind client requests (callgrind.h was found).");
  m.def("cuda_graphs_available", &resx::cuda_graphs_available,
        "Whether this build can capture CUDA graphs (CUDA's runtime headers were found).");
  m.def("set_deterministic", &resx::set_deterministic, "on"_a);
  m.def(
      "describe_package",
      [](const std::string& path) {
        std::string manifest;
        std::map<std::string, std::string> found;
        {
          nb::gil_scoped_release release;
          found = resx::describe_package(path, &manifest);
        }
        return std::make_pair(found, manifest);
      },
      "path"_a, "(what an AOTInductor package's constants say, recomputed in C++; its manifest JSON)");
  m.def(
      "make_input",
      [](int64_t batch, uint64_t seed, const std::string& device, const std::vector<int64_t>& shape) {
        return resx::make_input(batch, seed, at::Device(device), shape);
      },
      "batch"_a, "seed"_a, "device"_a = "cpu", "shape"_a = std::vector<int64_t>{3, 32, 32});
  m.def(
      "input_hash",
      [](int64_t batch, uint64_t seed, const std::vector<int64_t>& shape) {
        return resx::tensor_sha1(resx::make_input(batch, seed, at::kCPU, shape));
      },
      "batch"_a, "seed"_a, "shape"_a = std::vector<int64_t>{3, 32, 32},
      "SHA-1 of the benchmark input's bytes, made in C++.");
  m.def(
      "warm_up",
      [](EngineHandle& engine, const at::Tensor& input, int64_t window, double tolerance, int64_t max_calls) {
        nb::gil_scoped_release release;
        return resx::warm_up(*engine.engine, input, {window, tolerance, max_calls});
      },
      "engine"_a, "input"_a, "window"_a, "tolerance"_a, "max_calls"_a);
  m.def(
      "time_forward",
      [](EngineHandle& engine, const at::Tensor& input, int64_t calls) {
        nb::gil_scoped_release release;
        return resx::time_forward(*engine.engine, input, calls);
      },
      "engine"_a, "input"_a, "calls"_a, "Nanoseconds of each of `calls` forward calls.");
  m.def(
      "time_threads",
      [](EngineHandle& engine, const at::Tensor& input, int threads, double seconds) {
        nb::gil_scoped_release release;
        auto r = resx::time_threads(*engine.engine, input, threads, seconds);
        return std::make_pair(r.calls, r.wall_ns);
      },
      "engine"_a, "input"_a, "threads"_a, "seconds"_a, "(calls, wall ns) of `threads` C++ threads.");
  m.def(
      "profile_forward",
      [](EngineHandle& engine, const at::Tensor& input, int64_t calls) {
        nb::gil_scoped_release release;
        return resx::profile_forward(*engine.engine, input, calls).dump();
      },
      "engine"_a, "input"_a, "calls"_a,
      "Every operator `calls` forward calls dispatch, through a RecordFunction callback (JSON: "
      "resx::profile_forward).");
  m.def(
      "device_memory", [](const std::string& device) { return resx::device_memory(at::Device(device)).dump(); },
      "device"_a, "The CUDA caching allocator's figures since the process started (JSON; {} off CUDA).");
  m.def("loadgen_available", &resx::loadgen_available, "Whether this build compiled LoadGen's sources in.");
  m.def(
      "loadgen",
      [](EngineHandle& engine, const std::string& request) {
        const auto parsed = resx::parse_json(request, "loadgen request");
        nb::gil_scoped_release release;
        return resx::run_loadgen(*engine.engine, parsed).dump();
      },
      "engine"_a, "request"_a,
      "One LoadGen test served by C++ threads, GIL released (request and answer: JSON, resx.bench.serving).");

  m.def(
      "bare_train_steps",
      [](resx::Network& model, const at::Tensor& inputs, const at::Tensor& labels, int64_t steps, double lr,
         double momentum, double weight_decay) {
        nb::gil_scoped_release release;
        return resx::bare_train_steps(model, inputs, labels, steps, lr, momentum, weight_decay);
      },
      "model"_a, "inputs"_a, "labels"_a, "steps"_a, "lr"_a, "momentum"_a, "weight_decay"_a,
      "Nanoseconds of each bare training step on one batch (the overhead reference).");
}

}  // namespace

NB_MODULE(_cpp, m) {
  m.doc() = "resx C++ runtime (LibTorch), the same code as the resx-cpp executable";
  // resx::Error is an input the user can fix: Python sees a resx.errors.ResxError (one line, no traceback).
  nb::exception<resx::Error>(m, "CppError", nb::module_::import_("resx.errors").attr("ResxError").ptr());
  bind_model(m);
  bind_data(m);
  bind_training(m);
  bind_timing(m);
}
