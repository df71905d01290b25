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
