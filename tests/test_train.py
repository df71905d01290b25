"""Training parity: py, cpp and cpp-exe do the same training, bit for bit, for every recipe option."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import invoke, make_cifar

from resx import cpp
from resx import train as T
from resx.errors import ResxError
from resx.models import DEFAULT_WIDTH
from resx.recipe import TrainConfig
from resx.rundir import RunDir, read_checkpoint

# ResNet18 at a quarter of its width: every layer and code path of the full one, a seventh of the time
# (7 s a run at width 64 here); test_the_full_width_trains_bit_identically keeps the published width.
CONFIG = dict(epochs=2, batch_size=8, seed=1, threads=1, width=16)
# Every option away from its default, on 20 images (2 full batches of 8 and a partial one of 4).
EVERY_OPTION = dict(
    epochs=3,
    batch_size=8,
    seed=2,
    threads=1,
    subset=20,
    drop_last=False,
    nesterov=True,
    momentum=0.8,
    weight_decay=1e-3,
    label_smoothing=0.1,
    schedule="step",
    warmup_epochs=1.0,
    eval_every=2,
    lr=0.05,
    width=16,
    test_subset=12,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """40 training and 16 test images: 5 steps per epoch at batch 8."""
    return make_cifar(tmp_path_factory.mktemp("tiny"), train_per_file=8, test=16)


def run(tiny, run_dir, runtime, module="eager", **overrides):
    outcome = T.start(TrainConfig(**(CONFIG | overrides)), run_dir, runtime=runtime, data=tiny, module=module)
    assert outcome.complete and outcome.exit_code == 0 and outcome.epochs
    return run_dir


def assert_same_training(a, b):
    ra, rb = RunDir(a), RunDir(b)
    sa, sb = ra.read_steps(), rb.read_steps()
    assert [(s.epoch, s.step, s.lr, s.loss, s.batch_size, s.correct) for s in sa] == [
        (s.epoch, s.step, s.lr, s.loss, s.batch_size, s.correct) for s in sb
    ]
    ea, eb = ra.read_epochs(), rb.read_epochs()
    assert [(e.train_loss, e.train_top_1, e.test_loss, e.test_top_1, e.lr) for e in ea] == [
        (e.train_loss, e.train_top_1, e.test_loss, e.test_top_1, e.lr) for e in eb
    ]
    wa, wb = read_checkpoint(a / "final.pt"), read_checkpoint(b / "final.pt")
    assert wa["fingerprint"] == wb["fingerprint"]
    assert wa["model"].keys() == wb["model"].keys()
    for name, tensor in wa["model"].items():  # parameters and buffers
        assert torch.equal(tensor, wb["model"][name]), name


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    return run(tiny, tmp_path_factory.mktemp("runs") / "py", "py")


BOTH_MODULES = [("cpp", "eager"), ("cpp-exe", "eager"), ("cpp", "scripted"), ("cpp-exe", "scripted")]


@pytest.mark.parametrize(("runtime", "module"), BOTH_MODULES)
def test_cpp_runtimes_train_bit_identically_to_python(tiny, tmp_path, reference, runtime, module):
    """The C++ frontend module (eager, the default) and the TorchScript file (scripted), both against
    py-eager: per-step losses, metrics and final weights equal to the last bit."""
    other = run(tiny, tmp_path / runtime, runtime, module)
    assert_same_training(reference, other)
    # a checkpoint C++ wrote (torch::pickle_save) goes back into an export, loaded weights_only
    from resx.export import export, load
    from resx.models import ModelConfig

    export(ModelConfig("resnet18", width=CONFIG["width"]), tmp_path / "trained.pt", weights=other / "final.pt")
    module, _ = load(tmp_path / "trained.pt")
    trained = read_checkpoint(other / "final.pt")["model"]
    assert all(torch.equal(t, trained[name]) for name, t in module.state_dict().items())
    info = json.loads((other / "run.json").read_text())
    assert info["runtime"] == runtime and info["status"] == "complete" and info["epochs_done"] == 2
    assert info["config"] == json.loads((other / "train_config.json").read_text())
    assert len(RunDir(other).read_steps()) == 10


def test_the_full_width_trains_bit_identically(tiny, tmp_path):
    """ResNet18 at its published width (64), one epoch: the C++ frontend module in the extension and in
    the executable against py-eager, to the last bit."""
    full = {"width": DEFAULT_WIDTH, "epochs": 1}
    reference = run(tiny, tmp_path / "py", "py", **full)
    for runtime in ("cpp", "cpp-exe"):
        assert_same_training(reference, run(tiny, tmp_path / runtime, runtime, **full))


@pytest.mark.parametrize("runtime", ["py", "cpp-exe"])
def test_steps_a_bench_counts_train_as_any_others(tiny, tmp_path, reference, runtime, monkeypatch):
    """As the bench's counts train: the run prepared alone (prepare_only), then trained by `resx train
    --resume` or by resx-cpp itself, $RESX_COUNT_STEPS switching callgrind on around steps 3-7 (across the
    epochs' boundary): outside valgrind nothing changes; a malformed window is one line."""
    from resx.callgrind import COUNT_STEPS
    from resx.rundir import CPP_JOB_FILE
    from resx.train.run import prepare_only

    monkeypatch.setenv(COUNT_STEPS, "2,5")
    run_dir = prepare_only(TrainConfig(**CONFIG), tmp_path / runtime, runtime=runtime, data=tiny)
    assert RunDir(run_dir).status().state == "started" and not (run_dir / "steps.csv").exists()
    if runtime == "py":
        assert T.resume(run_dir).complete
    else:
        subprocess.run([str(cpp.executable()), "train", str(run_dir / CPP_JOB_FILE)], check=True, capture_output=True)
    assert_same_training(reference, run_dir)
    monkeypatch.setenv(COUNT_STEPS, "2")
    with pytest.raises(ResxError, match=r"\$RESX_COUNT_STEPS '2': give FIRST,N"):
        T.start(TrainConfig(**CONFIG), tmp_path / "bad", runtime=runtime, data=tiny)


@pytest.fixture(scope="module")
def every_option(tiny, tmp_path_factory):
    return run(tiny, tmp_path_factory.mktemp("every") / "py", "py", **EVERY_OPTION)


@pytest.mark.parametrize(("runtime", "module"), BOTH_MODULES)
def test_every_recipe_option_trains_bit_identically(tiny, tmp_path, every_option, runtime, module):
    assert_same_training(every_option, run(tiny, tmp_path / runtime, runtime, module, **EVERY_OPTION))


def test_every_recipe_option_took_effect(every_option):
    steps, epochs = RunDir(every_option).read_steps(), RunDir(every_option).read_epochs()
    assert [s.batch_size for s in steps[:3]] == [8, 8, 4]  # the partial last batch is kept
    assert len(steps) == 9 and steps[0].lr == pytest.approx(0.05 / 3)  # warm-up over the first epoch
    assert steps[2].lr == pytest.approx(0.05) and steps[-1].lr == pytest.approx(0.05 * 0.01)  # step schedule
    assert [e.test_loss is not None for e in epochs] == [False, True, True]  # eval_every 2, and the last
    onecycle = TrainConfig(**(EVERY_OPTION | {"schedule": "onecycle", "warmup_epochs": 0})).learning_rates(3)
    peak = onecycle.index(max(onecycle))
    assert onecycle[0] == pytest.approx(0.05 / 25) and 0 < peak < 5 and onecycle[-1] < 0.1 * max(onecycle)


@pytest.mark.parametrize("runtime", ["cpp", "cpp-exe"])
def test_onecycle_schedule_trains_bit_identically(tiny, tmp_path, runtime):
    options = EVERY_OPTION | {"schedule": "onecycle", "warmup_epochs": 0.0, "epochs": 2, "nesterov": False}
    assert_same_training(run(tiny, tmp_path / "py", "py", **options), run(tiny, tmp_path / runtime, runtime, **options))


def test_scripted_module_from_python_trains_identically(tiny, tmp_path, reference):
    assert_same_training(reference, run(tiny, tmp_path / "scripted", "py", module="scripted"))


@pytest.mark.parametrize("module", ["eager", "scripted"])
def test_two_threads_are_bit_identical_too(tiny, tmp_path, module):
    a = run(tiny, tmp_path / "py", "py", threads=2, epochs=1)
    b = run(tiny, tmp_path / "cpp", "cpp", module, threads=2, epochs=1)
    assert_same_training(a, b)
    every = EVERY_OPTION | {"threads": 2, "epochs": 2}
    assert_same_training(
        run(tiny, tmp_path / "py2", "py", **every), run(tiny, tmp_path / "cpp2", "cpp", module, **every)
    )


def test_outputs_have_the_well_known_columns(reference):
    header = (reference / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == [
        "Epoch",
        "Wall Time",
        "Epoch time",
        "Train_loss",
        "Train_top_1",
        "Test_loss",
        "Test_top_1",
        "Eval time",
    ]
    epochs = RunDir(reference).read_epochs()
    assert len(epochs) == 2 and all(e.data_s >= 0 and e.forward_s > 0 and e.backward_s > 0 for e in epochs)
    info = json.loads((reference / "run.json").read_text())
    assert info["status"] == "complete" and info["config"]["config"]["batch_size"] == 8
    assert info["fingerprint"] == read_checkpoint(reference / "final.pt")["fingerprint"]
    assert "python" in info["env"] and "cpp" in info["env"]
    ckpt = read_checkpoint(reference / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 10 and len(ckpt["momentum"]) == 62


def test_learning_rates_are_the_recipe_s(reference):
    lrs = TrainConfig(**CONFIG).learning_rates(5)
    assert [s.lr for s in RunDir(reference).read_steps()] == lrs
    assert lrs[0] == 0.1 and lrs[-1] < 0.01
    warm = TrainConfig(**CONFIG, warmup_epochs=1).learning_rates(5)
    assert warm[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])


@pytest.fixture(scope="module")
def longer(tmp_path_factory):
    """40 steps per epoch at batch 8: a stop asked for early in an epoch lands inside it, however late the
    progress that asks for it arrives (a narrow net's 5-step epoch can end first)."""
    data = make_cifar(tmp_path_factory.mktemp("longer"), train_per_file=64, test=16)
    return data, run(data, tmp_path_factory.mktemp("longer-runs") / "py", "py")


@pytest.mark.parametrize("runtime", ["py", "cpp", "cpp-exe"])
def test_stopped_then_resumed_equals_uninterrupted(longer, tmp_path, runtime):
    tiny, reference = longer
    run_dir = tmp_path / runtime
    stop = T.Stop()

    def interrupt(p):  # a stop asked for during the second epoch
        if p.phase == "train" and p.epoch == 1 and p.step >= 1:
            stop.request(signal.SIGTERM)

    outcome = T.start(TrainConfig(**CONFIG), run_dir, runtime=runtime, data=tiny, progress=interrupt, stop=stop)
    assert not outcome.complete and outcome.exit_code == 128 + signal.SIGTERM and "--resume" in outcome.message
    assert stop.signal == signal.SIGTERM
    assert read_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1 and not (run_dir / "final.pt").exists()
    assert RunDir(run_dir).status().state == "interrupted"
    assert RunDir(run_dir).read_config()["runtime"] == runtime
    assert T.resume(run_dir).complete
    assert_same_training(reference, run_dir)


@pytest.mark.parametrize(
    ("runtime", "sig"),
    [
        ("py", signal.SIGINT),
        ("cpp", signal.SIGTERM),
        ("cpp-exe", signal.SIGINT),
        ("py", signal.SIGTERM),
        ("cpp-exe", signal.SIGTERM),
    ],
)
def test_signals_stop_the_cli_and_keep_the_last_epoch(tiny, tmp_path, runtime, sig):
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
            "--width",
            "16",
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
        time.sleep(0.1)
    proc.send_signal(sig)
    sent = time.time()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert time.time() - sent < 20  # within a step or so
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and signal.Signals(sig).name in errors[0] and "--resume" in errors[0], err
    assert "Traceback" not in err
    epochs_done = read_checkpoint(run_dir / "checkpoint.pt")["epoch"]
    assert 1 <= epochs_done < 20
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


def test_cross_evaluation_agrees(tiny, tmp_path, reference):
    py = T.evaluate_checkpoint(reference / "final.pt", tiny, "py", batch_size=8)
    cpp = T.evaluate_checkpoint(reference / "final.pt", tiny, "cpp", batch_size=8)
    assert py["test_loss"] == cpp["test_loss"] and py["test_top_1"] == cpp["test_top_1"] and py["images"] == 16
    assert RunDir(reference).read_epochs()[-1].test_loss == py["test_loss"]
    out = json.loads(
        invoke(
            "eval", str(reference / "final.pt"), "--runtime", "cpp", "--data", str(tiny), "--batch-size", "8", "--json"
        ).stdout
    )
    assert out["test_loss"] == py["test_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runtimes_agree_within_a_bound(tiny, tmp_path):
    a = run(tiny, tmp_path / "py", "py", device="cuda", epochs=1)
    b = run(tiny, tmp_path / "cpp", "cpp", device="cuda", epochs=1)
    la = [s.loss for s in RunDir(a).read_steps()]
    lb = [s.loss for s in RunDir(b).read_steps()]
    assert la == pytest.approx(lb, rel=1e-3)  # cuDNN picks algorithms per process: not always bit-identical
