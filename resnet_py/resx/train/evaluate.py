"""Test loss and top-1 of trained weights, in either runtime (whichever trained them)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from resx import data as D
from resx.cpp import _cpp
from resx.device import check_device
from resx.errors import TrainError
from resx.export import graph_fingerprint, graph_of, save
from resx.models import ModelConfig, load_state
from resx.rundir import CHECKPOINT_FORMAT, check_tensors, read_checkpoint
from resx.sources import Source
from resx.train.trainer import EvalResult, evaluate


def checkpoint_source(path: Path, ckpt: dict) -> Source:
    """The model a checkpoint's weights are for: a resx ResNet's config, or a source (TrainConfig.checkpoint_model)."""
    try:
        described = json.loads(ckpt["model_config"])
    except json.JSONDecodeError:
        raise TrainError(f"{path}: malformed resx checkpoint (model_config is not JSON)") from None
    if isinstance(described, dict) and "kind" in described:
        return Source.from_dict(described)
    return Source.of_config(ModelConfig.from_dict(described))


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
    source = checkpoint_source(weights, ckpt)
    layout, directory = D.find_layout(data)
    if runtime == "cpp" and layout != "binary":
        raise TrainError(f"{data}: the C++ runtime reads the binary layout; use `resx data convert`")
    model = source.build(check=False)
    fp = graph_fingerprint(model.eval(), source.shape)
    if fp is not None and fp != ckpt["fingerprint"]:
        raise TrainError(
            f"{weights}: weights are for another architecture (fingerprint "
            f"{ckpt['fingerprint'][:12]} != {source.spec} {fp[:12]})"
        )
    if runtime == "py":
        check_tensors(weights, "model", model.state_dict(), ckpt["model"])
        load_state(model, ckpt["model"])
        model.to(device)
        split = D.first_n(D.load_split(directory, "test"), test_subset)
        result = evaluate(model, D.CifarLoader(*split, batch_size, train=False), torch.device(device))
    else:  # C++: the C++ frontend module filled from the checkpoint alone (no TorchScript), or for a model
        # resx writes no C++ module for, its TorchScript graph, filled from the checkpoint
        with tempfile.TemporaryDirectory() as tmp:
            model_file = ""
            if not source.cpp_module:
                model_file = str(Path(tmp) / "model.pt")
                save(graph_of(model, source.shape)[0], Path(model_file))
            result = EvalResult(
                *_cpp.evaluate(
                    str(weights),
                    CHECKPOINT_FORMAT,
                    str(directory),
                    batch_size,
                    test_subset,
                    D.AUGMENT.to_cpp(),
                    device,
                    model_file,
                )
            )
    return {
        "runtime": runtime,
        "weights": str(weights),
        "model": source.spec,
        "fingerprint": ckpt["fingerprint"],
        "test_loss": result.loss,
        "test_top_1": result.top_1,
        "images": result.images,
    }
