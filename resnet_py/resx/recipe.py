"""The training recipe, defined once: both runtimes receive this object (C++ as the run's config.json,
including the learning rate of every step, so no schedule formula is retyped in C++)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from resx.data import AUGMENT, IMAGE_SHAPE, AugmentSpec, epoch_seed
from resx.distributed import BROADCAST_BUCKET_BYTES, BUCKET_BYTES_CAP, FIRST_BUCKET_BYTES_CAP, RANK_COLUMNS
from resx.errors import ConfigError
from resx.models import DEFAULT_WIDTH, DTYPES, MAX_SEED, ModelConfig
from resx.options import json_object, option, stages
from resx.sources import Source

MODEL_STREAM = 1 << 32  # model_seeds() draws from epoch_seed's epochs beyond any data epoch

SCHEDULES = ("cosine", "step", "onecycle", "constant")
DEVICES = ("cpu", "cuda")
CONFIG_FORMAT = "resx-config/2"  # config.json; resx-config/1 was a key = value config.txt


@dataclass
class TrainConfig:
    model: str = option("resnet18", "A resx ResNet, torchvision:NAME or a factory (see resx export --help).")
    model_kwargs: dict = option(
        {}, "torchvision or factory models: keyword arguments as a JSON object.", parse=json_object
    )
    num_classes: int = option(10, "Classes of the head.")
    stem: str = option("cifar", "cifar or imagenet.")
    layers: list[int] | None = option(
        None, "Blocks per stage, e.g. 3,3,3,3.", parse=lambda t, o: list(stages(t, o)), show="the depth's own"
    )
    width: int = option(DEFAULT_WIDTH, "Channels of the first stage.")
    epochs: int = option(1, "Epochs to train; with --resume, a larger number extends.")
    batch_size: int = option(128, "Images per step (per process).")
    lr: float = option(0.1, "Base learning rate.")
    momentum: float = option(0.9, "SGD momentum.")
    weight_decay: float = option(5e-4, "SGD weight decay.")
    nesterov: bool = option(False, "Nesterov momentum.")
    schedule: str = option("cosine", "cosine, step, onecycle or constant, per step.")
    warmup_epochs: float = option(0.0, "Linear warm-up, in epochs.")
    label_smoothing: float = option(0.0, "Cross-entropy label smoothing.")
    seed: int = option(0, "Seed of weights, shuffle and augmentation.")
    threads: int = option(0, "Intra-op threads (0: LibTorch's default).")
    device: str = option("cpu", "cpu or cuda.")
    subset: int = option(0, "Train on the first N images (0: all).")
    test_subset: int = option(0, "Evaluate on the first M test images (0: all).")
    drop_last: bool = option(True, "The last partial batch.", flag="--drop-last/--keep-last", show="drop")
    eval_every: int = option(1, "Evaluate every N epochs (and after the last).")
    dtype: str = option("fp32", "fp32, or bf16 (autocast around forward and loss, in both runtimes).")
    channels_last: bool = option(
        False, "Memory format of weights and inputs.", flag="--channels-last/--contiguous", show="contiguous"
    )
    compile: bool = option(False, "py runtime: torch.compile the forward (eager module).")
    deterministic: bool = option(
        False,
        "Deterministic algorithms (CUDA: cuDNN, cuBLAS), in both runtimes.",
        flag="--deterministic/--nondeterministic",
    )
    world_size: int = 1  # processes of a data-parallel run (resx.distributed); batch_size is per process
    augment: AugmentSpec = field(default_factory=lambda: AUGMENT)

    def validate(self) -> None:
        """Raise ConfigError with one line naming the setting (as its command-line option) and the range."""
        if self.source().kind == "file":  # name, stem, classes, layers, width, kwargs
            raise ConfigError(
                f"--model {self.model}: resx trains a model it can build (a resx ResNet, "
                f"torchvision:NAME or a factory), not a model file"
            )
        for flag, value in (
            ("--lr", self.lr),
            ("--momentum", self.momentum),
            ("--weight-decay", self.weight_decay),
            ("--warmup-epochs", self.warmup_epochs),
            ("--label-smoothing", self.label_smoothing),
        ):
            if not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number, got {value}")
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (not self.nesterov or self.momentum > 0, "--nesterov needs a positive --momentum"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.schedule in SCHEDULES, f"unknown --schedule '{self.schedule}': choose {', '.join(SCHEDULES)}"),
            (
                0 <= self.warmup_epochs <= self.epochs,
                f"--warmup-epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}",
            ),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.seed <= MAX_SEED, f"--seed must be in [0, 2**63 - 1], got {self.seed}"),
            (self.threads >= 0, f"--threads must be >= 0 (0: LibTorch's default), got {self.threads}"),
            (self.subset >= 0, f"--subset must be >= 0 (0: all), got {self.subset}"),
            (self.test_subset >= 0, f"--test-subset must be >= 0 (0: all), got {self.test_subset}"),
            (self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}"),
            (self.world_size >= 1, f"the world size must be at least 1, got {self.world_size}"),
            (self.device.split(":")[0] in DEVICES, f"unknown --device '{self.device}': cpu or cuda"),
            (self.dtype in DTYPES, f"unknown --dtype '{self.dtype}': {' or '.join(DTYPES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def source(self) -> Source:
        """The model trained, at the data set's shape (CIFAR-10: 3x32x32)."""
        return Source.parse(
            self.model,
            self.model_kwargs,
            self.num_classes,
            IMAGE_SHAPE,
            stem=self.stem,
            layers=self.layers,
            width=self.width,
        )

    def model_config(self) -> ModelConfig:
        """A resx ResNet's config (what the C++ frontend builds)."""
        return ModelConfig(self.model, self.num_classes, self.stem, self.layers, self.width)

    def checkpoint_model(self) -> str:
        """What a checkpoint records of its model (both runtimes store this string): a resx ResNet's
        ModelConfig, which the C++ frontend builds from, else the source, which Python rebuilds from."""
        source = self.source()
        described = source.config.to_dict() if source.kind == "builtin" else source.to_dict()
        return json.dumps(described, separators=(",", ":"))

    def model_seeds(self) -> list[int]:
        """The seed of the default generator at the start of each epoch, in both runtimes: what dropout
        draws from (the data plan has a generator of its own), a function of seed and epoch, so that a
        resumed run draws as an uninterrupted one."""
        return [epoch_seed(self.seed, MODEL_STREAM + e) for e in range(self.epochs)]

    def steps_per_epoch(self, n_train: int) -> int:
        return n_train // self.batch_size if self.drop_last else -(-n_train // self.batch_size)

    def digest(self) -> str:
        """What a checkpoint must have been made with to continue this run: everything but the number
        of epochs (which --resume may extend)."""
        settings = {k: v for k, v in self.to_dict().items() if k != "epochs"}
        if not settings["model_kwargs"]:  # as digested before model_kwargs existed: old runs resume
            del settings["model_kwargs"]
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()

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
        try:
            if isinstance(values.get("augment"), dict):
                a = values["augment"]
                values["augment"] = AugmentSpec(a["crop"], a["padding"], a["flip_p"], tuple(a["mean"]), tuple(a["std"]))
            return cls(**values)
        except (KeyError, TypeError) as e:
            raise ConfigError(f"not a resx training config ({type(e).__name__}: {e})") from None

    def cpp_config(
        self,
        *,
        runtime: str,
        module: str,
        model_file: Path,
        data_dir: Path,
        run_dir: Path,
        steps_per_epoch: int,
        run_files: dict,
        saved: dict,
        prefetch: bool = True,
    ) -> dict:
        """config.json, what resx::TrainConfig::read parses: this config by its own field names, and what the
        run adds (its files, every step's learning rate, DDP's sizes). JSON floats are Python's repr: the
        same doubles reach C++. run_files: the run directory's names and columns (resx.rundir); saved:
        train_config.json, echoed into run.json."""
        return {
            "format": CONFIG_FORMAT,
            "config": self.to_dict(),
            "runtime": runtime,
            "module": module,
            "model_file": str(model_file),
            "data_dir": str(data_dir),
            "run_dir": str(run_dir),
            "model_config": self.checkpoint_model(),
            "model_seeds": self.model_seeds(),
            "saved": saved,
            "config_digest": self.digest(),
            "steps_per_epoch": steps_per_epoch,
            "prefetch": prefetch,
            "distributed": {
                "bucket_bytes_cap": BUCKET_BYTES_CAP,
                "first_bucket_bytes_cap": FIRST_BUCKET_BYTES_CAP,
                "broadcast_bucket_bytes": BROADCAST_BUCKET_BYTES,
                "rank_columns": list(RANK_COLUMNS),
            },
            "run_files": run_files,
            "lrs": self.learning_rates(steps_per_epoch),
        }
