"""CPU inference latency of each architecture against this machine's roof.

The roof is the best fp32 throughput measured in the same run of a large matmul (2048^2) and of large dense
3x3 convolutions in both memory formats (NCHW and channels-last: on AVX-512 machines a channels-last
convolution runs well above the matmul). For every architecture: FLOPs of one 512x512 forward (torch's FLOP
counter), median latency at batch 1 in NCHW and in channels-last (model and input), interleaved, the achieved
FLOP/s of the fastest backend, and its ratio to the roof-bound latency. ``--onnx`` adds onnxruntime (the model
exported as ``export`` writes it, DCNs as ``DeformConv`` nodes) to the interleaved backends, so that the ratio is
that of the best backend. ``--cpu-time`` (one thread) times CPU seconds, roof included: figures that other
processes on a shared machine do not inflate. Optionally the peak memory of a training step (--train-memory, a
subprocess per architecture).

    python benchmarks/bench_models.py --archs resdcn_18 dla_34 --size 512 --runs 5
    python benchmarks/bench_models.py --archs res_18 resdcn_18 dla_34 --onnx --threads 1 --cpu-time
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from centernet import build_model
from timing import median_seconds

HEADS = {"hm": 80, "wh": 2, "reg": 2}
CLOCK = [time.perf_counter]  # time.process_time with --cpu-time


def matmul_gflops(n: int = 2048, runs: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(runs):
        t = CLOCK[0]()
        a @ b
        times.append(CLOCK[0]() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def conv_gflops(channels_last: bool, channels: int = 256, side: int = 128, runs: int = 5) -> float:
    """fp32 throughput of a dense 3x3 convolution [1, C, side, side] -> [1, C, side, side]."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
    x = torch.randn(1, channels, side, side)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        seconds = median_seconds(lambda: conv(x), runs, clock=CLOCK[0])[0]
    return 2 * channels * channels * 9 * side * side / seconds / 1e9


def roof_gflops() -> dict[str, float]:
    """The roof's candidates, measured now: {"matmul": ..., "conv_nchw": ..., "conv_nhwc": ...} GFLOP/s."""
    return {"matmul": matmul_gflops(), "conv_nchw": conv_gflops(False), "conv_nhwc": conv_gflops(True)}


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def backends(model: torch.nn.Module, arch: str, size: int, onnx: bool, workdir: Path) -> dict[str, Callable]:
    """name -> forward of an image [1, 3, size, size]: eager NCHW, eager channels-last (a copy of the model,
    its input converted per call as the predictor does), and with ``onnx`` an onnxruntime session."""
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    runners = {"nchw": model, "channels_last": lambda x: last(x.contiguous(memory_format=torch.channels_last))}
    if onnx:
        from centernet.app.builders import task_from_config
        from centernet.config import ExperimentConfig
        from centernet.export.onnx import OnnxRunner, export_onnx

        cfg = ExperimentConfig()
        cfg.model.arch, cfg.data.input_size = arch, (size, size)
        path = export_onnx(model, task_from_config(cfg), cfg, workdir / f"{arch}.onnx")
        runners["onnxruntime"] = OnnxRunner(path, threads=torch.get_num_threads())
    return runners


def latencies(runners: dict[str, Callable], x: torch.Tensor, runs: int) -> dict[str, float]:
    """Median seconds of a forward per backend, interleaved run by run so that all see the same load."""
    with torch.no_grad():
        for run in runners.values():
            run(x)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(runs):
            for name, run in runners.items():
                start = CLOCK[0]()
                run(x)
                times[name].append(CLOCK[0]() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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
    parser.add_argument("--onnx", action="store_true", help="also time onnxruntime (see above)")
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: torch's default)")
    parser.add_argument("--cpu-time", action="store_true", help="CPU seconds instead of wall time (--threads 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        if torch.get_num_threads() != 1:
            parser.error("--cpu-time counts every thread's time: use it with --threads 1")
        CLOCK[0] = time.process_time
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    roofs = roof_gflops()
    limit = max(roofs.values())
    print(f"threads {torch.get_num_threads()}, {'CPU' if args.cpu_time else 'wall'} time, fp32 GFLOP/s measured now: "
          + ", ".join(f"{k} {v:.0f}" for k, v in roofs.items()) + f"; roof {limit:.0f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            model = build_model(arch, HEADS).eval()
            flops = forward_flops(model, x)
            ms = latencies(backends(model, arch, args.size, args.onnx, Path(tmp)), x, args.runs)
            best = min(ms, key=ms.get)
            bound = flops / (limit * 1e9)
            row = {"arch": arch, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                   "GFLOPs": round(flops / 1e9, 1), **{f"{k}_ms": round(v * 1e3, 1) for k, v in ms.items()},
                   "best": best, "achieved_GFLOP/s": round(flops / ms[best] / 1e9, 1),
                   "roof_bound_ms": round(bound * 1e3, 1), "x_bound": round(ms[best] / bound, 2)}
            if args.train_memory:
                row[f"train_peak_GiB_b{args.train_batch}"] = round(
                    train_step_memory(arch, args.size, args.train_batch), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
