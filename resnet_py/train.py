"""Training and evaluation: the Python loop, and the driver of the C++ loop (resnet_cpp/train.cpp).

Both runtimes write the same run directory:
    train_config.json  the TrainConfig and runtime (what --resume reads)
    config.txt         the same config for the C++ runtime (resx-config/1)
    model.pt           the exported TorchScript file (its fingerprint names the architecture)
    steps.csv          one row per step: lr, loss, batch size, data/forward/backward/optimizer seconds
    metrics.csv        one row per epoch, the well-known columns and the timing split
    checkpoint.pt      the last complete epoch: weights, momentum, position, history (for --resume)
    final.pt           the final weights
    run.json           config, env snapshot, fingerprint, final metrics
Checkpoints are dicts of tensors, numbers and strings that torch.load(weights_only=True) and
torch::pickle_load both read.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from resx import data as D
from resx.export import ExportError, export, fingerprint, load
from resx.files import atomic_output, atomic_write, safe_torch_load
from resx.models import ModelConfig, build
from resx.recipe import TrainConfig

CHECKPOINT_FORMAT = "resx-checkpoint/1"  # mirrors resx::kCheckpointFormat
METRICS_HEADER = (
    "Epoch,Wall Time,Epoch time,Train_loss,Train_top_1,Test_loss,Test_top_1,Eval time,"
    "data_s,forward_s,backward_s,optimizer_s,images_per_s,lr\n"
)  # mirrors resx::kMetricsHeader
STEPS_HEADER = "epoch,step,lr,loss,batch_size,data_s,forward_s,backward_s,optimizer_s\n"


class TrainError(Exception):
    """A run cannot start or continue; the message names the input and the fix."""


@dataclass
class Progress:
    """Mirrors resx::Progress: what the one progress display shows for either runtime."""

    phase: str = "starting"
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float = 0.0
    images_per_s: float = 0.0


@dataclass
class RunResult:
    run_dir: Path
    complete: bool
    losses: list[float] = field(default_factory=list)


ProgressFn = Callable[[Progress], None]


def _g(x: float) -> str:
    return "%.17g" % x  # the C++ side prints "%.17g" too: equal doubles, equal text


def _f6(x: float) -> str:
    return "%.6f" % x


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint")
    try:
        ckpt = safe_torch_load(path)
    except Exception as e:
        raise TrainError(f"{path}: not a resx checkpoint ({type(e).__name__})")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a resx checkpoint (no format {CHECKPOINT_FORMAT})")
    return ckpt


def sync(device: torch.device | str) -> None:
    """Wait for the device's queue, so that a clock read after it times the work (CUDA is async)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model: torch.nn.Module, loader: D.CifarLoader, device: torch.device) -> tuple[float, float, int]:
    """Mean test loss, top-1 percent, images. Mirrors resx::evaluate."""
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for batch in loader.batches(0):
            x, y = batch.inputs.to(device), batch.labels.to(device)
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum().item())
            seen += len(y)
    return (loss_sum / seen if seen else 0.0), (100.0 * correct / seen if seen else 0.0), seen


# --------------------------------------------------------------------------------------- preparing


@dataclass
class Prepared:
    config: TrainConfig
    runtime: str
    run_dir: Path
    data_dir: Path  # the directory of the batch files
    layout: str
    model_file: Path
    fingerprint: str
    steps_per_epoch: int
    resume: bool


def _count_train(layout: str, directory: Path) -> int:
    if layout == "binary":
        files = D.split_files(layout, directory, "train")
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise TrainError(f"{missing[0]}: no such file (check the directory with `resx data check`)")
        return sum(f.stat().st_size // D.RECORD_BYTES for f in files)
    return len(D.load_split(directory, "train")[1])


def prepare(
    config: TrainConfig,
    runtime: str,
    data: Path,
    run_dir: Path,
    resume: bool = False,
    model_file: Path | None = None,
) -> Prepared:
    """Validate everything, export the model (or copy `model_file`, an export of the same seed and
    architecture) and write both config files. No training yet."""
    try:
        config.validate()
    except ValueError as e:
        raise TrainError(str(e))
    if runtime not in ("py", "cpp", "cpp-exe"):
        raise TrainError(f"unknown runtime '{runtime}': py, cpp or cpp-exe")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"--device {config.device}: CUDA is not available on this machine; use --device cpu")
    try:
        layout, directory = D.find_layout(data)
    except D.DataError as e:
        raise TrainError(str(e))
    if runtime != "py" and layout != "binary":
        raise TrainError(
            f"{data}: the C++ runtime reads the binary layout; convert it with "
            f"`resx data convert {data} DEST` and pass --data DEST"
        )
    n_train = _count_train(layout, directory)
    if config.subset:
        n_train = min(n_train, config.subset)
    steps = config.steps_per_epoch(n_train)
    if steps < 1:
        raise TrainError(
            f"{n_train} training images make no batch of {config.batch_size} (drop_last); "
            f"lower --batch-size or use more images"
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    source, model_file = model_file, run_dir / "model.pt"
    if resume and model_file.exists():
        module, manifest = load(model_file)
        fp = manifest["fingerprint"] if manifest else fingerprint(module)
    elif source is not None:
        _, manifest = load(source)
        if (
            manifest is None
            or manifest["seed"] != config.seed
            or ModelConfig.from_dict(manifest["model"]) != config.model_config()
        ):
            raise TrainError(f"{source}: not an export of {config.model} with seed {config.seed}")
        shutil.copyfile(source, model_file)
        fp = manifest["fingerprint"]
    else:
        try:
            fp = export(config.model_config(), model_file, seed=config.seed)["fingerprint"]
        except (ExportError, ValueError) as e:
            raise TrainError(str(e))
    atomic_write(
        run_dir / "train_config.json",
        json.dumps({"runtime": runtime, "data": str(data), "config": config.to_dict()}, indent=2),
    )
    atomic_write(
        run_dir / "config.txt",
        config.cpp_config_text(
            runtime=runtime,
            model_file=model_file.resolve(),
            data_dir=directory.resolve(),
            run_dir=run_dir.resolve(),
            steps_per_epoch=steps,
            resume=resume,
        ),
    )
    return Prepared(config, runtime, run_dir, directory, layout, model_file, fp, steps, resume)


def load_run(run_dir: Path) -> tuple[TrainConfig, str, Path]:
    """(config, runtime, data) of an earlier run, for --resume."""
    path = Path(run_dir) / "train_config.json"
    if not path.is_file():
        raise TrainError(f"{run_dir}: not a resx run directory (no train_config.json)")
    saved = json.loads(path.read_text())
    return TrainConfig.from_dict(saved["config"]), saved["runtime"], Path(saved["data"])


# ------------------------------------------------------------------------------------- Python loop


def train_py(p: Prepared, py_module: str = "eager", progress: ProgressFn | None = None) -> RunResult:
    """The idiomatic Python loop over the eager nn.Module (or the scripted file)."""
    cfg, device = p.config, torch.device(p.config.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if py_module == "eager":
        model = build(cfg.model_config(), seed=cfg.seed)
    elif py_module == "scripted":
        model, _ = load(p.model_file)
    else:
        raise TrainError(f"unknown --py-module '{py_module}': eager or scripted")
    model.to(device)
    names = [n for n, _ in model.named_parameters()]
    params = [q for _, q in model.named_parameters()]
    lrs = cfg.learning_rates(p.steps_per_epoch)
    opt = torch.optim.SGD(
        params, lr=lrs[0], momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )
    train_loader = D.CifarLoader(
        *D.first_n(D.load_split(p.data_dir, "train"), cfg.subset),
        cfg.batch_size,
        train=True,
        seed=cfg.seed,
        drop_last=cfg.drop_last,
        spec=cfg.augment,
    )
    test_loader = D.CifarLoader(
        *D.first_n(D.load_split(p.data_dir, "test"), cfg.test_subset), cfg.batch_size, train=False, spec=cfg.augment
    )

    start_epoch, step, wall = 0, 0, 0.0
    metrics_csv, steps_csv = METRICS_HEADER, STEPS_HEADER
    checkpoint_path = p.run_dir / "checkpoint.pt"
    if p.resume and checkpoint_path.exists():
        ckpt = read_checkpoint(checkpoint_path)
        if ckpt["fingerprint"] != p.fingerprint:
            raise TrainError(f"{checkpoint_path}: weights are for another architecture")
        with torch.no_grad():
            for name, t in model.state_dict().items():
                t.copy_(ckpt["model"][name])
        for name, q in zip(names, params):
            if name in ckpt["momentum"]:
                opt.state[q]["momentum_buffer"] = ckpt["momentum"][name].to(device).clone()
        start_epoch, step, wall = ckpt["epoch"], ckpt["step"], ckpt["wall_time"]
        metrics_csv, steps_csv = ckpt["metrics_csv"], ckpt["steps_csv"]

    def save(path: Path, epochs_done: int, with_momentum: bool) -> None:
        momentum = {}
        if with_momentum:
            for name, q in zip(names, params):
                buf = opt.state.get(q, {}).get("momentum_buffer")
                if buf is not None:
                    momentum[name] = buf.detach().cpu().clone()
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": p.fingerprint,
            "model_config": json.dumps(cfg.model_config().to_dict(), separators=(",", ":")),
            "epoch": epochs_done,
            "step": step,
            "wall_time": wall,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "momentum": momentum,
            "metrics_csv": metrics_csv,
            "steps_csv": steps_csv,
        }
        with atomic_output(path) as tmp:
            torch.save(checkpoint, tmp)

    losses: list[float] = []
    steps = len(train_loader)
    test_loss = test_top1 = 0.0
    report = progress or (lambda _: None)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        split = [0.0, 0.0, 0.0, 0.0]
        batches = train_loader.batches(epoch)
        lr = lrs[step]
        for i in range(steps):
            t0 = time.perf_counter()
            batch = next(batches)
            x, y = batch.inputs.to(device), batch.labels.to(device)
            sync(device)
            t_data = time.perf_counter() - t0
            lr = lrs[step]
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            t1 = time.perf_counter()
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            sync(device)
            t_forward = time.perf_counter() - t1
            t2 = time.perf_counter()
            loss.backward()
            sync(device)
            t_backward = time.perf_counter() - t2
            t3 = time.perf_counter()
            opt.step()
            sync(device)
            t_optimizer = time.perf_counter() - t3
            value = loss.item()
            correct += int((logits.argmax(1) == y).sum().item())
            loss_sum += value * len(y)
            seen += len(y)
            for k, t in enumerate((t_data, t_forward, t_backward, t_optimizer)):
                split[k] += t
            losses.append(value)
            steps_csv += (
                f"{epoch + 1},{step + 1},{_g(lr)},{_g(value)},{len(y)},{_f6(t_data)},{_f6(t_forward)},"
                f"{_f6(t_backward)},{_f6(t_optimizer)}\n"
            )
            step += 1
            report(
                Progress("train", epoch, cfg.epochs, i + 1, steps, value, seen / (time.perf_counter() - epoch_start))
            )
        epoch_time = time.perf_counter() - epoch_start
        eval_now = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        eval_start = time.perf_counter()
        if eval_now:
            report(Progress("eval", epoch, cfg.epochs, steps, steps))
            test_loss, test_top1, _ = evaluate(model, test_loader, device)
        eval_time = time.perf_counter() - eval_start if eval_now else 0.0
        wall += epoch_time + eval_time
        metrics_csv += (
            f"{epoch + 1},{_f6(wall)},{_f6(epoch_time)},{_g(loss_sum / seen)},{_g(100.0 * correct / seen)},"
            f"{_g(test_loss) if eval_now else ''},{_g(test_top1) if eval_now else ''},{_f6(eval_time)},"
            f"{','.join(map(_f6, split))},{_g(seen / epoch_time)},{_g(lr)}\n"
        )
        save(checkpoint_path, epoch + 1, True)
        atomic_write(p.run_dir / "metrics.csv", metrics_csv)
        atomic_write(p.run_dir / "steps.csv", steps_csv)
        report(Progress("train", epoch + 1, cfg.epochs, steps, steps))
    save(p.run_dir / "final.pt", cfg.epochs, False)
    _write_run_json(
        p,
        "complete",
        {
            "epochs": cfg.epochs,
            "steps": step,
            "wall_time": wall,
            "test_loss": test_loss,
            "test_top_1": test_top1,
            "train_loss": losses[-1] if losses else 0.0,
        },
    )
    report(Progress("done", cfg.epochs, cfg.epochs, steps, steps))
    return RunResult(p.run_dir, True, losses)


def _write_run_json(p: Prepared, status: str, final: dict) -> None:
    from resx import envinfo

    atomic_write(
        p.run_dir / "run.json",
        json.dumps(
            {
                "runtime": p.runtime,
                "status": status,
                "config": p.config.to_dict(),
                "env": envinfo.collect(executable=False),
                "fingerprint": p.fingerprint,
                "final": final,
            },
            indent=2,
        ),
    )


# --------------------------------------------------------------------------------- C++ loop driver


def train_cpp(p: Prepared, progress: ProgressFn | None = None, poll: float = 0.1) -> RunResult:
    """Run the C++ loop on this thread with the GIL released (a loop on another thread measured
    slower), while a Python thread polls its progress for the display. Ctrl-C reaches the C++ loop,
    which stops after the current step."""
    from resx import _cpp

    try:
        trainer = _cpp.Trainer(str(p.run_dir / "config.txt"), "cpp")
    except RuntimeError as e:
        raise TrainError(str(e).splitlines()[0])
    report = progress or (lambda _: None)
    finished = threading.Event()
    raised: list[BaseException] = []

    def watch() -> None:
        while not finished.wait(poll):
            q = trainer.progress()
            try:
                report(Progress(q.phase, q.epoch, q.epochs, q.step, q.steps, q.loss, q.images_per_s))
            except BaseException as e:
                raised.append(e)
                trainer.request_stop()
                return

    watcher = threading.Thread(target=watch, name="resx-progress", daemon=True)
    watcher.start()
    try:
        complete = trainer.run()
    except RuntimeError as e:
        raise TrainError(str(e).splitlines()[0])
    finally:
        finished.set()
        watcher.join()
    if raised:
        raise raised[0]
    if not complete:
        raise KeyboardInterrupt
    return RunResult(p.run_dir, True, list(trainer.losses()))


def train_cpp_exe(p: Prepared, progress: ProgressFn | None = None) -> RunResult:
    """Run resx-cpp train CONFIG (no Python in that process); Ctrl-C is forwarded as SIGINT."""
    from resx.cpp import executable

    proc = subprocess.Popen(
        [str(executable()), "train", str(p.run_dir / "config.txt")],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    report = progress or (lambda _: None)
    last_error = ""
    try:
        for line in proc.stderr:
            parts = line.split()
            if len(parts) == 11 and parts[0] == "progress":
                epoch, epochs = parts[3].split("/")
                step, steps = parts[5].split("/")
                report(
                    Progress(
                        parts[1],
                        max(0, int(epoch) - (parts[1] == "train")),
                        int(epochs),
                        int(step),
                        int(steps),
                        float(parts[8]),
                        float(parts[10]),
                    )
                )
            elif line.strip():
                last_error = line.strip()
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    if proc.returncode not in (0, 130):
        raise TrainError(last_error or f"resx-cpp train exited {proc.returncode}")
    return RunResult(p.run_dir, proc.returncode == 0)


def train(p: Prepared, py_module: str = "eager", progress: ProgressFn | None = None) -> RunResult:
    if p.runtime == "py":
        return train_py(p, py_module, progress)
    return (train_cpp if p.runtime == "cpp" else train_cpp_exe)(p, progress)


# ----------------------------------------------------------------------------------- evaluation


def evaluate_checkpoint(
    weights: Path, data: Path, runtime: str = "py", batch_size: int = 128, test_subset: int = 0, device: str = "cpu"
) -> dict:
    """Test loss and top-1 of a checkpoint in either runtime."""
    ckpt = read_checkpoint(weights)
    config = ModelConfig.from_dict(json.loads(ckpt["model_config"]))
    try:
        layout, directory = D.find_layout(data)
    except D.DataError as e:
        raise TrainError(str(e))
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.pt"
        fp = export(config, model_file)["fingerprint"]
        if fp != ckpt["fingerprint"]:
            raise TrainError(
                f"{weights}: weights are for another architecture (fingerprint "
                f"{ckpt['fingerprint'][:12]} != {config.name} {fp[:12]})"
            )
        if runtime == "py":
            model = build(config)
            model.load_state_dict(ckpt["model"])
            model.to(device)
            loader = D.CifarLoader(*D.first_n(D.load_split(directory, "test"), test_subset), batch_size, train=False)
            loss, top1, n = evaluate(model, loader, torch.device(device))
        elif runtime == "cpp":
            if layout != "binary":
                raise TrainError(f"{data}: the C++ runtime reads the binary layout; use `resx data convert`")
            from resx import _cpp

            try:
                loss, top1, n = _cpp.evaluate(
                    str(model_file), str(weights), str(directory), batch_size, test_subset, D.AUGMENT.to_cpp(), device
                )
            except RuntimeError as e:
                raise TrainError(str(e).splitlines()[0])
        else:
            raise TrainError(f"unknown runtime '{runtime}': py or cpp")
    return {
        "runtime": runtime,
        "weights": str(weights),
        "model": config.name,
        "fingerprint": fp,
        "test_loss": loss,
        "test_top_1": top1,
        "images": n,
    }
