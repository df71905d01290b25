"""The training recipe, defined once: both runtimes receive this object (C++ as a resx-config/1 file,
including the learning rate of every step, so no schedule formula is retyped in C++)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from resx.data import AUGMENT, AugmentSpec
from resx.models import ModelConfig

SCHEDULES = ("cosine", "step", "onecycle", "constant")
RUNTIMES = ("py", "cpp", "cpp-exe")
CONFIG_FORMAT = "resx-config/1"


@dataclass
class TrainConfig:
    model: str = "resnet18"
    num_classes: int = 10
    stem: str = "cifar"
    layers: list[int] | None = None
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 0  # 0: LibTorch's default
    device: str = "cpu"
    subset: int = 0  # first N training images; 0: all
    test_subset: int = 0  # first M test images; 0: all
    drop_last: bool = True
    eval_every: int = 1
    augment: AugmentSpec = field(default_factory=lambda: AUGMENT)

    def validate(self) -> None:
        """Raise ValueError with one line naming the setting and the fix."""
        self.model_config()  # model name, stem, classes, layers
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.schedule in SCHEDULES, f"unknown schedule '{self.schedule}': choose {', '.join(SCHEDULES)}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.threads >= 0, f"threads must be >= 0, got {self.threads}"),
            (self.subset >= 0 and self.test_subset >= 0, "subset sizes must be >= 0"),
            (self.eval_every >= 1, f"eval-every must be at least 1, got {self.eval_every}"),
            (self.device == "cpu" or self.device.startswith("cuda"), f"unknown device '{self.device}': cpu or cuda"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def model_config(self) -> ModelConfig:
        return ModelConfig(self.model, self.num_classes, self.stem, self.layers)

    def steps_per_epoch(self, n_train: int) -> int:
        return n_train // self.batch_size if self.drop_last else -(-n_train // self.batch_size)

    def learning_rates(self, steps_per_epoch: int) -> list[float]:
        """The learning rate of every optimizer step of the run (linear warm-up, then the schedule)."""
        total = steps_per_epoch * self.epochs
        warmup = min(total, round(self.warmup_epochs * steps_per_epoch))
        lrs = []
        for t in range(total):
            if t < warmup:
                lrs.append(self.lr * (t + 1) / warmup)
                continue
            progress = (t - warmup) / max(1, total - warmup)
            if self.schedule == "cosine":
                lrs.append(self.lr * 0.5 * (1 + math.cos(math.pi * progress)))
            elif self.schedule == "step":  # x0.1 at 50% and 75% of training
                lrs.append(self.lr * (0.1 ** ((progress >= 0.5) + (progress >= 0.75))))
            elif self.schedule == "onecycle":  # up from lr/25 over 30%, cosine down to lr/1e4
                if progress < 0.3:
                    lrs.append(self.lr / 25 + (self.lr - self.lr / 25) * progress / 0.3)
                else:
                    q = (progress - 0.3) / 0.7
                    lrs.append(self.lr / 1e4 + (self.lr - self.lr / 1e4) * 0.5 * (1 + math.cos(math.pi * q)))
            else:
                lrs.append(self.lr)
        return lrs

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if isinstance(values.get("augment"), dict):
            a = values["augment"]
            values["augment"] = AugmentSpec(a["crop"], a["padding"], a["flip_p"], tuple(a["mean"]), tuple(a["std"]))
        return cls(**values)

    def cpp_config_text(
        self,
        *,
        runtime: str,
        model_file: Path,
        data_dir: Path,
        run_dir: Path,
        steps_per_epoch: int,
        resume: bool,
        prefetch: bool = True,
    ) -> str:
        """The resx-config/1 file that resx::TrainConfig::read parses. Floats as repr: the exact
        same doubles reach C++."""
        a = self.augment
        values = {
            "format": CONFIG_FORMAT,
            "runtime": runtime,
            "model_file": model_file,
            "data_dir": data_dir,
            "run_dir": run_dir,
            "device": self.device,
            "model_config": json.dumps(self.model_config().to_dict(), separators=(",", ":")),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "threads": self.threads,
            "subset": self.subset,
            "test_subset": self.test_subset,
            "eval_every": self.eval_every,
            "momentum": repr(self.momentum),
            "weight_decay": repr(self.weight_decay),
            "label_smoothing": repr(self.label_smoothing),
            "nesterov": int(self.nesterov),
            "drop_last": int(self.drop_last),
            "prefetch": int(prefetch),
            "resume": int(resume),
            "crop": a.crop,
            "padding": a.padding,
            "flip_p": repr(a.flip_p),
            "mean": ",".join(map(repr, a.mean)),
            "std": ",".join(map(repr, a.std)),
            "lrs": ",".join(map(repr, self.learning_rates(steps_per_epoch))),
        }
        lines = ["# resx training config: written by resx, read by the C++ runtime (resx-cpp train FILE)"]
        lines += [f"{k} = {v}" for k, v in values.items()]
        return "\n".join(lines) + "\n"
