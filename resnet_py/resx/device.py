"""Where tensors run: device checks and synchronisation, bf16 autocast, memory format and determinism.
A leaf module (torch and resx.errors only), used by training, the engines and export alike; mirrored in
C++ by resx::AutocastGuard, resx::to_channels_last, resx::sync_device and resx::set_deterministic."""

from __future__ import annotations

import os

import torch
from torch import nn

from resx.errors import ConfigError


def check_device(device: str, option: str = "--device") -> None:
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"unknown {option} '{device}': cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{option} {device}: CUDA is not available on this machine; use {option} cpu")


def sync(device: torch.device | str) -> None:
    """Wait for the device's queue, so that a clock read after it times the work (CUDA is async)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device | str, dtype: str):
    """bf16 autocast around forward and loss (resx::AutocastGuard), or nothing at fp32. TorchScript's own
    autocast pass casts otherwise than eager autocast: off, a scripted graph runs exactly as the eager
    module does."""
    if dtype == "bf16":
        torch._C._jit_set_autocast_mode(False)
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == "bf16")


def to_device(x: torch.Tensor, device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    x = x.to(device, non_blocking=True)  # the loaders pin batches for a GPU
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def to_channels_last(module: nn.Module) -> nn.Module:
    """Parameters and buffers of four dimensions to channels-last (resx::to_channels_last)."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    return module


def set_deterministic(on: bool) -> None:
    """Deterministic algorithms, cuDNN deterministic and not benchmarking, and the cuBLAS workspace that
    deterministic cuBLAS needs (set before CUDA's first matmul); mirrors resx::set_deterministic."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    if on:
        torch.backends.cudnn.benchmark = False
