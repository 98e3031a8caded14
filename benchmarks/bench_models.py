"""CPU inference latency of each architecture against this machine's roof.

The roof is the best fp32 throughput measured in the same run of a large matmul (2048^2) and of large dense
3x3 convolutions in both memory formats (NCHW and channels-last: on AVX-512 machines a channels-last
convolution runs well above the matmul). For every architecture: FLOPs of one 512x512 forward (torch's FLOP
counter), median latency at batch 1 in NCHW and in channels-last (model and input), interleaved, the achieved
FLOP/s of the faster one, and its ratio to the roof-bound latency. Optionally the peak memory of a training
step (--train-memory, a subprocess per architecture).

    python benchmarks/bench_models.py --archs resdcn_18 dla_34 --size 512 --runs 5
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from centernet import build_model
from timing import median_seconds

HEADS = {"hm": 80, "wh": 2, "reg": 2}


def matmul_gflops(n: int = 2048, runs: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def conv_gflops(channels_last: bool, channels: int = 256, side: int = 128, runs: int = 5) -> float:
    """fp32 throughput of a dense 3x3 convolution [1, C, side, side] -> [1, C, side, side]."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
    x = torch.randn(1, channels, side, side)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        seconds = median_seconds(lambda: conv(x), runs)[0]
    return 2 * channels * channels * 9 * side * side / seconds / 1e9


def roof_gflops() -> dict[str, float]:
    """The roof's candidates, measured now: {"matmul": ..., "conv_nchw": ..., "conv_nhwc": ...} GFLOP/s."""
    return {"matmul": matmul_gflops(), "conv_nchw": conv_gflops(False), "conv_nhwc": conv_gflops(True)}


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def latencies(model: torch.nn.Module, x: torch.Tensor, runs: int) -> tuple[float, float]:
    """Median seconds of a forward in NCHW and in channels-last (a copy of the model), interleaved run by run
    so that both see the same load."""
    import copy

    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model(x), last(x_last)  # warm-up
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(runs):
            for slot, (net, inp) in enumerate(((model, x), (last, x_last))):
                start = time.perf_counter()
                net(inp)
                times[slot].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def train_step_memory(arch: str, size: int, batch: int) -> float:
    """Peak resident memory (GiB) of a process that runs one forward + backward step."""
    code = (
        "import torch, resource; from centernet import build_model; "
        f"m = build_model({arch!r}, {HEADS!r}).train(); x = torch.randn({batch}, 3, {size}, {size}); "
        "out = m(x); sum(v.float().mean() for o in out for v in o.values()).backward(); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    kib = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    return kib / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="*", default=["res_18", "resdcn_18", "resdcn_101", "dla_34", "hourglass"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--train-memory", action="store_true", help="also peak memory of a training step")
    parser.add_argument("--train-batch", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    roofs = roof_gflops()
    limit = max(roofs.values())
    print(f"threads {torch.get_num_threads()}, fp32 GFLOP/s measured now: "
          + ", ".join(f"{k} {v:.0f}" for k, v in roofs.items()) + f"; roof {limit:.0f}")
    rows = []
    for arch in args.archs:
        model = build_model(arch, HEADS).eval()
        flops = forward_flops(model, x)
        nchw, nhwc = latencies(model, x, args.runs)
        seconds = min(nchw, nhwc)
        bound = flops / (limit * 1e9)
        row = {"arch": arch, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
               "GFLOPs": round(flops / 1e9, 1), "nchw_ms": round(nchw * 1e3, 1),
               "channels_last_ms": round(nhwc * 1e3, 1), "best": "channels_last" if nhwc < nchw else "nchw",
               "achieved_GFLOP/s": round(flops / seconds / 1e9, 1), "roof_bound_ms": round(bound * 1e3, 1),
               "x_bound": round(seconds / bound, 2)}
        if args.train_memory:
            row[f"train_peak_GiB_b{args.train_batch}"] = round(train_step_memory(arch, args.size, args.train_batch), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
