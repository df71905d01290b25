"""Test loss and top-1 of trained weights, in either runtime (whichever trained them)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from resx import data as D
from resx.cpp import _cpp
from resx.device import check_device
from resx.errors import TrainError
from resx.export import graph_fingerprint
from resx.models import ModelConfig, build
from resx.rundir import CHECKPOINT_FORMAT, check_tensors, read_checkpoint
from resx.train.trainer import EvalResult, evaluate


def evaluate_checkpoint(
    weights: Path, data: Path, runtime: str = "py", batch_size: int = 128, test_subset: int = 0, device: str = "cpu"
) -> dict:
    """Test loss and top-1 of a checkpoint in either runtime."""
    if runtime not in ("py", "cpp"):
        raise TrainError(f"unknown runtime '{runtime}': py or cpp")
    if batch_size < 1:
        raise TrainError(f"--batch-size must be at least 1, got {batch_size}")
    if test_subset < 0:
        raise TrainError(f"--test-subset must be >= 0 (0: all), got {test_subset}")
    check_device(device)
    ckpt = read_checkpoint(weights)
    try:
        config = ModelConfig.from_dict(json.loads(ckpt["model_config"]))
    except json.JSONDecodeError:
        raise TrainError(f"{weights}: malformed resx checkpoint (model_config is not JSON)") from None
    layout, directory = D.find_layout(data)
    if runtime == "cpp" and layout != "binary":
        raise TrainError(f"{data}: the C++ runtime reads the binary layout; use `resx data convert`")
    model = build(config)
    fp = graph_fingerprint(model.eval())
    if fp is not None and fp != ckpt["fingerprint"]:
        raise TrainError(
            f"{weights}: weights are for another architecture (fingerprint "
            f"{ckpt['fingerprint'][:12]} != {config.name} {fp[:12]})"
        )
    if runtime == "py":
        check_tensors(weights, "model", model.state_dict(), ckpt["model"])
        model.load_state_dict(ckpt["model"])
        model.to(device)
        split = D.first_n(D.load_split(directory, "test"), test_subset)
        result = evaluate(model, D.CifarLoader(*split, batch_size, train=False), torch.device(device))
    else:  # the C++ frontend module, filled from the checkpoint alone: no TorchScript on this path
        spec = D.AUGMENT.to_cpp()
        result = EvalResult(
            *_cpp.evaluate(str(weights), CHECKPOINT_FORMAT, str(directory), batch_size, test_subset, spec, device)
        )
    return {
        "runtime": runtime,
        "weights": str(weights),
        "model": config.name,
        "fingerprint": ckpt["fingerprint"],
        "test_loss": result.loss,
        "test_top_1": result.top_1,
        "images": result.images,
    }
