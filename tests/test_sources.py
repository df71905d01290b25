"""Your model, not only resx's: a torchvision builder, a factory in a module or a file, or a model file resx
did not write, through export, inspect, bench, train and eval with the same proofs; every bad input one
line. Small inputs and widths keep it quick."""

import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import invoke, make_cifar, run_resx
from test_ddp import assert_same_worlds
from typer.testing import CliRunner

from resx import _cpp
from resx import train as T
from resx.bench.results import read_json
from resx.bench.runners import make_runner
from resx.cli import app
from resx.engines import EngineOptions
from resx.errors import ResxError
from resx.export import export, export_weights, inspect, load, read_weights
from resx.recipe import TrainConfig
from resx.rundir import RunDir, read_checkpoint
from resx.sources import Source

# The fewest calls a bench run measures with: these tests check what it reports, not its figures.
TINY_BENCH = ["--latency-calls", "3", "--batch-sizes", "1", "--thread-counts", "1", "--thread-seconds", "0.1"]


def one_error(*args: str) -> str:
    """`resx ARGS` in this process failed with exactly one `error:` line and no traceback; that line."""
    result = CliRunner().invoke(app, list(args))
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


SMALL = (3, 48, 48)  # big enough for every family below, small enough to be quick
FACTORY = f"{Path(__file__).with_name('factories.py')}"


# ----------------------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mobilenet_v3_small", {"width_mult": 0.25}),
        ("shufflenet_v2_x0_5", {}),
        ("squeezenet1_1", {}),
        ("regnet_y_400mf", {}),
    ],
)
def test_torchvision_families_export_and_rebuild_to_the_same_fingerprint(tmp_path, name, kwargs):
    source = Source.parse(f"torchvision:{name}", kwargs, 10, SMALL)
    manifest = export_weights(source, tmp_path / "m.pth", seed=1)
    assert manifest["source"]["kind"] == "torchvision" and manifest["source"]["torchvision_version"]
    assert manifest["input"]["shape"] == [1, *SMALL] and manifest["model"]["num_classes"] == 10
    assert manifest["normalization"]["mean"] == [0.485, 0.456, 0.406]  # torchvision's ImageNet transforms
    assert manifest["flops_per_image"]["forward"] > 0
    # A later process rebuilds the same module from the manifest: the fingerprint proves it.
    state, recorded = read_weights(tmp_path / "m.pth")
    rebuilt = Source.from_manifest(recorded).build(seed=None, check=False)
    rebuilt.load_state_dict(state)
    result = inspect(tmp_path / "m.pth")
    assert result.failures == [] and not result.foreign and "c++" not in result.checks["fingerprint"]


def test_random_weights_come_from_the_seed(tmp_path):
    a = export_weights(Source.parse("torchvision:squeezenet1_1", None, 10, SMALL), tmp_path / "a.pth", seed=3)
    b = export_weights(Source.parse("torchvision:squeezenet1_1", None, 10, SMALL), tmp_path / "b.pth", seed=3)
    c = export_weights(Source.parse("torchvision:squeezenet1_1", None, 10, SMALL), tmp_path / "c.pth", seed=4)
    assert a["weights_hash"] == b["weights_hash"] != c["weights_hash"] and a["fingerprint"] == c["fingerprint"]


@pytest.mark.parametrize("spec", ["tests.factories:tiny_cnn", f"{FACTORY}:tiny_cnn"])
def test_a_factory_from_a_module_or_a_file_records_where_it_came_from(tmp_path, spec, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    source = Source.parse(spec, {"channels": 6}, 10, None)
    manifest = export(source, tmp_path / "m.pt")
    assert manifest["source"]["kwargs"] == {"channels": 6} and manifest["source"]["num_classes"] == 10
    assert (manifest["source"].get("sha1") is not None) == spec.startswith("/")
    assert manifest["export"]["graph"] == "script" and manifest["input"]["shape"] == [1, 3, 32, 32]
    module, _ = load(tmp_path / "m.pt")
    assert module(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_a_model_that_only_traces_is_traced_and_says_what_tracing_loses(tmp_path):
    manifest = export(Source.parse(f"{FACTORY}:only_traces", None, None, None), tmp_path / "m.pt")
    assert manifest["export"]["graph"] == "trace" and "control flow" in manifest["export"]["note"]
    proc = invoke("export", f"{FACTORY}:only_traces", "-o", str(tmp_path / "cli.pt"))
    assert proc.returncode == 0 and "traced" in proc.stdout and "frozen" in proc.stdout
    # py-eager's fingerprint is its own graph made the same way: traced at the recorded input.
    export_weights(Source.parse(f"{FACTORY}:only_traces", None, None, None), tmp_path / "w.pth")
    with make_runner("py-eager", tmp_path / "w.pth", EngineOptions()) as r:
        assert r.identity(0).fingerprint == manifest["fingerprint"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.nothing_here:make"], "cannot import tests.nothing_here (ModuleNotFoundError"),
        ([f"{FACTORY}:raises"], "raised ValueError: no model today"),
        ([f"{FACTORY}:not_a_module"], "returned a list, not a torch.nn.Module"),
        ([f"{FACTORY}:two_inputs"], "forward takes 2 inputs (x, y)"),
        ([f"{FACTORY}:returns_tuple"], "forward returns a tuple, not one tensor of logits"),
        ([f"{FACTORY}:no_parameters"], "the module has no parameters"),
        ([f"{FACTORY}:needs_224"], "rejects input 3x32x32 (AssertionError: give me 224"),
        ([f"{FACTORY}:missing"], "has no callable 'missing'"),
        (["torchvision:mobilenet_v9"], "not a classification builder of torchvision"),
        (["vgg"], "unknown model 'vgg'"),
        (["torchvision:squeezenet1_1", "--model-kwargs", "[1]"], "give a JSON object"),
        (["torchvision:squeezenet1_1", "--model-kwargs", '{"no_such": 1}'], "raised TypeError"),
        (["torchvision:squeezenet1_1", "--input-shape", "3,0"], "--input-shape '3,0': give C,H,W"),
        (["resnet18", "--model-kwargs", '{"a": 1}'], "--model-kwargs applies to torchvision and factory"),
    ],
)
def test_bad_models_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "m.pt"
    assert message in one_error("export", *args, "-o", str(out)) and not out.exists()


# ---------------------------------------------------------------------------------- foreign files


def test_a_foreign_torchscript_file_is_described_in_both_languages(foreign):
    result = inspect(foreign, shape=(3, 32, 32))
    assert result.foreign and result.failures == [] and result.manifest["derived"]
    assert result.manifest["model"]["num_classes"] == 7 and result.manifest["flops_per_image"]["forward"] > 0
    assert set(result.checks["fingerprint"]) == {"python", "c++"}
    proc = invoke("inspect", str(foreign))
    assert proc.returncode == 0 and "no resx manifest" in proc.stdout


def test_a_foreign_file_benches_against_the_python_runtime_of_its_engine(e2e):
    out, _ = e2e
    entry = read_json(out / "results.json").models["theirs"]
    assert entry.baseline == "py-script" and entry.gate.passed
    assert set(entry.paths()) == {"py-script", "py-script+again", "cpp-script", "exe-script"}
    assert {"py-eager", "cpp-eager"} <= set(entry.skipped) and any(c.check == "manifest" for c in entry.gate.checks)
    md = (out / "report.md").read_text()
    assert "a model resx did not write" in md and "vs py-script" in md


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda p: p.write_bytes(b"not a model"), [], "not a TorchScript file"),
        (lambda p: p.write_bytes(b"x"), ["--input-shape", "3,32,32"], "not a TorchScript file"),
        (None, [], "give --input-shape C,H,W"),
    ],
)
def test_bad_model_files_are_one_line(foreign, tmp_path, make, args, message):
    path = foreign
    if make is not None:
        path = tmp_path / "bad.pt"
        make(path)
    assert message in one_error("bench", "--model", str(path), *args, "-o", str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"x")
    assert "unknown model" in one_error("bench", "--model", str(bad), "-o", str(tmp_path / "r"))


# ------------------------------------------------------------------------------------ bench, train


def test_bench_mixes_kinds_and_refuses_cpp_eager_for_a_model_cpp_does_not_write(e2e, tmp_path):
    message = one_error(
        "bench", "--model", "torchvision:squeezenet1_1", "--runtime", "py-eager,cpp-eager", "-o", str(tmp_path / "r")
    )
    assert (
        "cpp-eager: resx writes no C++ module for torchvision:squeezenet1_1" in message
        and "runs on py-eager" in message
    )
    out, _ = e2e
    results = read_json(out / "results.json")
    assert set(results.models) == {"resnet18", "prints", "theirs"}
    assert "cpp-eager" in results.models["resnet18"].paths() and "cpp-eager" in results.models["prints"].skipped
    md = (out / "report.md").read_text()
    assert f"factory {FACTORY}:prints (file sha1" in md and "input 3x32x32" in md


def test_a_model_that_prints_a_thousand_lines_benches_in_every_runtime_it_runs_in(e2e):
    """Its workers speak the protocol on pipes of their own: what the model prints goes to their logs."""
    out, _ = e2e
    entry = read_json(out / "results.json").models["prints"]
    assert entry.gate.passed and {"py-eager", "py-script", "cpp-script", "exe-script"} <= set(entry.paths())
    assert set(entry.training) == {"py-eager"} and all(
        len(m.rounds) == 2 for m in entry.measurements if m.scenario.steady
    )


EAGER_AND_SCRIPT = ["py-eager", "cpp-eager", "py-script"]


def test_resx_s_own_files_are_known_by_their_manifest(tmp_path):
    """A TorchScript file or weights export resx wrote is the model its manifest records, with the file's own
    weights (not the bench's seed's), and needs no --input-shape; a .pth resx did not write is one line."""
    from conftest import bench_plan

    from resx.bench.prepare import prepare

    r8 = Source.parse("resnet18", None, None, None, width=8)
    recorded = export(r8, tmp_path / "r8.pt", seed=3)["weights_hash"]
    export_weights(r8, tmp_path / "r8.pth", seed=3)
    for name in ("r8.pt", "r8.pth"):
        (model,) = bench_plan(model={"models": [str(tmp_path / name)]}).models
        assert model.source.kind == "builtin" and model.source.config.width == 8 and model.source.weights
        assert "cpp-eager" in {p.runtime for p in model.paths} and model.baseline == "py-eager"
        # Prepared for the runtimes that read the manifest's weights alone: the default's AOTInductor packages
        # and ExecuTorch program are compiled from the same weights (a minute more, nothing more proved).
        (model,) = bench_plan(model={"models": [str(tmp_path / name)]}, paths={"runtimes": EAGER_AND_SCRIPT}).models
        work = tmp_path / name.replace(".", "-")
        work.mkdir()
        assert prepare(model, work, lambda _: None).manifest["weights_hash"] == recorded  # the file's, not seed 0's
    traced = tmp_path / "t.pt"
    export(Source.parse(f"{FACTORY}:only_traces", None, None, None), traced)
    assert Source.parse(str(traced), None, None, None).kind == "factory"
    (tmp_path / "theirs.pth").write_bytes(b"x")
    assert "not a resx weights export" in one_error(
        "bench", "--model", str(tmp_path / "theirs.pth"), "-o", str(tmp_path / "r")
    )


def test_versioned_state_round_trips_through_a_weights_export(tmp_path):
    """torchvision's MNASNet checks the version its state_dict records (_metadata); files keep tensors alone,
    and the module reads the version it writes."""
    from resx.engines import Engine

    source = Source.parse("torchvision:mnasnet0_5", None, 10, SMALL)
    export_weights(source, tmp_path / "m.pth")
    engine = Engine(tmp_path / "m.pth", EngineOptions("eager", input_shape=SMALL))
    assert engine(torch.zeros(1, *SMALL)).shape == (1, 10)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("exits", "exits() called sys.exit(3) instead of returning a model"),
        ("aborts", "its process was killed by SIGABRT while it imported or built the model"),
        ("hangs", "took more than 15 s (it hangs?)"),
    ],
)
def test_a_factory_that_exits_aborts_or_hangs_is_one_line(tmp_path, monkeypatch, factory, message):
    monkeypatch.setenv("RESX_BUILD_TIMEOUT", "15")  # the probe's own start takes a few seconds
    out = tmp_path / "m.pt"
    assert message in one_error("export", f"{FACTORY}:{factory}", "-o", str(out)) and not out.exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_cifar(tmp_path_factory.mktemp("tiny"), train_per_file=8, test=16)


def _train(tiny, run, runtime, module=None, **options):
    config = TrainConfig(**({"batch_size": 8, "threads": 1, "epochs": 2, "seed": 5} | options))
    outcome = T.start(config, run, runtime=runtime, data=tiny, module=module)
    assert outcome.complete, outcome.message
    return RunDir(run)


TV = {"model": "torchvision:mobilenet_v3_small", "model_kwargs": {"width_mult": 0.25}}


@pytest.mark.parametrize("runtime", ["cpp", "cpp-exe"])
def test_a_torchvision_model_with_dropout_trains_bit_identically_in_both_languages(tiny, tmp_path, runtime):
    """The same graph (the TorchScript file in C++, the eager module in Python), dropout drawn from the
    default generator seeded per epoch in both: equal to the last bit."""
    py = _train(tiny, tmp_path / "py", "py", **TV)
    cpp = _train(tiny, tmp_path / runtime, runtime, **TV)  # --module scripted: C++ has no module for it
    assert json.loads((tmp_path / runtime / "config.json").read_text())["module"] == "scripted"
    assert [s.loss for s in py.read_steps()] == [s.loss for s in cpp.read_steps()]
    a, b = read_checkpoint(py.path / "final.pt")["model"], read_checkpoint(cpp.path / "final.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (
        T.evaluate_checkpoint(cpp.path / "final.pt", tiny, "cpp", batch_size=8)["test_loss"]
        == py.read_epochs()[-1].test_loss
    )
    if runtime != "cpp":
        return  # the resume below is the same C++ code in the executable
    # Stopped in its second epoch and resumed: the dropout stream restarts from that epoch's seed. More
    # steps per epoch, so that the stop lands inside the epoch.
    more = make_cifar(tmp_path / "more", train_per_file=32, test=16)
    stop = T.Stop()

    def interrupt(p):
        if p.phase == "train" and p.epoch == 1 and p.step >= 1:
            stop.request(signal.SIGTERM)

    config = TrainConfig(**({"batch_size": 8, "threads": 1, "epochs": 2, "seed": 5} | TV))
    resumed = tmp_path / "resumed"
    assert not T.start(config, resumed, runtime=runtime, data=more, progress=interrupt, stop=stop).complete
    assert read_checkpoint(resumed / "checkpoint.pt")["epoch"] == 1
    assert T.resume(resumed).complete
    whole = _train(more, tmp_path / "whole", "py", **TV)
    assert [s.loss for s in RunDir(resumed).read_steps()] == [s.loss for s in whole.read_steps()]


def test_a_factory_model_trains_in_every_runtime_and_cpp_eager_is_refused(tiny, tmp_path):
    factory = {"model": f"{FACTORY}:tiny_cnn"}
    py = _train(tiny, tmp_path / "py", "py", **factory)
    exe = _train(tiny, tmp_path / "exe", "cpp-exe", **factory)
    assert [s.loss for s in py.read_steps()] == [s.loss for s in exe.read_steps()]
    with pytest.raises(ResxError, match=r"resx writes no C\+\+ module for .*--module scripted"):
        _train(tiny, tmp_path / "cpp", "cpp", module="eager", **factory)
    with pytest.raises(ResxError, match=r"rejects input 3x32x32"):
        _train(tiny, tmp_path / "vit", "py", model=f"{FACTORY}:needs_224")
    with pytest.raises(ResxError, match=r"gives 5 classes, not the 10 asked for"):
        _train(tiny, tmp_path / "five", "py", model=f"{FACTORY}:five_classes")
    with pytest.raises(ResxError, match="resx trains a model it can build"):
        _train(tiny, tmp_path / "file", "py", model=str(tmp_path / "py" / "final.pt"))


def test_c_plus_plus_engines_run_a_torchvision_model_at_its_own_shape(tmp_path):
    source = Source.parse("torchvision:squeezenet1_1", None, 10, SMALL)
    export(source, tmp_path / "m.pt")
    export_weights(source, tmp_path / "m.pth")
    options = EngineOptions(input_shape=SMALL)
    with (
        make_runner("py-eager", tmp_path / "m.pth", options) as py,
        make_runner("exe-script", tmp_path / "m.pt", options) as exe,
    ):
        a, b = py.identity(0), exe.identity(0)
    assert a.input_hash == b.input_hash == _cpp.input_hash(1, 0, list(SMALL))
    assert a.fingerprint == b.fingerprint and max(abs(x - y) for x, y in zip(a.output, b.output, strict=True)) <= 1e-4


def test_a_torchvision_model_trains_data_parallel_bit_identically_in_both_languages(tiny, tmp_path):
    runs = {}
    for runtime in ("py", "cpp"):
        out = tmp_path / runtime
        run_resx(
            "train",
            "--model",
            TV["model"],
            "--model-kwargs",
            json.dumps(TV["model_kwargs"]),
            "--runtime",
            runtime,
            "--nproc-per-node",
            "2",
            "--data",
            str(tiny),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "-o",
            str(out),
            check=True,
        )
        runs[runtime] = [s.loss for s in RunDir(out).read_steps()]
    assert runs["py"] == runs["cpp"] and len(runs["py"]) > 1
    assert json.loads((tmp_path / "cpp" / "config.json").read_text())["module"] == "scripted"
    assert_same_worlds(tmp_path / "py", tmp_path / "cpp", steps=len(runs["py"]))


def test_resume_refuses_in_one_line_a_factory_file_that_changed(tiny, tmp_path):
    mine = tmp_path / "mymod.py"
    mine.write_text(Path(FACTORY).read_text())
    run = _train(tiny, tmp_path / "run", "py", model=f"{mine}:tiny_cnn", epochs=1)
    mine.write_text(
        Path(FACTORY).read_text().replace("channels: int = 4", "channels: int = 6")
    )  # a layer changes shape
    before = {f.name: f.read_bytes() for f in run.path.iterdir() if f.is_file() and f.name != ".lock"}
    message = one_error("train", "--resume", str(run.path), "--epochs", "2")
    assert f"the factory file {mine} changed since the run started (SHA-1" in message and "start a new run" in message
    assert {f.name: f.read_bytes() for f in run.path.iterdir() if f.is_file() and f.name != ".lock"} == before
