"""Where batch-1 latency goes, against the floor `resx bench` reports (the network's FLOPs at the rate of a
2048² GEMM): each convolution of ResNet18 timed alone at batch 1 (the rate its shape allows), and a
profile of the fastest fp32 path (torch.compile) by operator.

    .venv/bin/python benchmarks/bench_floor.py [--threads 2] [--calls 50]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from resx.bench.run import gemm_floor
from resx.export.aoti import Inference
from resx.models import ModelConfig, build


def best_ms(fn, calls: int) -> float:
    with torch.inference_mode():
        for _ in range(5):
            fn()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times) * 1e3


def conv_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Conv2d, torch.Tensor]]:
    """Every convolution with the input it sees at this batch (from forward hooks)."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, m, i[0].detach())))
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.inference_mode():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    floor = gemm_floor(torch.get_num_threads())
    print(
        f"load average {os.getloadavg()}, intra-op threads {torch.get_num_threads()}; 2048² GEMM: "
        f"{floor['fp32']:.0f} GFLOP/s fp32, {floor['bf16']:.0f} bf16"
    )
    model = build(ModelConfig("resnet18"), seed=0).eval()
    x = torch.randn(1, 3, 32, 32)
    total_flops, total_ms = 0, 0.0
    print(f"{'convolution':28} {'input':>14} {'MFLOP':>7} {'ms':>7} {'GFLOP/s':>8}")
    for name, conv, inp in conv_layers(model, x):
        out_hw = (inp.shape[2] + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        flops = 2 * conv.out_channels * out_hw * out_hw * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        ms = best_ms(lambda conv=conv, inp=inp: F.conv2d(inp, conv.weight, None, conv.stride, conv.padding), args.calls)
        total_flops, total_ms = total_flops + flops, total_ms + ms
        shape = "x".join(map(str, inp.shape[1:]))
        print(f"{name:28} {shape:>14} {flops / 1e6:7.1f} {ms:7.3f} {flops / ms / 1e6:8.1f}")
    print(
        f"{'all convolutions':28} {'':>14} {total_flops / 1e6:7.1f} {total_ms:7.3f} {total_flops / total_ms / 1e6:8.1f}"
    )
    print(
        f"floor at the GEMM's rate: {total_flops / (floor['fp32'] * 1e9) * 1e3:.3f} ms; the convolutions alone, each "
        f"at its best: {total_ms:.3f} ms"
    )
    eager_ms = best_ms(lambda: model(x), args.calls)
    torch._inductor.config.freezing = True
    compiled = torch.compile(Inference(model))
    compiled_ms = best_ms(lambda: compiled(x), args.calls)
    print(
        f"whole forward, best of {args.calls}: eager {eager_ms:.3f} ms, torch.compile (freezing) {compiled_ms:.3f} ms"
    )
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof, torch.inference_mode():
        for _ in range(20):
            compiled(x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
