"""The ResNet family for CIFAR-10, defined once for both runtimes.

Written as torchvision's `models/resnet.py`: one block class per kind, typed and scriptable as they
are. The CIFAR stem (3x3 stride-1 conv, no max-pool) is the default; the ImageNet stem (7x7 stride-2
conv + 3x3 stride-2 max-pool) is an explicit option, to reproduce on purpose what a mismatched
comparison measures. `width` (64 in every published ResNet) narrows the network for fast tests of the
machinery; the architecture is otherwise the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from resx.errors import ConfigError

Stem = Literal["cifar", "imagenet"]
STEMS: tuple[str, ...] = ("cifar", "imagenet")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 10,
        stem: Stem = "cifar",
        width: int = 64,
    ):
        super().__init__()
        self.inplanes = width
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# name -> (block, blocks per stage). resnet_cpp/gen_architectures.py reads this literal at build time,
# so that `resx-cpp inspect` checks names against the same table.
ARCHITECTURES: dict[str, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
DEFAULT_WIDTH = 64
MAX_SEED = 2**63 - 1  # torch seeds are int64
DTYPES = ("fp32", "bf16")  # the precisions resx runs a network in: float32, or under bfloat16 autocast


def architecture_of(block: str, layers: Sequence[int]) -> str | None:
    """The architecture whose own block and blocks per stage these are, if any."""
    return next((n for n, (b, ls) in ARCHITECTURES.items() if b.__name__ == block and ls == list(layers)), None)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a resx network. `layers` overrides the depth's blocks per stage
    (e.g. [3, 3, 3, 3] with the ImageNet stem is the C++ "ResNet18" of a well-known comparison)."""

    name: str = "resnet18"
    num_classes: int = 10
    stem: str = "cifar"
    layers: list[int] | None = field(default=None)
    width: int = DEFAULT_WIDTH

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise ConfigError(f"unknown model '{self.name}': choose one of {', '.join(ARCHITECTURES)}")
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {self.num_classes}")
        if self.stem not in STEMS:
            raise ConfigError(f"unknown stem '{self.stem}': choose cifar or imagenet")
        if self.width < 1:
            raise ConfigError(f"width must be at least 1, got {self.width}")
        if self.layers is not None:
            if len(self.layers) != 4 or min(self.layers) < 1:
                raise ConfigError(f"layers must be 4 positive block counts, got {self.layers}")
            other = architecture_of(self.block, self.layers)
            if other not in (None, self.name):
                raise ConfigError(
                    f"layers {','.join(map(str, self.layers))} with {self.block} are {other}: use --model {other}"
                )

    @property
    def block(self) -> str:
        return ARCHITECTURES[self.name][0].__name__

    @property
    def block_layers(self) -> list[int]:
        return list(self.layers) if self.layers is not None else ARCHITECTURES[self.name][1]

    def to_dict(self) -> dict:
        return asdict(self) | {"block": self.block, "layers": self.block_layers}

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelConfig:
        """The inverse of to_dict; raises ConfigError for a malformed dict."""
        try:
            layers = None if d.get("layers") is None else [int(n) for n in d["layers"]]
            default = ARCHITECTURES[d["name"]][1] if d.get("name") in ARCHITECTURES else None
            config = cls(
                str(d["name"]),
                int(d.get("num_classes", 10)),
                str(d.get("stem", "cifar")),
                None if layers == default else layers,
                int(d.get("width", DEFAULT_WIDTH)),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"not a model description ({type(e).__name__}: {e}): {dict(d)}") from None
        if "block" in d and d["block"] != config.block:
            raise ConfigError(f"model {config.name} has {config.block}s, not {d['block']}s")
        return config


def structure(shapes: Mapping[str, Sequence[int]]) -> dict:
    """What a resx ResNet's parameter shapes say it is: block, blocks per stage, stem, width and classes.
    Mirrors resx::structure (resnet_cpp/model.cpp); `resx inspect` checks a manifest against it."""
    conv1, fc = shapes.get("conv1.weight"), shapes.get("fc.weight")
    if conv1 is None or fc is None or len(conv1) != 4 or len(fc) != 2:
        return {}
    layers = [len({k.split(".")[1] for k in shapes if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    return {
        "block": "Bottleneck" if "layer1.0.conv3.weight" in shapes else "BasicBlock",
        "layers": layers,
        "stem": {3: "cifar", 7: "imagenet"}.get(int(conv1[-1]), f"{int(conv1[-1])}x{int(conv1[-1])} conv"),
        "width": int(conv1[0]),
        "num_classes": int(fc[0]),
    }


def build(config: ModelConfig, seed: int | None = None) -> ResNet:
    """The eager network; weights are a function of `seed` alone when one is given."""
    block, _ = ARCHITECTURES[config.name]
    if seed is None:
        return ResNet(block, config.block_layers, config.num_classes, config.stem, config.width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet(block, config.block_layers, config.num_classes, config.stem, config.width)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """module.load_state_dict(state), with the version each submodule's own state_dict records (its
    _metadata): resx's files and checkpoints hold tensors alone, and a module that versions its state
    (BatchNorm, torchvision's MNASNet: _version and _load_from_state_dict) must read the version it writes.
    The module is rebuilt by the code that wrote the state (its source, proved by the fingerprint)."""
    versioned = OrderedDict(state)
    versioned._metadata = getattr(state, "_metadata", None) or module.state_dict()._metadata  # type: ignore[attr-defined]
    module.load_state_dict(versioned)
