import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resx.data import CLASSES


@pytest.fixture
def restore_threads():
    """Tests that change LibTorch's intra-op thread count put it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run_resx(*args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the resx CLI in a fresh process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "resx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"resx {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The resx CLI in this process (typer's runner), for what a command answers where no process
    boundary is under test: the same exit status, stdout and stderr, without a 4 s start."""
    from typer.testing import CliRunner

    from resx.cli import app

    result = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(["resx", *args], result.exit_code, result.stdout, result.stderr)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_cifar(root: Path, train_per_file: int = 40, test: int = 60, seed: int = 0) -> Path:
    """A small CIFAR-10 in both layouts, in the exact formats of the release."""
    from resx.data import write_binary

    g = torch.Generator().manual_seed(seed)
    binary, pickled = root / "cifar-10-batches-bin", root / "cifar-10-batches-py"
    pickled.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else train_per_file
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.arange(n) % 10
        write_binary(binary / f"{name}.bin", images, labels)
        with open(pickled / name, "wb") as f:
            pickle.dump(
                {
                    b"batch_label": name.encode(),
                    b"labels": labels.tolist(),
                    b"data": images.reshape(n, -1).numpy(),
                    b"filenames": [b"x.png"] * n,
                },
                f,
            )
    (binary / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n")
    with open(pickled / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}, f)
    return root


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    return make_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="session")
def real_cifar(tmp_path_factory) -> Path:
    """Real CIFAR-10 from ../shared/data when present (about 25 s to decode), else skip."""
    tool = SHARED_DATA / "make-cifar10"
    if not tool.exists():
        pytest.skip("../shared/data is absent")
    dest = tmp_path_factory.mktemp("real-cifar")
    subprocess.run([sys.executable, str(tool), str(dest)], check=True, capture_output=True)
    return dest


def bench_config(preset: str = "custom", **sections):
    """A bench config as the command line makes it: the preset, then these options by section
    (bench_config(paths={"runtimes": ["py-eager"]}, map={"enabled": True}))."""
    from resx.bench.config import configure

    return configure(preset, None, sections)


def bench_plan(preset: str = "custom", cores: int | None = None, **sections):
    """The plan of that config on this machine."""
    from resx.bench import plan

    cfg = bench_config(preset, **sections)
    return plan.make(cfg, cores or os.cpu_count() or 1, torch.get_num_threads(), torch.cuda.is_available())


FACTORIES = Path(__file__).resolve().parent / "factories.py"


@pytest.fixture(scope="session")
def foreign(tmp_path_factory) -> Path:
    """A TorchScript file saved with torch.jit.save, with no resx manifest (a model resx did not write)."""
    sys.path.insert(0, str(FACTORIES.parent))
    from factories import tiny_cnn

    path = tmp_path_factory.mktemp("foreign") / "theirs.pt"
    torch.jit.save(torch.jit.script(tiny_cnn(num_classes=7).eval()), str(path))
    return path


E2E_RUNTIMES = ["py-eager", "py-script", "cpp", "cpp-exe", "cpp-eager"]


@pytest.fixture(scope="session")
def e2e(tmp_path_factory, foreign):
    """One `resx bench`, as a user runs it (a process of its own, its output piped), that many tests read:
    three kinds of model at once (a resx ResNet, a factory that prints a thousand lines to stdout and to
    stderr while it builds, a TorchScript file resx did not write), the runtimes of both languages, every
    inference scenario, start-up and memory, drift, profiles, training, the noise floor, and a machine
    counted as loaded (--max-load -1). Returns (report directory, the finished process)."""
    out = tmp_path_factory.mktemp("e2e") / "report"
    models = f"resnet18,{FACTORIES}:prints,{foreign}"
    args = ["--model", models, "--width", "8", "--input-shape", "3,32,32", "--runtime", ",".join(E2E_RUNTIMES)]
    args += ["--rounds", "2", "--latency-calls", "4", "--batch-sizes", "1,2", "--throughput-calls", "1"]
    args += ["--thread-counts", "1,2", "--thread-seconds", "0.1", "--drift-calls", "40", "--profile-calls", "2"]
    args += ["--train-steps", "2", "--train-batch", "4", "--train-rounds", "2", "--train-runtime", "py-eager,cpp-eager"]
    proc = run_resx("bench", *args, "--max-load", "-1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="session")
def map_run(tmp_path_factory):
    """One `resx bench --language-map` on a tiny ResNet at 1 thread (4 graphs, 2 rounds each, the narrow ones
    trained), with LoadGen's three scenarios served on the model (2 serving rounds). Returns the report
    directory."""
    out = tmp_path_factory.mktemp("map") / "report"
    args = ["--runtime", "py-eager,exe-script", "--model", "resnet18", "--layers", "1,1,1,1", "--width", "2"]
    args += ["--language-map", "--map-layers", "1,1,1,1/2,2,2,2", "--map-widths", "2,4", "--map-held-out", "none"]
    args += ["--map-rounds", "2", "--rounds", "2", "--threads", "1", "--batch-sizes", "1,4", "--latency-calls", "5"]
    args += ["--thread-seconds", "0.1", "--train-runtime", "py-eager", "--train-steps", "2", "--train-batch", "4"]
    args += ["--train-rounds", "2", "--serve", "singlestream,server,offline", "--serve-workers", "1"]
    args += ["--serve-seconds", "0.1", "--serve-rounds", "2", "--serve-rates", "50,100,200,400"]
    proc = run_resx("bench", *args, "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


# Under pytest-xdist (make test: -n 2), each worker builds session fixtures anew: the modules whose tests read
# one of the expensive shared runs go to one worker together, the rest by module (as --dist loadscope).
# A scheduler of our own: pytest 9 ignores the nodeid suffix xdist's loadgroup relies on.
SHARED_RUNS = {"tests/test_bench.py": "e2e", "tests/test_sources.py": "e2e", "tests/test_language.py": "map_run"}
SHARED_RUNS["tests/test_serving.py"] = "map_run"


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedRuns(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_RUNS.get(module, module)

    return SharedRuns(config, log)
