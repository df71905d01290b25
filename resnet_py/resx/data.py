"""CIFAR-10 for both runtimes: readers, download, and the augmentation spec, defined once here.

The C++ runtime never retypes these numbers: it reads them from the model manifest or from the
training config that Python hands it (resnet_cpp/data.cpp mirrors the names used here).

Normalisation: the per-channel mean and standard deviation of the 50,000 training images,
(0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616). The widely copied std (0.2023, 0.1994, 0.2010)
is the mean of per-image standard deviations, not the dataset's; we use the dataset's.

Randomness: a seed and an epoch give one torch CPU generator (seeded with `epoch_seed(seed, epoch)`),
from which the epoch's shuffle order, every sample's crop offsets and its flip are drawn in that call
order: randperm(n), randint(0, 2*padding+1, (n, 2)), rand(n) < flip_p. Both runtimes make the same
ATen calls on the same generator, so they draw the same numbers; tests prove the batches bit-identical.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from resx.errors import DataError
from resx.files import atomic_write

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32
BINARY_DIR = "cifar-10-batches-bin"
PICKLED_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
SPLIT_SIZES = {"train": 50_000, "test": 10_000}

# The official binary release and its published md5.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
DATA_ENV = "RESX_DATA"


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

    def to_cpp(self):
        from resx import _cpp

        return _cpp.AugmentSpec(self.crop, self.padding, self.flip_p, list(self.mean), list(self.std))


AUGMENT = AugmentSpec()


# ---------------------------------------------------------------------------------------- readers


def read_binary(path: Path) -> tuple[Tensor, Tensor]:
    """One binary batch file: uint8 images [N,3,32,32] and int64 labels [N]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0 or size % RECORD_BYTES:
        raise DataError(
            f"{path}: size {size} is not a positive multiple of {RECORD_BYTES} "
            f"(1 label byte + 3,072 pixel bytes per record); the file is truncated or not CIFAR-10"
        )
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    _check_labels(path, labels)
    images = torch.from_numpy(np.ascontiguousarray(records[:, 1:])).view(-1, *IMAGE_SHAPE)
    return images, labels


def _check_labels(path: Path, labels: Tensor) -> None:
    if len(labels) and int(labels.max()) > 9:
        bad = int(torch.nonzero(labels > 9)[0, 0])
        raise DataError(f"{path}: record {bad} has label {int(labels[bad])}, CIFAR-10 labels are 0..9")


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's pickled batches hold dicts of numpy arrays and lists: allow exactly that."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001  (unpickling raises many kinds for a file that is not one)
        raise DataError(f"{path}: not a CIFAR-10 pickled batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR-10 pickled batch (holds {type(obj).__name__}, not dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_pickled(path: Path) -> tuple[Tensor, Tensor]:
    """One pickled batch file (cifar-10-batches-py): the same tensors as read_binary."""
    path = Path(path)
    batch = _unpickle(path)
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DataError(f"{path}: pickled batch lacks key(s) {', '.join(missing)}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != RECORD_BYTES - 1 or len(batch["labels"]) != len(data):
        raise DataError(
            f"{path}: 'data' must be [N, 3072] with N labels, got {list(data.shape)} and {len(batch['labels'])} labels"
        )
    labels = torch.tensor(batch["labels"], dtype=torch.int64)
    _check_labels(path, labels)
    return torch.from_numpy(np.ascontiguousarray(data)).view(-1, *IMAGE_SHAPE), labels


def find_layout(data_dir: Path) -> tuple[str, Path]:
    """('binary' | 'pickled', directory of the batch files) for DIR, DIR/cifar-10-batches-bin or
    DIR/cifar-10-batches-py (binary preferred)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: no such directory (get CIFAR-10 with `resx data fetch` or point "
            f"--data / ${DATA_ENV} at a copy)"
        )
    for layout, sub, probe in (("binary", BINARY_DIR, "test_batch.bin"), ("pickled", PICKLED_DIR, "test_batch")):
        for d in (data_dir / sub, data_dir):
            if (d / probe).exists() or (d / f"data_batch_1{'.bin' if layout == 'binary' else ''}").exists():
                return layout, d
    raise DataError(
        f"{data_dir}: holds no CIFAR-10 batches (expected {BINARY_DIR}/ or {PICKLED_DIR}/ with "
        f"data_batch_1..5 and test_batch)"
    )


def split_files(layout: str, directory: Path, split: str) -> list[Path]:
    if split not in SPLIT_SIZES:
        raise DataError(f"unknown split '{split}': train or test")
    names = TRAIN_FILES if split == "train" else TEST_FILES
    return [directory / (n + ".bin" if layout == "binary" else n) for n in names]


def load_split(data_dir: Path, split: str) -> tuple[Tensor, Tensor]:
    """All images and labels of a split, in file order, loaded once."""
    layout, directory = find_layout(data_dir)
    read = read_binary if layout == "binary" else read_pickled
    parts = [read(p) for p in split_files(layout, directory, split)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def first_n(split: tuple[Tensor, Tensor], n: int) -> tuple[Tensor, Tensor]:
    """The first n samples of a split (all when n <= 0 or n >= its size); mirrors resx::first_n."""
    return split if n <= 0 or n >= len(split[0]) else (split[0][:n].contiguous(), split[1][:n].contiguous())


def class_names(data_dir: Path) -> list[str]:
    layout, directory = find_layout(data_dir)
    if layout == "binary":
        meta = directory / "batches.meta.txt"
        if meta.is_file():
            return [line.strip() for line in meta.read_text().splitlines() if line.strip()]
    else:
        meta = directory / "batches.meta"
        if meta.is_file():
            return [n.decode() if isinstance(n, bytes) else n for n in _unpickle(meta).get("label_names", [])]
    return list(CLASSES)


def convert_pickled_to_binary(src: Path, dst: Path) -> Path:
    """Write the binary layout from the pickled one, so that the C++ reader can use it. The files are
    written into a temporary directory beside the result and appear together by one rename: a failure
    (a bad batch, a full disk) leaves nothing behind, and an existing result is never touched."""
    layout, directory = find_layout(src)
    out = Path(dst) / BINARY_DIR
    if out.exists():
        raise DataError(f"{out}: exists already; remove it or choose another destination")
    read = read_binary if layout == "binary" else read_pickled
    try:
        Path(dst).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{BINARY_DIR}.", dir=dst, ignore_cleanup_errors=True) as tmp:
            for split in SPLIT_SIZES:
                for path in split_files(layout, directory, split):
                    write_binary(Path(tmp) / (path.name.removesuffix(".bin") + ".bin"), *read(path))
            atomic_write(Path(tmp) / "batches.meta.txt", "\n".join(class_names(src)) + "\n")
            os.rename(tmp, out)  # what remains to clean up on success: nothing
    except OSError as e:
        raise DataError(f"{e.filename or out}: cannot write ({e.strerror})") from None
    return out


def write_binary(path: Path, images: Tensor, labels: Tensor) -> None:
    """Write records in the binary layout (used by tests and the converter)."""
    records = torch.cat([labels.to(torch.uint8)[:, None], images.reshape(len(images), -1)], 1)
    atomic_write(Path(path), records.contiguous().numpy().tobytes())


# ----------------------------------------------------------------------------- check and download


@dataclass
class CheckReport:
    directory: Path
    layout: str
    counts: dict[str, list[int]]  # split -> images per class
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(data_dir: Path, expect_full: bool = True) -> CheckReport:
    """Validate every file of both splits; collect each problem as one line."""
    layout, directory = find_layout(data_dir)
    counts: dict[str, list[int]] = {}
    problems: list[str] = []
    read = read_binary if layout == "binary" else read_pickled
    for split, size in SPLIT_SIZES.items():
        labels = []
        for path in split_files(layout, directory, split):
            try:
                labels.append(read(path)[1])
            except DataError as e:
                problems.append(str(e))
        if not labels:
            continue
        per_class = torch.bincount(torch.cat(labels), minlength=10).tolist()
        counts[split] = per_class
        if expect_full and sum(per_class) != size:
            problems.append(f"{directory}: {split} split has {sum(per_class)} images, expected {size}")
        elif expect_full and len(set(per_class)) != 1:
            problems.append(f"{directory}: {split} split is unbalanced: {per_class} images per class")
    return CheckReport(directory, layout, counts, problems)


def default_data_dir() -> Path:
    """$RESX_DATA, else ~/.cache/resx/cifar10."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path.home() / ".cache" / "resx" / "cifar10"


def fetch(
    dest: Path,
    url: str = URL,
    md5: str = MD5,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30,
) -> Path:
    """Download and unpack the binary release into DEST/cifar-10-batches-bin.

    The archive downloads to a `.part` file that resumes (HTTP Range) when a previous try was cut
    off, and is only unpacked after its md5 matches; the batches appear by an atomic rename, so a
    partial download never looks complete."""
    dest = Path(dest)
    final = dest / BINARY_DIR
    if final.is_dir() and (final / "test_batch.bin").is_file():
        return final
    part = dest / "cifar-10-binary.tar.gz.part"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        _download(url, part, progress, timeout)
        digest = hashlib.md5(part.read_bytes()).hexdigest()
        if digest != md5:
            part.unlink()
            raise DataError(
                f"{url}: md5 {digest} != published {md5}; the download was corrupt and is deleted, run again"
            )
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            with tarfile.open(part) as tar:
                tar.extractall(tmp, filter="data")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(Path(tmp) / BINARY_DIR, final)
    except OSError as e:  # a local write: a full disk keeps no partial archive either
        part.unlink(missing_ok=True)
        raise DataError(f"{e.filename or dest}: cannot write ({e.strerror})") from None
    part.unlink()
    return final


def _download(url: str, part: Path, progress: Callable[[int, int | None], None] | None, timeout: float) -> None:
    """Append to `part` what the server has beyond it (HTTP Range); a network failure keeps `part` for the
    next try, a local write failure raises OSError."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(
            f"cannot download {url} ({reason}); without internet, copy the CIFAR-10 binary release "
            f"to a directory and pass it with --data DIR or ${DATA_ENV}=DIR"
        ) from None
    with response:
        resumed = getattr(response, "status", None) == 206  # the server honoured Range
        length = int(response.headers.get("Content-Length") or 0)
        total = length + (have if resumed else 0) if length else None
        with open(part, "ab" if resumed else "wb") as f:
            done = have if resumed else 0
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (TimeoutError, ConnectionError) as e:
                    raise DataError(
                        f"download of {url} cut off after {done:,} bytes ({e}); run again to resume"
                    ) from None
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)


# ------------------------------------------------------------------------------------ augmentation


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch (splitmix64 of seed and epoch); mirrors resx::epoch_seed."""
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + epoch + 1) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) & ((1 << 63) - 1)  # torch seeds are non-negative int64


def shard_size(n: int, world: int) -> int:
    """Samples per rank of n (DistributedSampler's rule, padding)."""
    return -(-n // world)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's randomness: the order of the samples and, per position, crop offsets and flip."""

    order: Tensor  # int64 [n]
    offsets: Tensor  # int64 [n, 2]: (dy, dx) into the padded image
    flips: Tensor  # bool [n]

    def shard(self, rank: int, world: int) -> EpochPlan:
        """A rank's share of the epoch, by DistributedSampler's rule: the order padded with its own first
        positions to a multiple of the world size, then every world-th position from the rank's.
        Mirrors resx::EpochPlan::shard."""
        if world == 1:
            return self
        n = len(self.order)
        positions = (torch.arange(shard_size(n, world) * world) % n)[rank::world]
        return EpochPlan(self.order[positions], self.offsets[positions], self.flips[positions])

    @classmethod
    def draw(cls, seed: int, epoch: int, n: int, spec: AugmentSpec = AUGMENT) -> EpochPlan:
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(n, generator=g)
        offsets = torch.randint(0, 2 * spec.padding + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < spec.flip_p
        return cls(order, offsets, flips)


def augment_batch(images: Tensor, offsets: Tensor, flips: Tensor, spec: AugmentSpec = AUGMENT) -> Tensor:
    """uint8 [B,3,H,W] -> uint8 [B,3,crop,crop]: zero-pad, crop at (dy, dx), then flip.

    Output pixel (y, x) of sample b is padded[b, :, dy + y, dx + x'] with x' = crop-1-x when flipped:
    one gather over the flattened padded image, no per-image Python."""
    b, c, _, w = images.shape
    p, size = spec.padding, spec.crop
    padded = F.pad(images, (p, p, p, p)).view(b, c, -1)
    ar = torch.arange(size)
    rows = offsets[:, :1] + ar  # [B, crop]
    cols = offsets[:, 1:] + ar
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(b, 1, size * size)
    return padded.gather(2, index.expand(b, c, size * size)).view(b, c, size, size)


def normalize(images: Tensor, spec: AugmentSpec = AUGMENT) -> Tensor:
    """uint8 -> float32 (x / 255 - mean) / std, the same ATen ops as the C++ runtime's table."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return images.float().div_(255).sub_(mean).div_(std)


@dataclass
class Batch:
    images: Tensor  # uint8, augmented
    inputs: Tensor  # float32, normalised
    labels: Tensor  # int64


class CifarLoader:
    """Batches of one split, tensor-based (after airbench's CifarLoader); mirrors resx::CifarLoader.

    train=True shuffles and augments with the epoch plan; train=False keeps file order and only
    normalises. drop_last drops a final partial batch (the same on both runtimes). pin_memory: inputs
    and labels in page-locked memory, for non-blocking copies to a GPU. rank, world: a training loader
    hands out its rank's shard of each epoch (EpochPlan.shard), an evaluation loader every world-th image
    from the rank's (no padding: each image is evaluated once)."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        drop_last: bool = False,
        spec: AugmentSpec = AUGMENT,
        pin_memory: bool = False,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.images, self.labels, self.pin_memory, self.rank, self.world = images, labels, pin_memory, rank, world
        self.batch_size, self.train, self.seed, self.drop_last, self.spec = batch_size, train, seed, drop_last, spec

    def _samples(self) -> int:
        n = len(self.images)
        return shard_size(n, self.world) if self.train else len(range(self.rank, n, self.world))

    def __len__(self) -> int:
        n, b = self._samples(), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def batches(self, epoch: int = 0) -> Iterator[Batch]:
        n = self._samples()
        plan = (
            EpochPlan.draw(self.seed, epoch, len(self.images), self.spec).shard(self.rank, self.world)
            if self.train
            else None
        )
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, n)
            if plan is None and self.world == 1:
                images, labels = self.images[lo:hi], self.labels[lo:hi]
            elif plan is None:
                idx = torch.arange(self.rank + lo * self.world, self.rank + hi * self.world, self.world)
                images, labels = self.images[idx], self.labels[idx]
            else:
                idx = plan.order[lo:hi]
                images = augment_batch(self.images[idx], plan.offsets[lo:hi], plan.flips[lo:hi], self.spec)
                labels = self.labels[idx]
            inputs = normalize(images, self.spec)
            if self.pin_memory:
                inputs, labels = inputs.pin_memory(), labels.pin_memory()
            yield Batch(images, inputs, labels)
