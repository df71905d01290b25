"""CIFAR-10 for both runtimes: the normalisation and augmentation spec, defined once here.

The C++ runtime never retypes these numbers: it reads them from the model manifest (resx export) or
from the training config that Python hands it.

Normalisation: the per-channel mean and standard deviation of the 50,000 training images,
(0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616). The widely copied std (0.2023, 0.1994, 0.2010)
is the mean of per-image standard deviations, not the dataset's; we use the dataset's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class AugmentSpec:
    """Training augmentation: zero-pad, random crop, random horizontal flip (crop first, then flip),
    then uint8 -> float in [0, 1] -> (x - mean) / std. Test time: the normalisation only."""

    crop: int = 32
    padding: int = 4
    flip_p: float = 0.5
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

    def to_dict(self) -> dict:
        return asdict(self)


AUGMENT = AugmentSpec()
