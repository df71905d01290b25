"""Models as a user's own code would make them, for tests/test_sources.py: factories that resx imports by
name (tests.factories:NAME) or from this file (path/to/factories.py:NAME)."""

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, channels: int = 4, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.features(x), 1)))


def tiny_cnn(channels: int = 4, num_classes: int = 10) -> nn.Module:
    return TinyCNN(channels, num_classes)


class OnlyTraces(TinyCNN):
    """A forward TorchScript cannot compile (a Python-side loop over a list of modules given as *args),
    which tracing takes as it runs."""

    def forward(self, *xs):
        return self.fc(torch.flatten(self.features(xs[0]), 1))


def only_traces() -> nn.Module:
    return OnlyTraces()


def raises() -> nn.Module:
    raise ValueError("no model today")


def not_a_module():
    return [1, 2, 3]


class TwoInputs(TinyCNN):
    def forward(self, x, y):
        return self.fc(torch.flatten(self.features(x + y), 1))


def two_inputs() -> nn.Module:
    return TwoInputs()


class ReturnsTuple(TinyCNN):
    def forward(self, x):
        logits = super().forward(x)
        return logits, logits


def returns_tuple() -> nn.Module:
    return ReturnsTuple()


def no_parameters() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Identity())


class Needs224(TinyCNN):
    def forward(self, x):
        assert x.shape[-1] == 224, "give me 224x224"
        return super().forward(x)


def needs_224() -> nn.Module:
    return Needs224()


def five_classes() -> nn.Module:
    """A factory with no num_classes argument: its own head decides."""
    return TinyCNN(num_classes=5)


def prints() -> nn.Module:
    """Research code that talks while it builds: a thousand lines to stdout and to stderr."""
    import sys

    for i in range(1000):
        print(f"loading layer {i}...")
        print(f"warning: layer {i} is fine", file=sys.stderr)
    return TinyCNN()


def exits() -> nn.Module:
    import sys

    sys.exit(3)


def aborts() -> nn.Module:
    import os

    os.abort()


def hangs() -> nn.Module:
    import time

    time.sleep(3600)
    return TinyCNN()
