"""The C++ that C++ users write: the ResNets in LibTorch's C++ frontend (torch::nn, resnet_cpp/resnet.cpp),
the exact mirror of py-eager. Same state_dict, bit-identical outputs, in bench as cpp-eager and exe-eager,
and training, evaluation and inference from weights alone, with no TorchScript."""

import contextlib
import json
import subprocess
import zipfile

import pytest
import torch
from conftest import invoke, make_cifar

from resx import _cpp, cpp
from resx import train as T
from resx.bench import gate as G
from resx.bench import protocol as P
from resx.bench.runners import make_runner
from resx.bench.workers.python import make_input
from resx.engines import EngineOptions
from resx.errors import BenchError, ResxError
from resx.export import export, export_weights, read_weights
from resx.files import atomic_write, torch_bytes
from resx.models import ModelConfig, build
from resx.recipe import TrainConfig
from resx.rundir import RunDir

CONFIGS = [
    ModelConfig("resnet18", width=8),
    ModelConfig("resnet50", width=4),
    ModelConfig("resnet18", stem="imagenet", width=8),
    ModelConfig("resnet34", layers=[1, 2, 1, 1], width=4, num_classes=7),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.name}-{c.stem}-{c.block_layers}")
def test_the_cpp_module_has_the_python_state_dict_and_its_outputs_to_the_last_bit(tmp_path, config, restore_threads):
    path = tmp_path / "w.pth"
    manifest = export_weights(config, path, seed=3)
    cpp_module = _cpp.Frontend(str(path))
    py_module = build(config, seed=3).eval()
    state = py_module.state_dict()
    cpp_state = dict(cpp_module.named_parameters()) | dict(cpp_module.named_buffers())
    assert [n for n, _ in py_module.named_parameters()] == [n for n, _ in cpp_module.named_parameters()]
    assert [n for n, _ in py_module.named_buffers()] == [n for n, _ in cpp_module.named_buffers()]
    assert all(torch.equal(t, cpp_state[n]) for n, t in state.items()) and cpp_state.keys() == state.keys()
    assert cpp_module.state_fingerprint() == manifest["state_fingerprint"]
    assert cpp_module.weights_hash() == manifest["weights_hash"] and cpp_module.fingerprint() == manifest["fingerprint"]
    cpp_module.eval()
    x = make_input(3, 1)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            assert torch.equal(cpp_module(x), py_module(x)), threads


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("frontend")
    config = ModelConfig("resnet18", width=8)
    other = ModelConfig("resnet18", width=8, stem="imagenet")
    return {
        "pth": d / "m.pth",
        "pt": d / "m.pt",
        "other": d / "other.pth",
        "manifest": export_weights(config, d / "m.pth"),
        "script": export(config, d / "m.pt"),
        "other_manifest": export_weights(other, d / "other.pth"),
    }


@pytest.mark.parametrize(("dtype", "channels_last"), [("fp32", False), ("fp32", True), ("bf16", False)])
def test_cpp_eager_and_exe_eager_give_py_eager_s_outputs_bit_for_bit(files, dtype, channels_last):
    """In bench, each in a process of its own: the gate's outputs equal to py-eager's to the last bit
    (equal threads, 1 then 2 in the same processes; at bf16 both run under the dispatcher's autocast)."""
    options = EngineOptions(dtype=dtype, channels_last=channels_last)
    names = ("py-eager", "cpp-eager", "exe-eager")
    with contextlib.ExitStack() as stack:
        runners = {name: stack.enter_context(make_runner(name, files["pth"], options)) for name in names}
        for threads in (1, 2):
            ids = {}
            for name, r in runners.items():
                assert r.set_threads(threads) == threads
                ids[name] = r.identity(0)
            assert ids["cpp-eager"].output == ids["py-eager"].output, threads
            assert ids["exe-eager"].output == ids["py-eager"].output, threads
            assert {i.state for i in ids.values()} == {files["manifest"]["state_fingerprint"]}
            assert {i.weights_hash for i in ids.values()} == {files["manifest"]["weights_hash"]}
            assert (
                ids["cpp-eager"].fingerprint == "" and ids["py-eager"].fingerprint == files["manifest"]["fingerprint"]
            )


def test_the_gate_proves_the_cpp_module_by_its_state_weights_and_outputs(files):
    def gate(specs):
        ids, opts = {}, {}
        for label, name, key in specs:
            with make_runner(name, files[key], EngineOptions()) as r:
                r.set_threads(torch.get_num_threads())
                ids[label], opts[label] = r.identity(0), r.options
        return G.fairness_gate(ids, opts, files["manifest"], torch.get_num_threads())

    good = gate(
        [("py-eager", "py-eager", "pth"), ("cpp-eager", "cpp-eager", "pth"), ("cpp-script", "cpp-script", "pt")]
    )
    assert good.failures == []
    row = next(c for c in good.checks if c.check == "fingerprint")
    assert row.detail["cpp-eager"] == "(a C++ module: no graph)"
    bad = gate([("py-eager", "py-eager", "pth"), ("exe-eager", "exe-eager", "other")])
    failed = {c.check.split(" (")[0] for c in bad.failures}
    assert {"parameters and buffers", "weights", "outputs"} <= failed


def test_the_cpp_worker_names_a_malformed_request_and_passes_an_answer_s_own_error(files):
    with make_runner("exe-eager", files["pth"], EngineOptions()) as r:
        with pytest.raises(BenchError, match=r"'time' failed: request 'time': type must be number, but is string$"):
            r.ask(P.Time("one", 7, 1))
        with pytest.raises(BenchError, match=r"'time' failed: Trying to create tensor with negative dimension"):
            r.ask(P.Time(-1, 7, 1))  # raised by LibTorch while answering: not relabelled as the request's fields
        assert len(r.time(1, 7, 2)) == 2  # still serving


def _no_torchscript_in(run) -> bool:
    """No file of the run directory is a TorchScript archive (those hold the module's code/)."""
    archives = [f for f in run.iterdir() if f.is_file() and zipfile.is_zipfile(f)]
    names = [n for f in archives for n in zipfile.ZipFile(f).namelist()]
    return bool(archives) and not any(n.split("/", 2)[1:2] == ["code"] for n in names)


@pytest.mark.parametrize("runtime", ["cpp", "cpp-exe"])
def test_cpp_trains_evaluates_and_resumes_with_no_torchscript_file(tmp_path, runtime):
    data = make_cifar(tmp_path / "data", train_per_file=8, test=16)
    run = tmp_path / "run"
    config = TrainConfig(width=8, batch_size=8, threads=1, epochs=1)
    outcome = T.start(config, run, runtime=runtime, data=data)  # --module eager: the default
    assert outcome.complete and (run / "model.pth").is_file() and not (run / "model.pt").exists()
    assert _no_torchscript_in(run)
    saved = json.loads((run / "config.json").read_text())
    assert saved["module"] == "eager" and saved["model_file"].endswith("model.pth")
    assert T.resume(run, epochs=2).complete and _no_torchscript_in(run)
    cpp_eval = T.evaluate_checkpoint(run / "final.pt", data, "cpp", batch_size=8)
    py_eval = T.evaluate_checkpoint(run / "final.pt", data, "py", batch_size=8)
    assert cpp_eval["test_loss"] == py_eval["test_loss"] and cpp_eval["test_top_1"] == py_eval["test_top_1"]
    assert T.start(config, tmp_path / "py", data=data).complete and T.resume(tmp_path / "py", epochs=2).complete
    assert [s.loss for s in RunDir(run).read_steps()] == [s.loss for s in RunDir(tmp_path / "py").read_steps()]


def test_weights_export_inspect_in_both_languages_and_cli(tmp_path):
    out = tmp_path / "r.pth"
    proc = invoke("export", "resnet18", "--width", "8", "-o", str(out))
    assert proc.returncode == 0 and "weights" in proc.stdout and read_weights(out)[1]["format"] == "resx-weights/1"
    assert invoke("inspect", str(out)).returncode == 0
    exe = subprocess.run([str(cpp.executable()), "inspect", str(out)], capture_output=True, text=True)
    assert exe.returncode == 0 and "state_fingerprint" in exe.stdout, exe.stderr
    # Tensors that do not fit: refused by name and shape, before anything is copied.
    state, manifest = read_weights(out)
    state["fc.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pth"
    atomic_write(bad, torch_bytes({"format": "resx-weights/1", "manifest": json.dumps(manifest), "state": state}))
    with pytest.raises(ResxError, match=r"tensor 'fc\.weight' is"):
        _cpp.Frontend(str(bad))


def test_a_network_the_cpp_module_does_not_write_is_refused_naming_the_engines_that_can(tmp_path):
    out = tmp_path / "r.pth"
    export_weights(ModelConfig("resnet18", width=8), out)
    state, manifest = read_weights(out)
    manifest["model"]["name"] = "mobilenet_v3_small"
    other = tmp_path / "other.pth"
    atomic_write(other, torch_bytes({"format": "resx-weights/1", "manifest": json.dumps(manifest), "state": state}))
    with pytest.raises(ResxError, match="TorchScript or AOTInductor engines"):
        _cpp.Engine(str(other), "eager")


def test_when_torchscript_is_refused_the_eager_paths_of_both_languages_keep_working(tmp_path, monkeypatch):
    """A future torch that refuses TorchScript (deprecated in 2.14): weights export, eager training in both
    languages and C++ evaluation go on, fingerprinted by their state; the TorchScript export says why not."""
    from resx.export import torchscript

    def refused(_module):
        raise RuntimeError("TorchScript is not available in this build")

    monkeypatch.setattr(torchscript, "script", refused)
    monkeypatch.setattr(torchscript, "trace", lambda _module, _example: refused(_module))
    manifest = export_weights(ModelConfig("resnet18", width=8), tmp_path / "w.pth")
    assert manifest["fingerprint"] == f"state:{manifest['state_fingerprint']}"
    with pytest.raises(ResxError, match=r"script failed: TorchScript is not available .* weights \(\.pth\)"):
        export(ModelConfig("resnet18", width=8), tmp_path / "m.pt")
    data = make_cifar(tmp_path / "data", train_per_file=8, test=16)
    config = TrainConfig(width=8, batch_size=8, threads=1, epochs=1)
    py, cpp_run = (
        T.start(config, tmp_path / "py", data=data),
        T.start(config, tmp_path / "cpp", runtime="cpp", data=data),
    )
    assert py.complete and cpp_run.complete
    assert [s.loss for s in RunDir(tmp_path / "py").read_steps()] == [
        s.loss for s in RunDir(tmp_path / "cpp").read_steps()
    ]
    assert T.evaluate_checkpoint(tmp_path / "cpp" / "final.pt", data, "cpp", batch_size=8)["images"] == 16
