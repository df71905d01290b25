"""The ResNet family for CIFAR-10, defined once for both runtimes.

Written as torchvision's `models/resnet.py`: one block class per kind, builder functions, typed and
scriptable as they are. The CIFAR stem (3x3 stride-1 conv, no max-pool) is the default; the ImageNet
stem (7x7 stride-2 conv + 3x3 stride-2 max-pool) is an explicit option, to reproduce on purpose what a
mismatched comparison measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

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
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
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
    ):
        super().__init__()
        self.inplanes = 64
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

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


# name -> (block, blocks per stage)
ARCHITECTURES: dict[str, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a resx network. `layers` overrides the depth's blocks per stage
    (e.g. [3, 3, 3, 3] with the ImageNet stem is the C++ "ResNet18" of a well-known comparison)."""

    name: str = "resnet18"
    num_classes: int = 10
    stem: str = "cifar"
    layers: list[int] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise ValueError(f"unknown model '{self.name}': choose one of {', '.join(ARCHITECTURES)}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem '{self.stem}': choose cifar or imagenet")
        if self.layers is not None and (len(self.layers) != 4 or min(self.layers) < 1):
            raise ValueError(f"layers must be 4 positive block counts, got {self.layers}")

    @property
    def block_layers(self) -> list[int]:
        return list(self.layers) if self.layers is not None else ARCHITECTURES[self.name][1]

    def to_dict(self) -> dict:
        return asdict(self) | {"block": ARCHITECTURES[self.name][0].__name__, "layers": self.block_layers}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        layers = d.get("layers")
        default = ARCHITECTURES[d["name"]][1] if d.get("name") in ARCHITECTURES else None
        return cls(
            d["name"],
            int(d.get("num_classes", 10)),
            d.get("stem", "cifar"),
            None if layers is None or list(layers) == default else list(layers),
        )


def build(config: ModelConfig, seed: int | None = None) -> ResNet:
    """The eager network; weights are a function of `seed` alone when one is given."""
    block, _ = ARCHITECTURES[config.name]
    if seed is None:
        return ResNet(block, config.block_layers, config.num_classes, config.stem)  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet(block, config.block_layers, config.num_classes, config.stem)  # type: ignore[arg-type]


def resnet18(**kwargs) -> ResNet:
    return build(ModelConfig("resnet18", **kwargs))


def resnet34(**kwargs) -> ResNet:
    return build(ModelConfig("resnet34", **kwargs))


def resnet50(**kwargs) -> ResNet:
    return build(ModelConfig("resnet50", **kwargs))


def resnet101(**kwargs) -> ResNet:
    return build(ModelConfig("resnet101", **kwargs))


def resnet152(**kwargs) -> ResNet:
    return build(ModelConfig("resnet152", **kwargs))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
