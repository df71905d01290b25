"""The run directory: one owner for its files, their names and columns, its lock and its checkpoints.
Mirrored by resx::RunDir (resnet_cpp/rundir.cpp), which receives the names, formats and columns below
through the run's config.json instead of retyping them. The records are fixed in both languages
(resx::StepRecord, resx::EpochRecord), and tests/test_records.py fails when they drift apart.

    train_config.json  the TrainConfig, runtime and data (what --resume reads; written by Python)
    config.json        the same for the C++ runtime (resx-config/2, resx.recipe)
    model.pth          the weights export the eager module starts from (--module eager, the default)
    model.pt           the exported TorchScript file (--module scripted; its fingerprint names the architecture)
    steps.csv          one StepRecord per optimizer step
    metrics.csv        one EpochRecord per epoch (the well-known column names)
    checkpoint.pt      the last complete epoch: weights, momentum, position, history
    final.pt           the final weights
    run.json           status, config, environment, fingerprint, final metrics
    .lock              flock()ed for the life of a run; holds the holder's PID

Checkpoints are dicts of tensors, numbers and strings that torch.load(weights_only=True) and
torch::pickle_load both read. Readers, the bench included, go through this module by column name.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from resx.errors import ResxError
from resx.files import atomic_write, is_temp, safe_torch_load, torch_bytes

RECIPE_FILE = "train_config.json"  # the run's recipe (resx.recipe.TrainConfig), authoritative on resume
CPP_JOB_FILE = "config.json"  # what the C++ loop reads (resx-config/2), written from the recipe at every start
# What C++ read before resx-config/2: a key = value file. An old run resumes (its config.json is written
# from train_config.json, as at every start), and the old file is removed then.
LEGACY_CPP_JOB_FILE = "config.txt"
MODEL = "model.pt"
WEIGHTS = "model.pth"
CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"
RUN_JSON = "run.json"
LOCK = ".lock"
CHECKPOINT_FORMAT = "resx-checkpoint/1"


# ----------------------------------------------------------------------------------------- records


@dataclass
class StepRecord:
    """One optimizer step (resx::StepRecord). epoch and step count from 1; step over the whole run."""

    epoch: int
    step: int
    lr: float
    loss: float
    batch_size: int
    correct: int  # top-1 hits in the batch
    data_s: float  # waiting for the batch and moving it to the device
    forward_s: float  # forward and loss
    backward_s: float
    optimizer_s: float

    @property
    def seconds(self) -> float:
        return self.data_s + self.forward_s + self.backward_s + self.optimizer_s


@dataclass
class EpochRecord:
    """One epoch (resx::EpochRecord); test_* are None in epochs without evaluation (eval_every)."""

    epoch: int
    wall_time: float  # training and evaluation so far, over resumes
    epoch_time: float
    train_loss: float
    train_top_1: float
    test_loss: float | None
    test_top_1: float | None
    eval_time: float
    data_s: float
    forward_s: float
    backward_s: float
    optimizer_s: float
    images_per_s: float
    lr: float  # of the epoch's last step


@dataclass(frozen=True)
class Column:
    header: str
    field: str
    kind: str  # int; exact (%.17g: the same double back); seconds (%.6f)

    def format(self, value: float | int | None) -> str:
        if value is None:
            return ""
        if self.kind == "int":
            return str(int(value))
        return ("%.17g" if self.kind == "exact" else "%.6f") % value

    def parse(self, text: str) -> float | int | None:
        if text == "":
            return None
        return int(text) if self.kind == "int" else float(text)


@dataclass(frozen=True)
class Table:
    """A CSV file of records, by column name."""

    file: str
    record: type
    columns: tuple[Column, ...]

    def format(self, records: Iterable) -> str:
        lines = [",".join(c.header for c in self.columns)]
        for r in records:
            values = asdict(r)
            lines.append(",".join(c.format(values[c.field]) for c in self.columns))
        return "\n".join(lines) + "\n"

    def parse(self, text: str, source: Path | str) -> list:
        rows = csv.DictReader(io.StringIO(text))
        missing = [c.header for c in self.columns if c.header not in (rows.fieldnames or [])]
        if missing:
            raise ResxError(f"{source}: not a resx {self.file} (no column {', '.join(missing)})")
        try:
            return [self.record(**{c.field: c.parse(row[c.header]) for c in self.columns}) for row in rows]
        except (TypeError, ValueError) as e:
            raise ResxError(f"{source}: malformed {self.file} ({e})") from None

    def spec(self) -> dict:
        """The file and its columns, for the C++ runtime (resx::Table)."""
        return {"file": self.file, "columns": [asdict(c) for c in self.columns]}


def _columns(record: type, *spec: tuple[str, str]) -> tuple[Column, ...]:
    """(header, kind) per field of `record`, in field order."""
    return tuple(Column(h, f.name, k) for (h, k), f in zip(spec, fields(record), strict=True))


STEPS = Table(
    "steps.csv",
    StepRecord,
    _columns(
        StepRecord,
        ("epoch", "int"),
        ("step", "int"),
        ("lr", "exact"),
        ("loss", "exact"),
        ("batch_size", "int"),
        ("correct", "int"),
        ("data_s", "seconds"),
        ("forward_s", "seconds"),
        ("backward_s", "seconds"),
        ("optimizer_s", "seconds"),
    ),
)
METRICS = Table(
    "metrics.csv",
    EpochRecord,
    _columns(
        EpochRecord,
        ("Epoch", "int"),
        ("Wall Time", "seconds"),
        ("Epoch time", "seconds"),
        ("Train_loss", "exact"),
        ("Train_top_1", "exact"),
        ("Test_loss", "exact"),
        ("Test_top_1", "exact"),
        ("Eval time", "seconds"),
        ("data_s", "seconds"),
        ("forward_s", "seconds"),
        ("backward_s", "seconds"),
        ("optimizer_s", "seconds"),
        ("images_per_s", "exact"),
        ("lr", "exact"),
    ),
)
RUN_FILES = (
    RECIPE_FILE,
    CPP_JOB_FILE,
    LEGACY_CPP_JOB_FILE,
    MODEL,
    WEIGHTS,
    STEPS.file,
    METRICS.file,
    CHECKPOINT,
    FINAL,
    RUN_JSON,
)


# ------------------------------------------------------------------------------------- checkpoints

_CHECKPOINT_KEYS = {
    "format": str,
    "fingerprint": str,
    "model_config": str,
    "config_digest": str,
    "steps_per_epoch": int,
    "epoch": int,
    "step": int,
    "wall_time": float,
    "model": dict,
    "momentum": dict,
    "metrics_csv": str,
    "steps_csv": str,
}


def read_checkpoint(path: Path, mmap: bool = False) -> dict:
    """A resx checkpoint, its keys and their types checked (resx::read_checkpoint). mmap: tensors stay
    in the file until used."""
    path = Path(path)
    if not path.is_file():
        raise ResxError(f"{path}: no such checkpoint")
    try:
        ckpt = safe_torch_load(path, mmap)
    except Exception as e:  # noqa: BLE001  (torch raises many kinds for a file that is not one)
        raise ResxError(f"{path}: not a resx checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ResxError(f"{path}: not a resx checkpoint (no format {CHECKPOINT_FORMAT})")
    for key, kind in _CHECKPOINT_KEYS.items():
        if not isinstance(ckpt.get(key), kind) or (kind is int and isinstance(ckpt[key], bool)):
            raise ResxError(f"{path}: malformed resx checkpoint ('{key}' missing or not {kind.__name__})")
    return ckpt


def check_tensors(path: Path, what: str, expected: Mapping[str, torch.Tensor], got: Mapping, partial: bool = False):
    """Names, shapes and dtypes of a checkpoint's tensors against the model's, before anything is
    copied (copy_ would broadcast). partial: `got` may lack names (momentum before a first step)."""
    missing = [] if partial else sorted(expected.keys() - got.keys())
    extra = sorted(got.keys() - expected.keys())
    if missing or extra:
        names = ", ".join((missing + extra)[:3])
        raise ResxError(
            f"{path}: {what} tensors do not match the model ({len(missing)} missing, {len(extra)} unknown: {names})"
        )
    for name, t in got.items():
        want = expected[name]
        if not isinstance(t, torch.Tensor) or t.shape != want.shape or t.dtype != want.dtype:
            shape = f"{list(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ResxError(
                f"{path}: {what} tensor '{name}' is {shape}, the model's is {list(want.shape)} {want.dtype}"
            )


def check_resumable(
    path: Path, ckpt: dict, *, fingerprint: str, config_digest: str, steps_per_epoch: int, epochs: int
) -> None:
    """A checkpoint continues this run only if it was made by this run's config (resx::check_resumable)."""
    if ckpt["fingerprint"] != fingerprint:
        raise ResxError(
            f"{path}: weights are for another architecture (fingerprint {ckpt['fingerprint'][:12]} "
            f"!= {fingerprint[:12]})"
        )
    if ckpt["config_digest"] != config_digest or ckpt["steps_per_epoch"] != steps_per_epoch:
        raise ResxError(f"{path}: made by another configuration than this run's; start a new run with -o")
    if not 0 <= ckpt["epoch"] <= epochs or ckpt["step"] != ckpt["epoch"] * steps_per_epoch:
        raise ResxError(
            f"{path}: position (epoch {ckpt['epoch']}, step {ckpt['step']}) does not fit this run "
            f"({epochs} epochs of {steps_per_epoch} steps)"
        )


# ----------------------------------------------------------------------------------------- RunDir


@dataclass(frozen=True)
class RunStatus:
    state: str  # none, started, interrupted, complete
    epochs_done: int = 0
    epochs: int = 0

    def __str__(self) -> str:
        if self.state == "complete":
            return f"complete run ({self.epochs} epochs)"
        return f"{self.state} run ({self.epochs_done} of {self.epochs} epochs done)"


class RunDir:
    """A run directory held under an exclusive lock (flock on .lock) from create/resume to close.

    The C++ runtime adopts the lock by its file descriptor (resx::RunDir), so that the run stays locked
    while a resx-cpp child trains, and a second writer is refused at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_fd: int | None = None

    # -- names
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def cpp_files(self) -> dict:
        """What resx::RunDir needs to write this directory (resx::RunFiles), for config.json."""
        return {
            "checkpoint_format": CHECKPOINT_FORMAT,
            "checkpoint": CHECKPOINT,
            "final": FINAL,
            "run": RUN_JSON,
            "lock": LOCK,
            "steps": STEPS.spec(),
            "metrics": METRICS.spec(),
        }

    # -- life cycle
    @classmethod
    def create(cls, path: Path, overwrite: bool = False) -> RunDir:
        """A directory for a new run: refuses one that holds a run (unless `overwrite`) or other files."""
        rd = cls(path)
        rd._lock()
        try:
            status = rd.status()
            if status.state != "none":
                if not overwrite:
                    raise ResxError(
                        f"{rd.path}: holds a {status}; continue it with `resx train --resume {rd.path}` "
                        f"or replace it with --overwrite"
                    )
                rd.remove_run_files()
            others = sorted(n for n in os.listdir(rd.path) if n != LOCK and not is_temp(n))
            if others:
                raise ResxError(f"{rd.path}: not empty and holds no resx run ({others[0]}, ...); choose another -o")
            rd.remove_temporaries()
        except BaseException:
            rd.close()
            raise
        return rd

    @classmethod
    def resume(cls, path: Path) -> RunDir:
        rd = cls(path)
        if not (rd / RECIPE_FILE).is_file():
            raise ResxError(f"{rd.path}: not a resx run directory (no {RECIPE_FILE}); start a run with -o")
        rd._lock()
        rd.remove_temporaries()
        return rd

    def _lock(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise ResxError(f"{self.path}: exists and is not a directory; choose another run directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise ResxError(f"{self.path}: cannot create the run directory ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ResxError(
                f"{self.path}: in use by another resx run (pid {holder}); wait for it to end or "
                f"choose another run directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.lock_fd = fd

    def close(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the flock (a resx-cpp child holding a copy keeps it)
            self.lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def remove_temporaries(self) -> None:
        """Leftovers of writes cut short (a SIGKILL mid-checkpoint): nobody else writes here while we hold the lock."""
        for name in os.listdir(self.path):
            if is_temp(name):
                with contextlib.suppress(OSError):
                    os.unlink(self / name)

    def remove_run_files(self) -> None:
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self / name)

    # -- state
    def status(self) -> RunStatus:
        if not (self / RECIPE_FILE).is_file():
            return RunStatus("none")
        epochs = int(self.read_config().get("config", {}).get("epochs", 0))
        info = self.read_run_json() if (self / RUN_JSON).is_file() else {}
        done = int(info.get("epochs_done", 0))
        if info.get("status") == "complete":
            return RunStatus("complete", done, epochs)
        return RunStatus("interrupted" if done else "started", done, epochs)

    # -- files
    def _json(self, name: str) -> dict:
        path = self / name
        try:
            value = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ResxError(f"{path}: unreadable ({type(e).__name__}: {e}); the run directory is damaged") from None
        if not isinstance(value, dict):
            raise ResxError(f"{path}: not a JSON object; the run directory is damaged")
        return value

    def read_config(self) -> dict:
        return self._json(RECIPE_FILE)

    def write_config(self, saved: dict) -> None:
        atomic_write(self / RECIPE_FILE, json.dumps(saved, indent=2))

    def read_run_json(self) -> dict:
        return self._json(RUN_JSON)

    def write_run_json(self, info: dict) -> None:
        atomic_write(self / RUN_JSON, json.dumps(info, indent=2, allow_nan=True))

    def write_history(self, steps: list[StepRecord], epochs: list[EpochRecord]) -> None:
        atomic_write(self / STEPS.file, STEPS.format(steps))
        atomic_write(self / METRICS.file, METRICS.format(epochs))

    def read_steps(self) -> list[StepRecord]:
        return STEPS.parse(self._text(STEPS.file), self / STEPS.file)

    def read_epochs(self) -> list[EpochRecord]:
        return METRICS.parse(self._text(METRICS.file), self / METRICS.file)

    def _text(self, name: str) -> str:
        try:
            return (self / name).read_text()
        except OSError as e:
            raise ResxError(f"{self / name}: cannot read ({e.strerror})") from None

    def save_checkpoint(self, name: str, checkpoint: dict) -> None:
        atomic_write(self / name, torch_bytes(checkpoint))

    def read_checkpoint(self, name: str = CHECKPOINT) -> dict:
        return read_checkpoint(self / name)
