"""The weights export (.pth): a network's state dict with the manifest every export shares, written by
torch.save, so that a runtime can rebuild the network in its own language and fill it by name, with no
TorchScript: py-eager builds the nn.Module, the C++ runtime its torch::nn mirror (resx::Frontend,
resnet_cpp/resnet.cpp), reading it with torch::pickle_load."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from resx.errors import ExportError
from resx.export.torchscript import prepared
from resx.files import atomic_write, safe_torch_load, torch_bytes
from resx.models import ModelConfig
from resx.sources import Source

FORMAT = "resx-weights/1"  # mirrors resx::kWeightsFormat


def export_weights(model: Source | ModelConfig, path: Path, seed: int = 0, weights: Path | None = None) -> dict:
    """The network's state dict and its manifest in one file; returns the manifest."""
    model, _, manifest = prepared(model, seed, weights)
    return save_weights(model, path, manifest)


def save_weights(model: nn.Module, path: Path, manifest: dict) -> dict:
    """Write a weights export of `model` with the manifest every export shares; returns its manifest."""
    manifest = manifest | {"format": FORMAT}
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_write(Path(path), torch_bytes({"format": FORMAT, "manifest": json.dumps(manifest), "state": state}))
    return manifest


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, manifest) of a weights export."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file (make one with `resx export resnet18 -o {path}`)")
    try:
        obj = safe_torch_load(path)
    except Exception as e:  # noqa: BLE001  (torch raises many kinds for a file that is not one)
        raise ExportError(f"{path}: not a resx weights export ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("manifest"), str):
        raise ExportError(f"{path}: not a resx weights export (no format {FORMAT})")
    try:
        manifest = json.loads(obj["manifest"])
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: its resx manifest is not valid JSON ({e})") from None
    state = obj.get("state")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path}: malformed resx weights export (its state is not a dict of tensors)")
    return state, manifest
