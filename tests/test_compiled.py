"""The compiled paths: AOTInductor packages in both languages, frozen TorchScript, torch.compile, bf16 and
channels-last. Compiles take seconds even for a narrow ResNet: each package is built once per session."""

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import bench_plan, make_cifar
from typer.testing import CliRunner

from resx import _cpp, cpp
from resx import train as T
from resx.bench import gate as G
from resx.bench import protocol as P
from resx.bench.monitor import mapped_libraries
from resx.bench.registry import RUNTIMES, takes_input
from resx.bench.runners import make_runner
from resx.bench.workers.python import make_input
from resx.cli import app
from resx.engines import Engine, EngineOptions
from resx.errors import BenchError, ResxError
from resx.export import CompileSettings, export, export_aoti, export_weights, inspect, read_manifest, tensor_sha1
from resx.export.aoti import MANIFEST_NAME
from resx.export.executorch import MAX_BATCH, export_executorch
from resx.models import ModelConfig, build
from resx.recipe import TrainConfig
from resx.rundir import RunDir, read_checkpoint
from resx.tolerances import TOLERANCE

SMALL = ModelConfig("resnet18", width=8, layers=[1, 1, 1, 1])  # every kind of layer, half the kernels to compile


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """A TorchScript export, a weights export, an ExecuTorch program and three packages: fp32 with 1 thread
    compiled in, bf16 with dynamic threads (exported by `resx export`), and bf16 of other weights (seed 1)."""
    d = tmp_path_factory.mktemp("compiled")
    paths = {
        "pt": d / "m.pt",
        "fp32": d / "m-fp32.pt2",
        "bf16": d / "m-bf16.pt2",
        "seed1": d / "m-seed1.pt2",
        "pth": d / "m.pth",
        "pte": d / "m.pte",
    }
    manifest = export(SMALL, paths["pt"])
    export_weights(SMALL, paths["pth"])
    export_executorch(SMALL, paths["pte"])
    export_aoti(SMALL, paths["fp32"], settings=CompileSettings(threads=1))
    # bf16 through the command line, as a user exports it (test_cli_exports_a_package_... reads its answer)
    layers = ",".join(map(str, SMALL.layers))
    args = ["export", "resnet18", "--width", str(SMALL.width), "--layers", layers, "--dtype", "bf16"]
    paths["cli"] = CliRunner().invoke(app, [*args, "-o", str(paths["bf16"])])
    export_aoti(SMALL, paths["seed1"], seed=1, settings=CompileSettings(dtype="bf16"))
    return paths, manifest


def test_a_package_carries_the_manifest_and_its_compile_settings(files):
    paths, manifest = files
    m = read_manifest(paths["fp32"])
    assert m["format"] == "resx-aoti/1" and m["fingerprint"] == manifest["fingerprint"]
    assert m["weights_hash"] == manifest["weights_hash"] and m["model"] == manifest["model"]
    assert m["compile"] == {
        "device": "cpu",
        "dtype": "fp32",
        "threads": 1,
        "freezing": True,
        "memory_format": "contiguous",
    }
    assert read_manifest(paths["bf16"])["compile"]["threads"] == 0  # dynamic


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_a_package_is_verified_in_python_and_in_cpp(files, dtype):
    paths, _ = files
    result = inspect(paths[dtype])
    assert result.failures == [] and result.checks["runs"] == {"python": "yes", "c++": "yes", "manifest": "yes"}
    assert result.checks["outputs"]["python"] == f"within {TOLERANCE[('aoti', dtype)]:g}"
    out = cpp.run_executable("inspect", str(paths[dtype])).stdout
    assert "runs: yes" in out and "(recorded at export" in out


def one_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_truncated_and_foreign_packages_are_refused_in_both_languages(files, tmp_path):
    paths, _ = files
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(paths["fp32"].read_bytes()[:50_000])
    foreign = tmp_path / "foreign.pt2"
    with zipfile.ZipFile(paths["fp32"]) as src, zipfile.ZipFile(foreign, "w") as dst:
        for item in src.infolist():  # the same compiled model, without resx's manifest
            data = src.read(item)
            if item.filename.endswith("metadata.json"):
                meta = json.loads(data)
                meta.pop(MANIFEST_NAME, None)
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    assert "not" in one_error(CliRunner().invoke(app, ["inspect", str(truncated)]))
    with pytest.raises(ResxError, match="not"):
        _cpp.Engine(str(truncated), "aoti")
    for bad, message in ((truncated, "not"), (foreign, "no resx manifest")):  # resx-cpp inspect checks manifests
        exe = subprocess.run([str(cpp.executable()), "inspect", str(bad)], capture_output=True, text=True)
        assert exe.returncode == 1 and message in exe.stderr and "terminate" not in exe.stderr, exe.stderr
    # A package resx did not write: its shape must be given; then it is identified by its bytes and run.
    assert "give --input-shape C,H,W" in one_error(CliRunner().invoke(app, ["inspect", str(foreign)]))
    shown = CliRunner().invoke(app, ["inspect", str(foreign), "--input-shape", "3,32,32"])
    assert shown.exit_code == 0 and "no resx manifest" in shown.output, shown.output
    engine = _cpp.Engine(str(foreign), "aoti")
    assert engine.forward(make_input(2, 0)).shape == (2, 10)


def test_a_package_is_refused_under_settings_it_was_not_compiled_for(files):
    paths, _ = files
    for options, what in (
        (EngineOptions("aoti", dtype="bf16"), "dtype fp32"),
        (EngineOptions("aoti", channels_last=True), "memory_format contiguous"),
    ):
        with pytest.raises(ResxError, match=f"compiled for {what}.*re-export"):
            Engine(paths["fp32"], options)
        with pytest.raises(ResxError, match=f"compiled for {what}.*re-export"):
            _cpp.Engine(str(paths["fp32"]), "aoti", "cpu", options.dtype, options.channels_last)


# The runtimes whose engine opens in this process (ExecuTorch's C++ runtime is given its inputs instead: below).
ALL = [name for name in RUNTIMES if RUNTIMES[name].language != "exe" and not takes_input(name)]


def forward_of(name: str, file, dtype: str):
    """The forward of a runtime that lives in Python: its engine in this process (resx.engines.Engine, or the
    extension's resx::Engine)."""
    engine = RUNTIMES[name].engine
    if RUNTIMES[name].language == "py":
        return Engine(file, EngineOptions(engine, dtype=dtype)).forward
    return _cpp.Engine(str(file), engine, "cpu", dtype).forward


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_every_path_gives_eager_s_outputs_within_its_tolerance(files, dtype):
    paths, _ = files
    eager = build(SMALL, seed=0).eval()
    x = make_input(3, 5)
    with torch.inference_mode():
        reference = eager(x)
    for name in ALL:
        engine = RUNTIMES[name].engine
        if engine == "aoti" and dtype == "fp32":
            continue  # the fp32 package has 1 thread compiled in: covered by the gate test
        if engine == "executorch" and dtype == "bf16":
            continue  # the program runs as exported, at fp32
        file = paths[dtype] if engine == "aoti" else paths["pth" if engine in ("eager", "compile") else "pt"]
        file = paths["pte"] if engine == "executorch" else file
        with torch.inference_mode():
            diff = float((forward_of(name, file, dtype)(make_input(3, 5)).cpu() - reference).abs().max())
        assert diff <= TOLERANCE[(engine, dtype)], (name, dtype, diff)


ET = ["py-executorch", "cpp-executorch", "exe-executorch"]


def test_executorch_runs_in_every_language_and_its_executable_loads_no_libtorch(files):
    """Each ExecuTorch runtime in its own worker process: the same input (the C++ runtimes are given it and
    hash what they got), eager's outputs within the engine's tolerance, its threadpool sized from inside,
    and a batch of 3 timed; resx-executorch, and cpp-executorch's Python worker (which never imports torch),
    map ExecuTorch's libraries and no libtorch."""
    paths, _ = files
    eager = build(SMALL, seed=0).eval()
    with torch.inference_mode():
        reference = eager(make_input(1, 5))
    for name in ET:
        with make_runner(name, paths["pte"], EngineOptions("executorch")) as runner:
            assert runner.set_threads(2) == 2 and runner.set_threads(1) == 1
            identity = runner.identity(5)
            assert identity.input_hash == tensor_sha1(make_input(1, 5)), name
            diff = float((torch.tensor(identity.output) - reference.reshape(-1)).abs().max())
            assert diff <= TOLERANCE[("executorch", "fp32")], (name, diff)
            assert identity.env["executorch_version"] == "1.5.1" and identity.env["intra_op_threads"] == "1"
            assert len(runner.time(3, 7, 2)) == 2
            assert len(runner.time(MAX_BATCH, 7, 1)) == 1  # planned for the export's stated bound
            with pytest.raises(BenchError, match=f"batch {MAX_BATCH + 1} exceeds the {MAX_BATCH} ExecuTorch planned"):
                runner.time(MAX_BATCH + 1, 7, 1)
            if name == "exe-executorch":  # the request table resx-cpp's worker shares
                with pytest.raises(BenchError, match=r"request 'time': type must be number, but is string$"):
                    runner._ask(P.Time("one", 7, 1))  # straight to the worker: no input exists for it
                with pytest.raises(BenchError, match=r"'profile' failed: ExecuTorch's kernels are not ATen's"):
                    runner.profile(1, 7, 1)
            libraries = [Path(p).name for p in mapped_libraries(runner.pid)]
        assert any(n.startswith("libexecutorch") for n in libraries) or name == "py-executorch", name
        loads_torch = any(n.startswith(("libtorch", "libc10")) for n in libraries)
        assert loads_torch == (name == "py-executorch"), (name, libraries)


def test_a_program_is_exported_once_then_taken_from_the_cache(tmp_path, monkeypatch):
    from resx.export import executorch as X
    from resx.sources import Source

    monkeypatch.setenv("RESX_CACHE", str(tmp_path))
    exported = []

    def export(source, path, seed, weights, backend):  # the lowering itself is tested above, on real programs
        exported.append(path)
        Path(path).write_bytes(b"program")
        return {"format": X.FORMAT}

    monkeypatch.setattr(X, "export_executorch", export)
    source, manifest = Source.of_config(SMALL), {"fingerprint": "f", "weights_hash": "w", "created": "now"}
    first = X.cached_program(source, 0, manifest)
    assert not first[1] and first[0].parent == tmp_path / "executorch" and exported == [first[0]]
    assert X.cached_program(source, 0, manifest | {"created": "later"}) == (first[0], True) and len(exported) == 1
    other = X.cached_program(source, 0, manifest | {"weights_hash": "v"})  # other weights: another program
    assert not other[1] and other[0] != first[0]
    first[0].with_suffix(".json").unlink()  # an export that did not finish is done again
    assert X.cached_program(source, 0, manifest) == (first[0], False)


def test_a_program_is_verified_in_python_and_in_cpp(files):
    paths, manifest = files
    result = inspect(paths["pte"])
    assert result.checks["runs"] == {"python": "yes", "c++": "yes", "manifest": "yes"}
    assert result.checks["manifest"]["c++"] == "same" and not result.failures
    assert result.manifest["fingerprint"] == manifest["fingerprint"]
    shown = CliRunner().invoke(app, ["inspect", str(paths["pte"])])
    assert shown.exit_code == 0, shown.output


def foreign_programs(folder: Path) -> dict[str, Path]:
    """ExecuTorch programs resx did not write: one with no manifest (a Linear), one with an operator XNNPACK
    does not take and ExecuTorch's C++ kernels lack (sort)."""
    from executorch import exir
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class Sorted(torch.nn.Module):
        def forward(self, x):
            return x.sort(dim=1).values

    out = {}
    for name, module, x in (("plain", torch.nn.Linear(4, 2), torch.randn(1, 4)), ("sort", Sorted(), torch.randn(1, 4))):
        program = torch.export.export(module.eval(), (x,))
        lowered = exir.to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        out[name] = folder / f"{name}.pte"
        out[name].write_bytes(lowered.to_executorch().buffer)
    return out


def test_bad_programs_are_one_line_in_every_language(files, tmp_path):
    paths, _ = files
    truncated = tmp_path / "truncated.pte"
    truncated.write_bytes(paths["pte"].read_bytes()[:4096])
    foreign = foreign_programs(tmp_path)
    cases = [
        (truncated, "not a loadable ExecuTorch program", ET),
        (foreign["plain"], "no resx manifest", ET),
        (foreign["sort"], "an operator XNNPACK did not take has no kernel", ["cpp-executorch", "exe-executorch"]),
        (tmp_path / "absent.pte", "no such file", ET),
    ]
    for file, message, runtimes in cases:
        for name in runtimes:
            with pytest.raises(BenchError, match=message) as refused:
                make_runner(name, file, EngineOptions("executorch")).start()
            assert "\n" not in str(refused.value), (name, str(refused.value))
        shown = CliRunner().invoke(app, ["inspect", str(file)])
        assert shown.exit_code != 0 and "Traceback" not in shown.output, shown.output


def test_the_gate_checks_compiled_threads_and_refuses_other_weights(files):
    paths, manifest = files

    def gate(specs, threads):
        runners = [
            make_runner(name, paths[key], EngineOptions(dtype=dtype), label) for name, key, dtype, label in specs
        ]
        for r in runners:
            r.start()
            r.set_threads(threads)
        try:
            ids = {label: r.identity(0) for r, (_, _, _, label) in zip(runners, specs, strict=True)}
            return G.fairness_gate(ids, {r.name: r.options for r in runners}, manifest, threads)
        finally:
            for r in runners:
                r.stop()

    def failed(g):
        return {c.check.split(" (")[0] for c in g.failures}

    baked = [("py-eager", "pt", "fp32", "py-eager"), ("cpp-aoti", "fp32", "fp32", "cpp-aoti")]
    assert failed(gate(baked, 1)) == set()
    if (torch.get_num_threads() or 1) >= 2:
        assert failed(gate(baked, 2)) == {"compiled for the run's threads"}
    other = [("py-eager", "pt", "fp32", "py-eager"), ("exe-aoti", "seed1", "bf16", "exe-aoti@bf16")]
    result = gate(other, 1)
    assert failed(result) == {"weights", "outputs"}
    assert "(recorded)" in next(c for c in result.checks if c.check == "weights").detail["exe-aoti@bf16"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_cifar(tmp_path_factory.mktemp("tiny"), train_per_file=8, test=16)


def train(tiny, run_dir, runtime, **options):
    config = TrainConfig(**({"epochs": 1, "batch_size": 8, "seed": 1, "threads": 1, "width": 16} | options))
    assert T.start(config, run_dir, runtime=runtime, data=tiny).complete
    return RunDir(run_dir)


@pytest.mark.parametrize("options", [{"dtype": "bf16"}, {"dtype": "bf16", "channels_last": True}])
@pytest.mark.parametrize("runtime", ["cpp", "cpp-exe"])
def test_bf16_and_channels_last_train_bit_identically_in_both_languages(tiny, tmp_path, runtime, options):
    a, b = train(tiny, tmp_path / "py", "py", **options), train(tiny, tmp_path / runtime, runtime, **options)
    assert [s.loss for s in a.read_steps()] == [s.loss for s in b.read_steps()]
    wa, wb = read_checkpoint(a.path / "final.pt")["model"], read_checkpoint(b.path / "final.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    fp32 = train(tiny, tmp_path / "fp32", "py")
    assert [s.loss for s in a.read_steps()] != [s.loss for s in fp32.read_steps()]  # bf16 did take effect


def test_torch_compile_training_stays_within_a_stated_tolerance_of_eager(tiny, tmp_path):
    shallow = {"layers": [1, 1, 1, 1]}  # every kind of layer, half the graph to compile (20 s instead of 40 here)
    eager = train(tiny, tmp_path / "eager", "py", **shallow)
    compiled = train(tiny, tmp_path / "compiled", "py", compile=True, **shallow)
    le, lc = [s.loss for s in eager.read_steps()], [s.loss for s in compiled.read_steps()]
    # Inductor's kernels fuse and reorder float sums: not bit-identical; over 5 steps at lr 0.1 the
    # losses stay within 1% of eager's (measured: within 0.1%).
    assert lc == pytest.approx(le, rel=1e-2)
    final = json.loads((compiled.path / "run.json").read_text())["final"]
    assert (
        final["compile_seconds"] > 0
        and json.loads((eager.path / "run.json").read_text())["final"]["compile_seconds"] == 0
    )
    with pytest.raises(ResxError, match="--compile applies to the py runtime"):
        train(tiny, tmp_path / "bad", "cpp", compile=True)


def test_cli_exports_a_package_and_refuses_a_bad_format(files, tmp_path):
    runner = CliRunner()
    paths, _ = files
    out, result = tmp_path / "m.pt2", paths["cli"]  # the session's bf16 package, exported by the command line
    assert result.exit_code == 0 and "AOTInductor for cpu bf16" in result.stdout, result.stderr
    assert read_manifest(paths["bf16"])["compile"]["dtype"] == "bf16"
    assert "--format" in one_error(runner.invoke(app, ["export", "resnet18", "-o", str(out), "--format", "onnx"]))
    assert "resx writes .pt (torchscript), .pt2 (aoti)" in one_error(
        runner.invoke(app, ["export", "resnet18", "-o", str(tmp_path / "model.onnx")])
    )
    assert not (tmp_path / "model.onnx").exists()
    assert "bf16" in one_error(
        runner.invoke(app, ["export", "resnet18", "-o", str(tmp_path / "x.pt2"), "--dtype", "fp16"])
    )
    assert "a .pt file holds torchscript, not aoti" in one_error(
        runner.invoke(app, ["export", "resnet18", "-o", str(tmp_path / "x.pt"), "--format", "aoti"])
    )


def test_bench_keeps_the_aoti_package_faster_at_batch_1(tmp_path, monkeypatch):
    """--aoti-freezing auto compiles the package with and without freezing and keeps the faster at batch 1
    in a fresh exe-aoti process, recording both times; on or off compiles that one alone."""
    from resx.bench.prepare import prepare
    from resx.bench.rounds import choose_packages

    monkeypatch.setenv("RESX_CACHE", str(tmp_path / "cache"))  # compiled here, then cached
    sections = dict(paths={"runtimes": ["exe-aoti"], "threads": 1}, model={"width": 2, "layers": [1, 1, 1, 1]})
    (model,) = bench_plan(**sections).models
    prepared = prepare(model, tmp_path, lambda _: None)
    assert set(prepared.candidates["fp32"]) == {"on", "off"}

    def make(p):
        return make_runner(p.runtime, prepared.file(p.engine, p.dtype), model.engine_options(p, (3, 32, 32)), p.label)

    package = choose_packages(model, prepared, make, lambda _: None)["fp32"]
    times = package.freezing_batch1_s
    assert set(times) == {"on", "off"} and min(times.values()) > 0
    assert package.freezing == (times["on"] <= times["off"]) and package.compile["freezing"] == package.freezing
    assert read_manifest(prepared.file("aoti", "fp32"))["compile"]["freezing"] == package.freezing
    (alone,) = bench_plan(**sections | {"paths": sections["paths"] | {"aoti_freezing": "off"}}).models
    again = prepare(alone, tmp_path, lambda _: None)
    assert list(again.candidates["fp32"]) == ["off"] and again.candidates["fp32"]["off"].cached
    with pytest.raises(BenchError, match="--aoti-freezing 'sometimes': give auto, on or off"):
        bench_plan(paths={"runtimes": ["exe-aoti"], "aoti_freezing": "sometimes"})
