"""Images/s of the augmentation pipelines: resx C++ (1 thread, with and without the prefetch thread),
resx Python tensor path (1 thread), and torchvision's usual pipeline in a DataLoader (2 workers).

    .venv/bin/python benchmarks/bench_data.py [--data DIR] [--epochs 2] [--batch-size 128]

Without --data it uses 50,000 random images (the work does not depend on pixel values).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from resx import _cpp
from resx import data as D


def rate(fn, n_images: int, repeats: int) -> float:
    fn(0)  # warm-up epoch
    best = 0.0
    for r in range(1, repeats + 1):
        t = time.perf_counter()
        fn(r)
        best = max(best, n_images / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="CIFAR-10 directory (default: random images)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per pipeline (best is reported)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--skip-torchvision", action="store_true")
    args = ap.parse_args()

    if args.data:
        images, labels = D.load_split(args.data, "train")
    else:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (50_000,), generator=g)
    n, bs = len(images), args.batch_size
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()}, {n} images, batch {bs}, intra-op threads 1")

    def cpp_epoch(prefetch: bool):
        loader = _cpp.CifarLoader(images, labels, bs, True, 0, False, D.AUGMENT.to_cpp(), prefetch)

        def run(epoch: int) -> None:
            loader.start_epoch(epoch)
            while loader.next() is not None:
                pass

        return run

    py_loader = D.CifarLoader(images, labels, bs, train=True)

    def py_epoch(epoch: int) -> None:
        for _ in py_loader.batches(epoch):
            pass

    results = {
        "resx C++ (1 thread, synchronous)": rate(cpp_epoch(False), n, args.epochs),
        "resx C++ (1 producer thread, prefetch)": rate(cpp_epoch(True), n, args.epochs),
        "resx Python tensor path (1 thread)": rate(py_epoch, n, args.epochs),
    }
    if not args.skip_torchvision:
        from PIL import Image
        from torchvision import transforms as T

        tf = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(D.AUGMENT.mean, D.AUGMENT.std),
            ]
        )
        hwc = images.permute(0, 2, 3, 1).numpy()

        class PilCifar(torch.utils.data.Dataset):  # what torchvision.datasets.CIFAR10 does per item
            def __len__(self):
                return n

            def __getitem__(self, i):
                return tf(Image.fromarray(hwc[i])), int(labels[i])

        dl = torch.utils.data.DataLoader(
            PilCifar(), batch_size=bs, shuffle=True, num_workers=2, persistent_workers=True
        )

        def tv_epoch(epoch: int) -> None:
            for _ in dl:
                pass

        results["torchvision RandomCrop+Flip+ToTensor+Normalize, DataLoader 2 workers"] = rate(tv_epoch, n, 1)

    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value:>10,.0f} img/s")


if __name__ == "__main__":
    main()
