"""Training parity: py, cpp and cpp-exe do the same training, bit for bit."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import make_cifar, run_resx

from resx import train as T
from resx.recipe import TrainConfig

CONFIG = dict(epochs=2, batch_size=8, seed=1, threads=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """40 training and 16 test images: 5 steps per epoch at batch 8."""
    return make_cifar(tmp_path_factory.mktemp("tiny"), train_per_file=8, test=16)


def run(tiny, run_dir, runtime, py_module="eager", **overrides):
    prepared = T.prepare(TrainConfig(**(CONFIG | overrides)), runtime, tiny, run_dir)
    result = T.train(prepared, py_module)
    assert result.complete
    return run_dir


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def assert_same_training(a, b):
    assert [r["loss"] for r in rows(a / "steps.csv")] == [r["loss"] for r in rows(b / "steps.csv")]
    assert [r["lr"] for r in rows(a / "steps.csv")] == [r["lr"] for r in rows(b / "steps.csv")]
    for col in ("Train_loss", "Train_top_1", "Test_loss", "Test_top_1"):
        assert [r[col] for r in rows(a / "metrics.csv")] == [r[col] for r in rows(b / "metrics.csv")]
    wa, wb = T.read_checkpoint(a / "final.pt"), T.read_checkpoint(b / "final.pt")
    assert wa["fingerprint"] == wb["fingerprint"]
    assert wa["model"].keys() == wb["model"].keys()
    for name, tensor in wa["model"].items():  # parameters and buffers
        assert torch.equal(tensor, wb["model"][name]), name


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    return run(tiny, tmp_path_factory.mktemp("runs") / "py", "py")


@pytest.mark.parametrize("runtime", ["cpp", "cpp-exe"])
def test_cpp_runtimes_train_bit_identically_to_python(tiny, tmp_path, reference, runtime):
    other = run(tiny, tmp_path / runtime, runtime)
    assert_same_training(reference, other)
    # a checkpoint C++ wrote (torch::pickle_save) goes back into an export, loaded weights_only
    from resx.export import export, load
    from resx.models import ModelConfig

    export(ModelConfig("resnet18"), tmp_path / "trained.pt", weights=other / "final.pt")
    module, _ = load(tmp_path / "trained.pt")
    trained = T.read_checkpoint(other / "final.pt")["model"]
    assert all(torch.equal(t, trained[name]) for name, t in module.state_dict().items())
    assert json.loads((other / "run.json").read_text())["runtime"] == runtime
    assert len(rows(other / "steps.csv")) == 10


def test_scripted_module_from_python_trains_identically(tiny, tmp_path, reference):
    assert_same_training(reference, run(tiny, tmp_path / "scripted", "py", py_module="scripted"))


def test_two_threads_are_bit_identical_too(tiny, tmp_path):
    a = run(tiny, tmp_path / "py", "py", threads=2, epochs=1)
    b = run(tiny, tmp_path / "cpp", "cpp", threads=2, epochs=1)
    assert_same_training(a, b)


def test_outputs_have_the_well_known_columns(reference):
    metrics = rows(reference / "metrics.csv")
    assert len(metrics) == 2
    for col in (
        "Epoch",
        "Wall Time",
        "Epoch time",
        "Train_loss",
        "Train_top_1",
        "Test_loss",
        "Test_top_1",
        "data_s",
        "forward_s",
        "backward_s",
        "optimizer_s",
    ):
        assert metrics[0][col] != "", col
    info = json.loads((reference / "run.json").read_text())
    assert info["status"] == "complete" and info["config"]["batch_size"] == 8
    assert info["fingerprint"] == T.read_checkpoint(reference / "final.pt")["fingerprint"]
    assert "python" in info["env"] and "cpp" in info["env"]
    ckpt = T.read_checkpoint(reference / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 10 and len(ckpt["momentum"]) == 62


def test_learning_rates_are_the_recipe_s(reference):
    lrs = TrainConfig(**CONFIG).learning_rates(5)
    assert [float(r["lr"]) for r in rows(reference / "steps.csv")] == lrs
    assert lrs[0] == 0.1 and lrs[-1] < 0.01
    warm = TrainConfig(**CONFIG, warmup_epochs=1).learning_rates(5)
    assert warm[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])


@pytest.mark.parametrize("runtime", ["py", "cpp"])
def test_interrupted_then_resumed_equals_uninterrupted(tiny, tmp_path, reference, runtime):
    run_dir = tmp_path / runtime
    prepared = T.prepare(TrainConfig(**CONFIG), runtime, tiny, run_dir)

    def interrupt(p):  # Ctrl-C during the second epoch
        if p.phase == "train" and p.epoch == 1 and p.step >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train(prepared, progress=interrupt)
    ckpt = T.read_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and not (run_dir / "final.pt").exists()
    config, saved_runtime, data = T.load_run(run_dir)
    assert saved_runtime == runtime
    assert T.train(T.prepare(config, runtime, data, run_dir, resume=True)).complete
    assert_same_training(reference, run_dir)


@pytest.mark.parametrize("runtime", ["py", "cpp", "cpp-exe"])
def test_ctrl_c_stops_the_cli_and_keeps_the_last_epoch(tiny, tmp_path, runtime):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "resx",
            "train",
            "--runtime",
            runtime,
            "--data",
            str(tiny),
            "--epochs",
            "20",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "-o",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A runner started in the background inherits SIGINT ignored; a user's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while not (run_dir / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert time.time() - sent < 20  # within a step or so (a step is ~0.3 s here)
    assert "--resume" in err
    epochs_done = T.read_checkpoint(run_dir / "checkpoint.pt")["epoch"]
    assert 1 <= epochs_done < 20


def test_cross_evaluation_agrees(tiny, tmp_path, reference):
    py = T.evaluate_checkpoint(reference / "final.pt", tiny, "py", batch_size=8)
    cpp = T.evaluate_checkpoint(reference / "final.pt", tiny, "cpp", batch_size=8)
    assert py["test_loss"] == cpp["test_loss"] and py["test_top_1"] == cpp["test_top_1"] and py["images"] == 16
    last = rows(reference / "metrics.csv")[-1]
    assert float(last["Test_loss"]) == py["test_loss"]
    out = json.loads(
        run_resx(
            "eval",
            str(reference / "final.pt"),
            "--runtime",
            "cpp",
            "--data",
            str(tiny),
            "--batch-size",
            "8",
            "--json",
            check=True,
        ).stdout
    )
    assert out["test_loss"] == py["test_loss"]


def _error(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_inputs(tiny, tmp_path, reference):
    base = ["train", "--data", str(tiny), "-o", str(tmp_path / "r")]
    assert "unknown model 'resnet7'" in _error(run_resx(*base, "--model", "resnet7"))
    assert "epochs must be at least 1" in _error(run_resx(*base, "--epochs", "0"))
    assert "batch size must be at least 1" in _error(run_resx(*base, "--batch-size", "-4"))
    assert "no such directory" in _error(run_resx("train", "--data", str(tmp_path / "none"), "-o", str(tmp_path / "r")))
    assert "unknown runtime" in _error(run_resx(*base, "--runtime", "java"))
    # weights from another architecture: a resnet18 checkpoint that claims to be a resnet34
    ckpt = T.read_checkpoint(reference / "final.pt")
    ckpt["model_config"] = json.dumps({"name": "resnet34", "num_classes": 10, "stem": "cifar"})
    torch.save(ckpt, tmp_path / "other.pt")
    for runtime in ("py", "cpp"):
        assert "another architecture" in _error(
            run_resx("eval", str(tmp_path / "other.pt"), "--runtime", runtime, "--data", str(tiny))
        )
    (tmp_path / "junk.pt").write_text("junk")
    assert "not a resx checkpoint" in _error(run_resx("eval", str(tmp_path / "junk.pt"), "--data", str(tiny)))
    assert "not a resx run directory" in _error(run_resx("train", "--resume", str(tmp_path)))


def test_cpp_loads_weights_checks_the_fingerprint(tiny, tmp_path, reference):
    from resx import _cpp
    from resx.data import AUGMENT
    from resx.export import export
    from resx.models import ModelConfig

    export(ModelConfig("resnet18", stem="imagenet"), tmp_path / "imagenet.pt")
    with pytest.raises(RuntimeError, match="another architecture"):
        _cpp.evaluate(
            str(tmp_path / "imagenet.pt"), str(reference / "final.pt"), str(tiny), 8, 0, AUGMENT.to_cpp(), "cpu"
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runtimes_agree_within_a_bound(tiny, tmp_path):
    a = run(tiny, tmp_path / "py", "py", device="cuda", epochs=1)
    b = run(tiny, tmp_path / "cpp", "cpp", device="cuda", epochs=1)
    la = [float(r["loss"]) for r in rows(a / "steps.csv")]
    lb = [float(r["loss"]) for r in rows(b / "steps.csv")]
    assert la == pytest.approx(lb, rel=1e-3)  # cuDNN picks algorithms per process: not always bit-identical
