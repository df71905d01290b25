"""A run's life, written once: create (or resume) the run directory under its lock, prepare, train in the
chosen runtime, and say how it ended. `resx train`, `resx bench` and benchmarks/ all go through start()
and resume(); a data-parallel run is launched here through torchrun, whose ranks run the same command."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from resx import data as D
from resx import distributed
from resx.device import check_device
from resx.distributed import SINGLE, Launch, World
from resx.errors import LaunchError, ResxError, TrainError
from resx.recipe import TrainConfig
from resx.rundir import EpochRecord, RunDir
from resx.train.cpp import train_executable, train_extension
from resx.train.prepare import Prepared, check_world, default_module, prepare, saved_module
from resx.train.progress import ProgressFn, Stop
from resx.train.trainer import Trainer


def train(job: Prepared, progress: ProgressFn | None = None, stop: Stop | None = None) -> bool:
    """Run a prepared job in its runtime; True when complete, False when stopped (stop.signal says why)."""
    stop = stop or Stop()
    if job.runtime == "py":
        return Trainer(job, stop).run(progress)
    return (train_extension if job.runtime == "cpp" else train_executable)(job, progress, stop)


@dataclass
class Outcome:
    """How a run ended, for whoever started it (the CLI prints it)."""

    run_dir: Path
    complete: bool
    exit_code: int = 0  # 0: complete; 128 + the signal that stopped it; a failed launch's code
    message: str = ""  # one line for the user when it did not complete ("" when the ranks said why)
    writes: bool = True  # this process reports (global rank 0; the launcher)
    runtime: str = ""
    config: TrainConfig | None = None
    epochs: list[EpochRecord] = field(default_factory=list)
    note: str = ""  # a run that had nothing to do says so


def start(
    config: TrainConfig,
    output: Path,
    *,
    runtime: str = "py",
    data: Path | None = None,
    module: str | None = None,
    overwrite: bool = False,
    launch: Launch | None = None,
    argv: list[str] | None = None,
    progress: ProgressFn | None = None,
    stop: Stop | None = None,
    model_file: Path | None = None,
) -> Outcome:
    """A new run in `output`. launch: the processes to train in (None: one, or torchrun's when it started
    this process); argv: the `resx` command line that torchrun repeats in each of them; stop: how the
    caller asks it to stop (SIGINT and SIGTERM do, always); model_file: an export of the same model and
    seed to reuse; module: eager or scripted (None: eager where the runtime's language has the module)."""
    world = _world(launch)
    size = world.size if distributed.launched() else (launch or Launch()).world_size
    config.world_size = size
    config.validate()
    module = module or default_module(runtime, config.source())
    check_device(config.device)
    check_world(runtime, size)
    if size > 1 and not distributed.launched():
        return _launch(launch, argv, output)
    world = distributed.init(world, config.device)
    try:
        with stop or Stop() as stop, _open_run(world, lambda p: RunDir.create(p, overwrite), output) as rd:
            try:
                job = prepare(
                    config,
                    runtime,
                    data or D.default_data_dir(),
                    rd,
                    module=module,
                    model_file=model_file,
                    world=world,
                )
            except BaseException:
                if world.writes:
                    rd.remove_run_files()  # a run that never started leaves nothing behind
                raise
            return _train(job, stop, progress)
    finally:
        distributed.finish(world)


def prepare_only(config: TrainConfig, output: Path, *, runtime: str, data: Path, module: str | None = None) -> Path:
    """A new run in `output`, prepared (every input checked, the model exported, both runtimes' config files
    written) and not trained: `resx train --resume` or `resx-cpp train` takes its first step. The bench's
    counts prepare here and train under callgrind, which then runs the training alone."""
    config.validate()
    check_world(runtime, 1)
    with RunDir.create(output) as rd:
        try:
            prepare(config, runtime, data, rd, module=module or default_module(runtime, config.source()))
        except BaseException:
            rd.remove_run_files()
            raise
    return output


def resume(
    run: Path,
    *,
    epochs: int | None = None,
    fixed: list[str] | tuple[str, ...] = (),
    launch: Launch | None = None,
    argv: list[str] | None = None,
    progress: ProgressFn | None = None,
    stop: Stop | None = None,
) -> Outcome:
    """Continue a run from its last complete epoch; the run's config is authoritative: only `epochs` may
    change, to extend it (recorded). fixed: options given that would change the run (refused, named)."""
    if fixed:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in fixed)
        raise TrainError(f"--resume {run}: a run's settings are fixed; drop {names} (or start a new run with -o)")
    saved_size = None if distributed.launched() else _saved_world_size(run)
    world = _world(launch)
    if not distributed.launched():
        size = launch.world_size if launch else saved_size
        if size != saved_size:
            raise TrainError(
                f"--resume {run}: the run trains on {saved_size} process(es), not {size}; resume it "
                f"with --nproc-per-node (x --nnodes) {saved_size}"
            )
        if size > 1:
            return _launch(launch or Launch(nproc_per_node=saved_size), argv, run)
    saved_device = (
        TrainConfig.from_dict(RunDir(run).read_config().get("config", {})).device if world.distributed else ""
    )
    world = distributed.init(world, saved_device)
    try:
        with stop or Stop() as stop, _open_run(world, RunDir.resume, run) as rd:
            status, saved = rd.status(), rd.read_config()
            config = TrainConfig.from_dict(saved.get("config", {}))
            extended = list(saved.get("extended", []))
            if epochs is not None and epochs != config.epochs:
                if epochs < config.epochs:
                    raise TrainError(f"--epochs {epochs}: --resume can only extend the run's {config.epochs} epochs")
                extended.append({"from_epochs": config.epochs, "to_epochs": epochs, "after_epoch": status.epochs_done})
                config.epochs = epochs
            elif status.state == "complete":
                note = f"{run}: the run is complete ({config.epochs} epochs); nothing to do (--epochs N extends it)"
                return Outcome(
                    run, True, writes=world.writes, runtime=saved.get("runtime", "py"), config=config, note=note
                )
            job = prepare(
                config,
                saved.get("runtime", "py"),
                Path(saved.get("data", "")),
                rd,
                resume=True,
                module=saved_module(saved),
                extended=extended,
                world=world,
            )
            return _train(job, stop, progress)
    finally:
        distributed.finish(world)


def _world(launch: Launch | None) -> World:
    """This process's place: torchrun's, when it started this process (given launch options must then agree
    with it), else one process."""
    if launch is not None:
        launch.check()
    if not distributed.launched():
        return SINGLE
    world = distributed.from_env()
    if not world.writes:
        os.environ["RESX_QUIET_JIT"] = "1"  # rank 0's notes are enough
    if launch is not None and launch.world_size != world.size:
        raise TrainError(
            f"--nproc-per-node x --nnodes is {launch.world_size}, torchrun started {world.size} "
            f"processes; under torchrun, leave them to torchrun"
        )
    return world


def _saved_world_size(run: Path) -> int:
    """The number of processes the run was started with (1 if it predates data-parallel runs)."""
    rd = RunDir(run)
    if rd.status().state == "none":
        raise TrainError(f"{run}: not a resx run directory; start a run with -o")
    return int(rd.read_config().get("world_size", 1))


def _launch(launch: Launch | None, argv: list[str] | None, run: Path) -> Outcome:
    """This same command in launch.world_size processes, through torchrun; their rank 0 reports."""
    if argv is None:
        raise TrainError("a data-parallel run is launched from the command line: `resx train --nproc-per-node N`")
    try:
        distributed.launch(launch, argv)
    except LaunchError as e:
        message = str(e)
        if message and RunDir(run).status().state != "none":
            message += f"; the last complete epoch is kept: continue with `resx train --resume {run}`"
        return Outcome(run, False, e.exit_code, message, writes=bool(message))
    rd = RunDir(run)
    saved = rd.read_config()
    return Outcome(
        run,
        True,
        runtime=saved.get("runtime", "py"),
        config=TrainConfig.from_dict(saved["config"]),
        epochs=rd.read_epochs(),
    )


def _open_run(world: World, make, path: Path):
    """Global rank 0 creates or resumes the run directory under its lock; the other ranks use it."""
    return distributed.together(world, make if world.writes else None, path) or RunDir(path)


def _train(job: Prepared, stop: Stop, progress: ProgressFn | None) -> Outcome:
    """Train; in a data-parallel run, rank 0 alone shows progress and the outcome."""
    w, run = job.world, job.run_dir.path
    try:
        complete = train(job, progress if w.writes else None, stop)
    except KeyboardInterrupt:  # a second signal: stopped at once, mid-step
        stop.signal, complete = stop.signal or signal.SIGINT, False
    except Exception as e:
        cause = distributed.lost_contact(e) if w.distributed else None
        if cause is None:
            raise
        raise ResxError(
            f"lost contact with another rank ({cause}); the last complete epoch is kept: "
            f"continue with `resx train --resume {run}`"
        ) from None
    outcome = Outcome(run, complete, writes=w.writes, runtime=job.runtime, config=job.config)
    if not complete:
        outcome.exit_code = 128 + stop.signal
        done = job.run_dir.status().epochs_done if w.writes else 0
        outcome.message = (
            f"stopped by {signal.Signals(stop.signal).name}; the last complete epoch ({done} of "
            f"{job.config.epochs}) is kept: continue with `resx train --resume {run}`"
        )
    elif w.writes:
        outcome.epochs = job.run_dir.read_epochs()
    return outcome
