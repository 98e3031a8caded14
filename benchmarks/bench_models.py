"""CPU inference latency of each architecture against this machine's matrix-multiply limit.

For every architecture: FLOPs of one 512x512 forward (torch's FLOP counter), median latency at batch 1,
the achieved FLOP/s, and the ratio to the fp32 matmul throughput measured in the same run (the physical
limit: a model cannot run its convolutions faster than a large matmul). Optionally the peak memory of a
training step (--train-memory, a subprocess per architecture).

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


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def latency(model: torch.nn.Module, x: torch.Tensor, runs: int) -> float:
    with torch.no_grad():
        return median_seconds(lambda: model(x), runs)[0]


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
    limit = matmul_gflops()
    print(f"threads {torch.get_num_threads()}, fp32 matmul {limit:.0f} GFLOP/s (measured now)")
    rows = []
    for arch in args.archs:
        model = build_model(arch, HEADS).eval()
        flops = forward_flops(model, x)
        seconds = latency(model, x, args.runs)
        bound = flops / (limit * 1e9)
        row = {"arch": arch, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
               "GFLOPs": round(flops / 1e9, 1), "latency_ms": round(seconds * 1e3, 1),
               "achieved_GFLOP/s": round(flops / seconds / 1e9, 1), "matmul_bound_ms": round(bound * 1e3, 1),
               "x_bound": round(seconds / bound, 2)}
        if args.train_memory:
            row[f"train_peak_GiB_b{args.train_batch}"] = round(train_step_memory(arch, args.size, args.train_batch), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
