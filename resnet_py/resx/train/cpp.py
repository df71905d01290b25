"""The C++ Trainer driven from Python: in this process through the extension (GIL released), or as
resx-cpp train, a process with no Python. Both read the run's config.json and write the run directory
themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from resx.cpp import _cpp, executable
from resx.errors import CppRuntimeError, TrainError
from resx.rundir import CPP_JOB_FILE
from resx.train.prepare import Prepared
from resx.train.progress import ProgressFn, Stop, parse_progress, progress_of


def train_extension(job: Prepared, progress: ProgressFn | None, stop: Stop, poll: float = 0.1) -> bool:
    """The C++ Trainer in this process, on this thread with the GIL released (a loop on another thread
    measured slower), while a Python thread polls its progress for the display. It adopts our lock and
    stops on SIGINT/SIGTERM after the current step, like the Python one."""
    w = job.world
    lock_fd = -1 if job.run_dir.lock_fd is None else job.run_dir.lock_fd
    trainer = _cpp.Trainer(str(job.run_dir / CPP_JOB_FILE), "cpp", lock_fd, w.rank, w.size, w.backend, w.group_name)
    finished = threading.Event()
    raised: list[BaseException] = []

    def watch() -> None:
        while not finished.wait(poll):
            q = trainer.progress()
            try:
                if progress is not None:
                    progress(progress_of(q))
            except BaseException as e:  # noqa: BLE001  (e.g. KeyboardInterrupt from the display)
                raised.append(e)
                trainer.request_stop(signal.SIGINT)
                return

    request_stop = trainer.request_stop  # one bound method, to remove the same object
    stop.listeners.append(request_stop)
    watcher = threading.Thread(target=watch, name="resx-progress", daemon=True)
    watcher.start()
    try:
        complete = trainer.run()
    finally:
        finished.set()
        watcher.join()
        stop.listeners.remove(request_stop)
    if raised:
        raise raised[0]
    if progress is not None:  # the final state, which the poll may have missed
        progress(progress_of(trainer.progress()))
    if not complete:
        stop.request(trainer.stop_signal() or signal.SIGINT)
    return complete


def train_executable(job: Prepared, progress: ProgressFn | None, stop: Stop) -> bool:
    """resx-cpp train CONFIG: no Python in that process. It inherits the run's lock, dies with us
    (PR_SET_PDEATHSIG) and receives our SIGINT/SIGTERM."""
    fd = job.run_dir.lock_fd
    env = os.environ | {"RESX_LOCK_FD": str(fd), "RESX_PARENT_PID": str(os.getpid())}
    proc = subprocess.Popen(
        [str(executable()), "train", str(job.run_dir / CPP_JOB_FILE)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        pass_fds=(fd,),
        env=env,
    )
    stop.listeners.append(proc.send_signal)
    last_error = ""
    try:
        for line in proc.stderr:
            p = parse_progress(line)
            if p is None:
                last_error = line.strip() or last_error
            elif progress is not None:
                progress(p)
        code = proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        raise
    finally:
        stop.listeners.remove(proc.send_signal)
    if code == 0:
        return True
    stopped = {128 + s: s for s in (signal.SIGINT, signal.SIGTERM)} | {-s: s for s in (signal.SIGINT, signal.SIGTERM)}
    if code in stopped:  # stopped after a step (128 + signal), or by a repeated signal while it was ending
        stop.request(stopped[code])
        return False
    if code < 0:  # killed by another signal (SIGKILL from the OOM killer, say): not an input error, not a bug
        raise TrainError(
            f"resx-cpp train was killed by {signal.Signals(-code).name}; the last complete epoch is "
            f"kept: continue with `resx train --resume {job.run_dir.path}`"
        )
    reason = last_error.removeprefix("resx-cpp train: ")
    if code == 1:
        raise TrainError(reason or "resx-cpp train failed")
    raise CppRuntimeError(f"resx-cpp train exited {code}: {reason}")
