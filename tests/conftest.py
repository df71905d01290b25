import os
import subprocess
import sys

import pytest
import torch


@pytest.fixture
def restore_threads():
    """Tests that change LibTorch's intra-op thread count put it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run_resx(*args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the resx CLI in a fresh process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "resx", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"resx {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
