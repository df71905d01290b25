"""CUDA in every runtime: deterministic training parity, CUDA graphs, the gate on the device. These run on
a machine with a GPU (benchmarks/device/run.py runs them there) and are skipped elsewhere."""

import pytest
import torch
from conftest import make_cifar

from resx import _cpp
from resx import train as T
from resx.bench import gate as G
from resx.bench.registry import CLASSIC
from resx.bench.runners import make_runner
from resx.bench.workers.python import make_input
from resx.engines import Engine, EngineOptions
from resx.errors import ResxError
from resx.export import export
from resx.models import ModelConfig
from resx.recipe import TrainConfig
from resx.rundir import RunDir, read_checkpoint
from resx.tolerances import tolerance

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_cifar(tmp_path_factory.mktemp("tiny"), train_per_file=16, test=32)


def train(tiny, run_dir, runtime, **options):
    config = TrainConfig(**({"epochs": 2, "batch_size": 16, "seed": 1, "width": 16, "device": "cuda"} | options))
    assert T.start(config, run_dir, runtime=runtime, data=tiny).complete
    return RunDir(run_dir)


@pytest.mark.parametrize("runtime", ["cpp", "cpp-exe"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_deterministic_cuda_training_is_bit_identical_in_both_languages(tiny, tmp_path, runtime, dtype):
    a = train(tiny, tmp_path / "py", "py", deterministic=True, dtype=dtype)
    b = train(tiny, tmp_path / runtime, runtime, deterministic=True, dtype=dtype)
    assert [s.loss for s in a.read_steps()] == [s.loss for s in b.read_steps()]
    wa, wb = read_checkpoint(a.path / "final.pt")["model"], read_checkpoint(b.path / "final.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cuda_training_without_determinism_stays_within_a_bound(tiny, tmp_path):
    a, b = train(tiny, tmp_path / "py", "py"), train(tiny, tmp_path / "cpp", "cpp")
    # cuDNN may pick other algorithms per process: not bit-identical, but close over a few steps.
    assert [s.loss for s in a.read_steps()] == pytest.approx([s.loss for s in b.read_steps()], rel=1e-3)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.pt"
    export(ModelConfig("resnet18", width=16), path)
    return path


@pytest.mark.parametrize("engine", ["script", "frozen"])
def test_cuda_graphs_replay_the_same_outputs_in_both_languages(model_file, engine):
    x = make_input(4, 3, "cuda")
    plain = Engine(model_file, EngineOptions(engine, "cuda"))
    graphed = Engine(model_file, EngineOptions(engine, "cuda", cuda_graphs=True))
    with torch.inference_mode():
        ref = plain(x).clone()
        assert torch.equal(graphed(x).clone(), ref) and torch.equal(graphed(x).clone(), ref)  # captured, replayed
    if not _cpp.cuda_graphs_available():  # built where CUDA's runtime headers were not found: it says so
        with pytest.raises(ResxError, match="without CUDA's runtime headers"):
            _cpp.Engine(str(model_file), engine, "cuda", "fp32", False, 1, False, True)
        return
    cpp_graphed = _cpp.Engine(str(model_file), engine, "cuda", "fp32", False, 1, False, True)
    out = cpp_graphed.forward(x).clone()
    assert float((out - ref).abs().max()) <= tolerance(engine, "fp32", "cuda")


def test_the_gate_passes_on_cuda_and_compares_cuda_settings(model_file):
    manifest = export(ModelConfig("resnet18", width=16), model_file)
    ids, options = {}, {}
    for name in CLASSIC:
        with make_runner(name, model_file, EngineOptions(device="cuda")) as r:
            r.set_threads(torch.get_num_threads())
            ids[name], options[name] = r.identity(0), r.options
    gate = G.fairness_gate(ids, options, manifest, torch.get_num_threads())
    assert gate.failures == [], gate.failures
    row = next(c for c in gate.checks if c.check.startswith("CUDA settings"))
    assert torch.cuda.get_device_name(0) in row.detail["py-eager"]


def test_the_allocators_figures_come_from_inside_every_runtime(model_file):
    """Python's torch.cuda.memory_stats and C++'s CUDACachingAllocator::getDeviceStats, the same keys."""
    for name in CLASSIC:
        with make_runner(name, model_file, EngineOptions(device="cuda")) as r:
            r.time(8, 0, 2)
            held = r.device_memory()
        assert held.peak_allocated_bytes >= held.allocated_bytes > 0 and held.peak_reserved_bytes > 0, name
        assert 0 < held["allocated_bytes"] <= held["peak_allocated_bytes"] <= held["peak_reserved_bytes"], name
