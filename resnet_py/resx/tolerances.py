"""How far each engine's outputs may be from py-eager's: the fairness gate and `resx inspect` use the same
numbers. A leaf module (resx.models only)."""

from __future__ import annotations

from resx.models import DTYPES

ENGINES = ("eager", "script", "frozen", "compile", "aoti", "executorch")
# Max abs difference of batch-1 logits from py-eager at fp32 that each engine and dtype may show: the
# same graph and weights run as they are (1e-4); with BatchNorm folded or kernels fused by a compiler
# (1e-3); in bf16 (3 significant digits) whatever the engine.
TOLERANCE: dict[tuple[str, str], float] = {
    (engine, dtype): 1e-1 if dtype == "bf16" else (1e-4 if engine in ("eager", "script") else 1e-3)
    for engine in ENGINES
    for dtype in DTYPES
}
CUDA_FP32_TOLERANCE = 1e-2  # on CUDA, cuDNN convolutions run in TF32 by default (10-bit mantissa)


def tolerance(engine: str, dtype: str, device: str) -> float:
    """TOLERANCE, widened on CUDA at fp32 for TF32 convolutions."""
    base = TOLERANCE[(engine, dtype)]
    return max(base, CUDA_FP32_TOLERANCE) if device.startswith("cuda") and dtype == "fp32" else base
