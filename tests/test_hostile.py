"""Hostile inputs, in every runtime: each is refused with one line naming the thing, a non-zero exit, no
traceback, and nothing that existed before is changed (hashes of the run directory before and after)."""

import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_cifar
from typer.testing import CliRunner

from resx import cpp
from resx import train as T
from resx.cli import app
from resx.export import MANIFEST_NAME, export, load, quiet_jit
from resx.files import temp_path
from resx.models import ModelConfig
from resx.rundir import RunDir, read_checkpoint

SMALL = ["--width", "8", "--batch-size", "8", "--threads", "1"]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(result) -> str:
    """The result failed with exactly one `error:` line and no traceback; returns that line."""
    err = result.stderr
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert result.exit_code not in (0, None) and len(lines) == 1, (result.exit_code, err, result.stdout)
    assert "Traceback" not in err and "Traceback" not in result.stdout, err
    return lines[0]


def tree(path: Path) -> dict[str, str]:
    """Every file of a directory (the lock aside) and its hash: what must not change."""
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.name != ".lock"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_cifar(tmp_path_factory.mktemp("tiny"), train_per_file=8, test=16)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    result = cli("train", "--data", tiny, *SMALL, "--epochs", "2", "-o", run)
    assert result.exit_code == 0, result.stderr
    return run


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def stopped_run(tiny, run_dir: Path, runtime: str = "py", **overrides) -> Path:
    """A run stopped after at least one epoch (the cpp runtime's progress is polled: not exactly one)."""
    from resx.recipe import TrainConfig

    stop = T.Stop()

    def interrupt(p):
        if p.epoch >= 1 and not stop.signal:
            stop.request()

    config = TrainConfig(width=8, batch_size=8, threads=1, epochs=50, **overrides)
    with RunDir.create(run_dir) as rd:
        assert not T.train(T.prepare(config, runtime, tiny, rd), interrupt, stop)
    return run_dir


# ------------------------------------------------------------------------------ run directories


def test_a_finished_run_is_refused_then_overwritten_only_when_asked(tiny, finished, tmp_path):
    before = tree(finished)
    err = one_error(cli("train", "--data", tiny, *SMALL, "-o", finished))
    assert "complete run (2 epochs)" in err and "--resume" in err and "--overwrite" in err
    result = cli("train", "--resume", finished)  # a finished run says so and changes nothing
    assert result.exit_code == 0 and "complete" in result.stdout
    assert tree(finished) == before
    run = copy_run(finished, tmp_path / "run")
    assert cli("train", "--data", tiny, *SMALL, "--seed", "3", "--overwrite", "-o", run).exit_code == 0
    assert json.loads((run / "train_config.json").read_text())["config"]["seed"] == 3


def test_resume_refuses_flags_that_would_change_the_run(finished):
    before = tree(finished)
    err = one_error(cli("train", "--resume", finished, "--epochs", "5", "--lr", "0.5", "--runtime", "cpp"))
    assert "--lr" in err and "--runtime" in err and "--epochs" not in err
    assert "--epochs" in one_error(cli("train", "--resume", finished, "--epochs", "1"))  # only extends
    assert "either" in one_error(cli("train", "--resume", finished, "-o", finished))
    assert tree(finished) == before


def test_resume_extends_the_epochs_and_records_it(finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    assert cli("train", "--resume", run, "--epochs", "3").exit_code == 0
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["config"]["epochs"] == 3
    assert saved["extended"] == [{"from_epochs": 2, "to_epochs": 3, "after_epoch": 2}]
    assert [e.epoch for e in RunDir(run).read_epochs()] == [1, 2, 3]
    assert RunDir(run).status().state == "complete"


@pytest.mark.parametrize("runtime", ["py", "cpp-exe"])
def test_a_second_writer_is_refused_at_once_naming_the_holder(tiny, tmp_path, runtime):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "resx",
        "train",
        "--runtime",
        runtime,
        "--data",
        str(tiny),
        *SMALL,
        "--epochs",
        "200",
        "-o",
        str(run),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (run / "run.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        err = one_error(cli("train", "--data", tiny, *SMALL, "-o", run, "--overwrite"))
        assert "in use by another resx run" in err and f"pid {proc.pid}" in err
        assert "in use" in one_error(cli("train", "--resume", run))
        direct = subprocess.run(
            [str(cpp.executable()), "train", str(run / "config.json")], capture_output=True, text=True
        )
        assert direct.returncode == 1 and "in use by another resx run" in direct.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM


def test_output_that_is_a_file_or_holds_other_files(tiny, tmp_path):
    file = tmp_path / "file"
    file.write_text("mine")
    assert "not a directory" in one_error(cli("train", "--data", tiny, *SMALL, "-o", file))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "not empty" in one_error(cli("train", "--data", tiny, *SMALL, "-o", other, "--overwrite"))
    assert file.read_text() == "mine" and (other / "notes.txt").read_text() == "mine"
    assert "not a resx run directory" in one_error(cli("train", "--resume", other))


def test_a_run_that_never_started_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    assert "no such directory" in one_error(cli("train", "--data", tmp_path / "none", *SMALL, "-o", run))
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


@pytest.mark.parametrize("runtime", ["py", "cpp", "cpp-exe"])
def test_a_checkpoint_of_another_config_is_refused_before_any_step(tiny, tmp_path, runtime):
    run = stopped_run(tiny, tmp_path / "a", runtime)
    other = tmp_path / "b"  # another batch size: another step count and learning-rate table
    assert (
        cli("train", "--data", tiny, "--width", "8", "--batch-size", "4", "--threads", "1", "-o", other).exit_code == 0
    )
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    before = tree(run)
    err = one_error(cli("train", "--resume", run))
    assert "made by another configuration" in err
    assert tree(run) == before


def test_stale_temporaries_are_removed_at_the_next_start(finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    leftovers = [temp_path(run / "checkpoint.pt"), run / ".final.pt.0a1b2c3d.tmp"]  # Python's and C++'s names
    for p in leftovers:
        p.write_bytes(b"\0" * 1000)
    cli("train", "--resume", run)
    assert not any(p.exists() for p in leftovers)


# ---------------------------------------------------------------------------------- verification


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["model"].__setitem__("fc.weight", torch.zeros(10, 1)), "'fc.weight' is [10, 1]"),
        (lambda c: c["model"].pop("bn1.running_mean"), "1 missing"),
        (lambda c: c["model"].__setitem__("fc.bias", c["model"]["fc.bias"].double()), "torch.float64"),
        (lambda c: c.pop("step"), "malformed resx checkpoint ('step'"),
        (lambda c: c.__setitem__("epoch", "two"), "malformed resx checkpoint ('epoch'"),
    ],
)
@pytest.mark.parametrize("runtime", ["py", "cpp"])
def test_checkpoints_are_verified_before_anything_is_copied(tiny, finished, tmp_path, edit, message, runtime):
    ckpt = read_checkpoint(finished / "final.pt")
    edit(ckpt)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    err = one_error(cli("eval", bad, "--runtime", runtime, "--data", tiny))
    assert (
        message.replace("torch.float64", "float64" if runtime == "cpp" else "torch.float64") in err
        or message.replace("torch.float64", "Double") in err
    ), err


def _tampered(path: Path, out: Path, change) -> Path:
    module, manifest = load(path)
    text = change(manifest)
    with quiet_jit():
        torch.jit.save(
            module, str(out), _extra_files={MANIFEST_NAME: text if isinstance(text, str) else json.dumps(text)}
        )
    return out


def _set_model(key, value):
    def change(m):
        m["model"][key] = value
        return m

    return change


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (_set_model("name", "resnet34"), "model.name"),
        (_set_model("layers", [3, 4, 6, 3]), "model.layers"),
        (_set_model("stem", "imagenet"), "model.stem"),
        (_set_model("num_classes", 100), "model.num_classes"),
        (_set_model("width", 64), "model.width"),
        (_set_model("block", "Bottleneck"), "model.block"),
        (lambda m: m | {"parameters": 1}, "parameters"),
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: "[1, 2]", "not a JSON object"),
        (lambda m: {k: v for k, v in m.items() if k != "model"}, "model"),
    ],
)
def test_a_manifest_is_verified_against_the_graph_in_both_languages(tmp_path, change, key):
    good = tmp_path / "good.pt"
    export(ModelConfig("resnet18", width=8), good)
    bad = _tampered(good, tmp_path / "bad.pt", change)
    assert key in one_error(cli("inspect", bad))
    exe = subprocess.run([str(cpp.executable()), "inspect", str(bad)], capture_output=True, text=True)
    assert exe.returncode == 1 and key in exe.stderr.strip().splitlines()[-1], exe.stderr
    assert "Traceback" not in exe.stderr and "terminate" not in exe.stderr


# ----------------------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "inf"], "--lr must be a finite number"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--lr", "0"], "--lr must be positive"),
        (["--momentum", "1"], "--momentum must be in [0, 1)"),
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--warmup-epochs", "nan"], "--warmup-epochs must be a finite"),
        (["--warmup-epochs", "5"], "--warmup-epochs must be in [0, epochs=1]"),
        (["--label-smoothing", "1"], "--label-smoothing"),
        (["--threads", "-1"], "--threads must be >= 0"),
        (["--subset", "-1"], "--subset must be >= 0"),
        (["--seed", "99999999999999999999"], "--seed must be in [0, 2**63 - 1]"),
        (["--test-subset", "-3"], "--test-subset must be >= 0"),
        (["--eval-every", "0"], "--eval-every"),
        (["--seed", "-1"], "--seed"),
        (["--nesterov", "--momentum", "0"], "--nesterov needs a positive --momentum"),
        (["--layers", "1,2"], "--layers '1,2': give 4"),
        (["--width", "0"], "width must be at least 1"),
        (["--layers", "2,2,2,2", "--model", "resnet34"], "are resnet18"),
        (["--schedule", "linear"], "unknown --schedule"),
        (["--device", "tpu"], "unknown --device"),
        (["--runtime", "java"], "unknown runtime"),
        (["--module", "jit"], "unknown --module 'jit'"),
        (["--runtime", "cpp", "--module", "scripted", "--compile"], "--compile applies to the py runtime"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--batch-size", "-4"], "--batch-size must be at least 1"),
        (["--model", "resnet7"], "unknown model 'resnet7'"),
    ]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "CUDA is not available")]),
)
def test_training_values_out_of_range_are_refused(tiny, tmp_path, args, message):
    run = tmp_path / "run"
    assert message in one_error(cli("train", "--data", tiny, "-o", run, *args))
    assert not run.exists() or sorted(p.name for p in run.iterdir()) == [".lock"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--test-subset", "-5"], "--test-subset"),
        (["--runtime", "java"], "unknown runtime"),
    ]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "CUDA is not available")]),
)
def test_evaluation_values_out_of_range_are_refused(tiny, finished, args, message):
    assert message in one_error(cli("eval", finished / "final.pt", "--data", tiny, *args))


def test_threads_above_the_cores_warn():
    result = cli("env", "--json", "--threads", str((os.cpu_count() or 1) + 1))
    assert result.exit_code == 0 and "warning: --threads" in result.stderr


# ------------------------------------------------------------------------------------- data errors


@pytest.fixture(scope="module")
def corrupt(tiny, tmp_path_factory):
    root = Path(shutil.copytree(tiny, tmp_path_factory.mktemp("corrupt") / "data"))
    with open(root / "cifar-10-batches-bin" / "data_batch_2.bin", "ab") as f:
        f.write(b"\0" * 100)
    with open(root / "cifar-10-batches-bin" / "test_batch.bin", "ab") as f:
        f.write(b"\0" * 100)
    return root


@pytest.mark.parametrize("runtime", ["py", "cpp", "cpp-exe"])
def test_a_corrupt_data_file_is_one_line_in_every_runtime(corrupt, tmp_path, runtime):
    err = one_error(cli("train", "--runtime", runtime, "--data", corrupt, *SMALL, "-o", tmp_path / "run"))
    assert "data_batch_2.bin: size" in err and "truncated" in err


@pytest.mark.parametrize("runtime", ["py", "cpp"])
def test_a_corrupt_test_file_is_one_line_in_eval(corrupt, finished, runtime):
    err = one_error(cli("eval", finished / "final.pt", "--runtime", runtime, "--data", corrupt))
    assert "test_batch.bin: size" in err


def test_convert_leaves_nothing_partial(tiny, tmp_path):
    src = Path(shutil.copytree(tiny / "cifar-10-batches-py", tmp_path / "src" / "cifar-10-batches-py"))
    (src / "data_batch_4").write_bytes(b"not a pickle")
    dest = tmp_path / "dest"
    assert "data_batch_4" in one_error(cli("data", "convert", src.parent, dest))
    assert list(dest.iterdir()) == []
    out = Path(shutil.copytree(tiny / "cifar-10-batches-bin", dest / "cifar-10-batches-bin"))
    before = tree(out)
    assert "exists already" in one_error(cli("data", "convert", tiny, dest))
    assert tree(out) == before


# -------------------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def small_disk(path: Path, size: str = "3m"):
    """A small tmpfs at `path` where the machine allows mounting (root); else None."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int) -> None:
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(path / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def _limited(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize("runtime", ["py", "cpp-exe"])
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tiny, tmp_path, runtime):
    with small_disk(tmp_path / "disk") as disk:
        base = disk or tmp_path / "disk"
        run = base / "run"
        first = cli("train", "--runtime", runtime, "--data", tiny, *SMALL, "-o", run)
        assert first.exit_code == 0, first.stderr
        before = hashlib.sha1((run / "checkpoint.pt").read_bytes()).hexdigest()
        if disk is not None:  # a real full disk
            fill(disk, 64 * 1024)
            preexec, cause = None, "No space left on device"
        else:  # no mount here: a file-size limit makes the same writes fail (EFBIG)
            preexec, cause = _limited(64 * 1024), "File too large"
        proc = subprocess.run(
            [sys.executable, "-m", "resx", "train", "--resume", str(run), "--epochs", "2"],
            capture_output=True,
            text=True,
            preexec_fn=preexec,
        )
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 1 and len(errors) == 1, proc.stderr
        assert f"cannot write ({cause})" in errors[0] and str(run) in errors[0], errors[0]
        assert "Traceback" not in proc.stderr and "terminate" not in proc.stderr
        assert hashlib.sha1((run / "checkpoint.pt").read_bytes()).hexdigest() == before
        assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_during_convert_leaves_nothing(tiny, tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (not root); the training test covers the file-size limit")
        (disk / "out").mkdir()
        fill(disk, 100 * 1024)  # room for a few of the 123 KB batches, not all
        err = one_error(cli("data", "convert", tiny / "cifar-10-batches-py", disk / "out"))
        assert "No space left on device" in err
        assert list((disk / "out").iterdir()) == []


# ------------------------------------------------------------------------------ the rough edges


def test_resx_cpp_is_on_the_path_and_starts_without_importing_torch():
    exe = shutil.which("resx-cpp", path=os.path.dirname(sys.executable))
    assert exe is not None
    assert json.loads(subprocess.run([exe, "env", "--json"], capture_output=True, text=True, check=True).stdout)
    # The command finds the executable and becomes it; only the extension needs torch, on first use.
    probe = "import sys, resx.cpp; resx.cpp.executable(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_a_bug_keeps_its_traceback(monkeypatch):
    from resx import env as envinfo

    def broken(*_, **__):
        raise RuntimeError("boom")

    monkeypatch.setattr(envinfo, "collect", broken)
    result = cli("env")
    assert result.exit_code == 70 and "Traceback" in result.stderr and "bug in resx" in result.stderr


def test_both_languages_write_files_with_the_same_mode(tiny, finished, tmp_path):
    other = tmp_path / "cpp"
    assert cli("train", "--runtime", "cpp-exe", "--data", tiny, *SMALL, "-o", other).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in ("steps.csv", "metrics.csv", "checkpoint.pt", "run.json", "model.pth"):
        for run in (finished, other):
            assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~umask, (run, name)


def test_the_executable_reports_progress_by_field_name(tiny, tmp_path):
    seen = []
    with RunDir.create(tmp_path / "run") as rd:
        from resx.recipe import TrainConfig

        job = T.prepare(TrainConfig(width=8, batch_size=8, threads=1), "cpp-exe", tiny, rd)
        assert T.train(job, seen.append)
    last = seen[-1]  # resx-cpp prints a last line after the run: the final state, the last step's loss kept
    assert (last.phase, last.epoch, last.epochs, last.step, last.steps) == ("done", 1, 1, 5, 5)
    assert last.loss > 0 and last.images_per_s > 0
    values = {"phase": "eval", "epoch": 1, "epochs": 2, "step": 5, "steps": 5, "loss": 0.5, "images_per_s": 10}
    assert T.parse_progress(json.dumps({"progress": values})) == T.Progress("eval", 1, 2, 5, 5, 0.5, 10.0)
    assert T.parse_progress('{"progress": {"phase": "eval"}}') is None
    assert T.parse_progress("resx-cpp train: an error") is None


def test_a_run_from_before_config_json_resumes_and_its_old_file_goes(tiny, tmp_path):
    """A run directory of resx-config/1 (a key = value config.txt beside train_config.json) still resumes:
    config.json is written from train_config.json, as at every start, and the old file is removed. The
    old file handed to resx-cpp directly is refused in one line saying what to do."""
    from resx.recipe import TrainConfig

    run = tmp_path / "old"
    assert T.start(TrainConfig(width=8, batch_size=8, threads=1, epochs=1), run, runtime="cpp-exe", data=tiny).complete
    (run / "config.json").unlink()
    (run / "config.txt").write_text("# resx training config\nformat = resx-config/1\nruntime = cpp-exe\n")
    exe = subprocess.run([str(cpp.executable()), "train", str(run / "config.txt")], capture_output=True, text=True)
    assert exe.returncode == 1 and "resx-config/1" in exe.stderr and "--resume" in exe.stderr, exe.stderr
    outcome = T.resume(run, epochs=2)
    assert outcome.complete and [e.epoch for e in outcome.epochs] == [1, 2]
    assert (run / "config.json").is_file() and not (run / "config.txt").exists()


def test_the_cli_help_names_every_runtime_and_built_in_model():
    """The help's lists are typed in the config (no registry import); here they are held to the registry's."""
    from resx.bench import config as cli
    from resx.bench.registry import ALIASES, RUNTIMES
    from resx.models import ARCHITECTURES

    named = {n.strip(" ()") for part in cli.RUNTIME_HELP.split(",") for n in part.split()}
    assert named == set(RUNTIMES) | set(ALIASES)
    assert set(cli.MODEL_HELP.split(";")[0].split(", ")) == set(ARCHITECTURES)
