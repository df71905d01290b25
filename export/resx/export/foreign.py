"""What resx can say of a model file it did not write (no resx manifest): a manifest derived from the file
itself, marked "derived", so that bench, inspect and the gate treat it like the others and say what they
cannot check. A TorchScript file gives its graph's fingerprint, state, weights, parameter count and FLOPs
at the input shape; an AOTInductor package, compiled code, shows neither graph nor weights: its bytes
identify it (resx::AotiEngine computes the same), and its outputs are what the runtimes compare. Neither
records the shape of its input: give --input-shape."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import torch

import resx
from resx.errors import ExportError, first_line
from resx.export.torchscript import fingerprint, flops_per_image, load, state_fingerprint, weights_hash
from resx.sources import Source, file_sha1

FORMAT = "resx-derived/1"


def file_id(path: Path, sha1: str | None = None) -> str:
    """What identifies a compiled package resx did not write: its bytes (resx::AotiEngine: the same);
    `sha1`: the file's, when already computed."""
    return "file:" + (sha1 or file_sha1(path))


def derive(path: Path, shape: tuple[int, int, int] | None) -> dict:
    """The manifest resx derives from a foreign .pt or .pt2 at `shape` (C, H, W)."""
    path = Path(path)
    if path.suffix not in (".pt", ".pt2"):
        raise ExportError(f"{path}: neither a TorchScript file (.pt) nor an AOTInductor package (.pt2)")
    if path.suffix == ".pt":
        module, _ = load(path)  # a file that is not TorchScript is refused before any shape is asked for
        module.eval()
    else:
        from torch._inductor.package import load_package

        try:
            package = load_package(str(path))
        except Exception as e:  # noqa: BLE001  (the loader raises many kinds for a file that is not one)
            raise ExportError(f"{path}: not a loadable AOTInductor package ({first_line(e)})") from None
    if shape is None:
        raise ExportError(
            f"{path}: a model file resx did not write does not record its input's shape; give --input-shape C,H,W"
        )
    source = Source("file", str(path.resolve()), tuple(shape), sha1=file_sha1(path))
    x = torch.zeros(2, *shape)
    if path.suffix == ".pt":
        out = _run(module, x, path)
        flops = flops_per_image(module, tuple(shape))
        ids = {
            "fingerprint": fingerprint(module),
            "state_fingerprint": state_fingerprint(module),
            "weights_hash": weights_hash(module),
            "parameters": sum(p.numel() for p in module.parameters()),
        }
        graph = "file"
    else:
        out, flops = _run(package, x, path), None
        ident = file_id(path, source.sha1)
        ids = {"fingerprint": ident, "state_fingerprint": "", "weights_hash": ident, "parameters": None}
        graph = None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        what = f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ExportError(f"{path}: gives {what} for a batch of 2, not [batch, classes] logits")
    source.num_classes = int(out.shape[1])
    manifest = {
        "format": FORMAT,
        "derived": True,
        "model": source.model_dict(),
        "source": source.to_dict(),
        "flops_per_image": flops,
        "input": {"shape": [1, *shape], "dtype": "float32"},
        "normalization": None,
        "export": {"graph": graph, "note": "a file resx did not write: no manifest to check it against"},
        **ids,
        "seed": None,
        "weights_from": None,
        "torch_version": torch.__version__,
        "resx_version": resx.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if path.suffix == ".pt2":
        manifest["compile"] = {
            "device": "cpu",
            "dtype": "fp32",
            "threads": 0,
            "freezing": None,
            "memory_format": "contiguous",
        }
    return json.loads(json.dumps(manifest))  # as stored: tuples become lists


def _run(forward, x: torch.Tensor, path: Path):
    try:
        with torch.inference_mode():
            return forward(x)
    except Exception as e:  # noqa: BLE001  (a foreign model: any error, one line)
        c, h, w = x.shape[1:]
        raise ExportError(
            f"{path}: rejects input {c}x{h}x{w} ({first_line(e)}); give the shape it runs at with --input-shape C,H,W"
        ) from None
