"""ONNX Runtime vs PyTorch eager on the CPU: median latency of one forward (activated maps) at batch 1.

For each architecture: export to ONNX (opset 17, fixed size), check the outputs agree, then time both
backends in the same process with the same thread count, alternating so that a noisy neighbour hurts both.
The ops column counts the deformable sampling ops of the graph (Gather for the DCNs; GridSample would be the
old exporter).

    PYTHONPATH=src python benchmarks/bench_onnx.py --archs resdcn_18 dla_34 --size 512 --runs 15
"""
from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

import onnx
import torch

from centernet.config import ExperimentConfig
from centernet.app.builders import model_from_config, task_from_config
from centernet.export.onnx import OnnxRunner, export_onnx
from centernet.models import ARCHS
from timing import median_seconds


def median_ms(fn, x: torch.Tensor, runs: int, warmup: int = 2) -> tuple[float, float]:
    median, best = median_seconds(lambda: fn(x), runs, warmup)
    return 1000 * median, 1000 * best


def bench(arch: str, size: int, runs: int, threads: int, workdir: Path) -> dict[str, float]:
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size = arch, (size, size)
    task = task_from_config(cfg)  # COCO: 80 classes
    model = model_from_config(cfg, task).eval()
    start = time.perf_counter()
    path = export_onnx(model, task, cfg, workdir / f"{arch}.onnx", opset=17)
    export_s = time.perf_counter() - start
    runner = OnnxRunner(path, threads=threads)
    x = torch.randn(1, 3, size, size)

    @torch.no_grad()
    def eager(images):
        return task.activate(model(images)[-1])

    ref, out = eager(x), runner(x)
    max_diff = max(float((ref[k] - out[k]).abs().max()) for k in ref)
    # alternate short rounds of the two backends
    eager_times, ort_times = [], []
    for _ in range(max(runs // 5, 1)):
        eager_times.append(median_ms(eager, x, 5, warmup=1))
        ort_times.append(median_ms(runner, x, 5, warmup=1))
    eager_ms = statistics.median(t[0] for t in eager_times)
    ort_ms = statistics.median(t[0] for t in ort_times)
    ops = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    return {"arch": arch, "export_s": export_s, "eager_ms": eager_ms, "ort_ms": ort_ms,
            "ops": f"{ops['Gather']} Gather, {ops['GridSample']} GridSample",
            "eager_best_ms": min(t[1] for t in eager_times), "ort_best_ms": min(t[1] for t in ort_times),
            "max_abs_diff": max_diff, "mb": path.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resdcn_18", "dla_34"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=15, help="timed forwards per backend (in rounds of 5)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, input {args.size}x{args.size}, batch 1, "
          f"{args.runs} runs per backend, median (best)")
    print(f"{'arch':12s} {'eager ms':>16s} {'onnxruntime ms':>18s} {'speed-up':>9s} {'max |diff|':>11s} "
          f"{'export s':>9s} {'MB':>6s}  ops")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            if arch not in ARCHS:
                print(f"{arch:12s} not registered; skipped")
                continue
            r = bench(arch, args.size, args.runs, args.threads, Path(tmp))
            print(f"{arch:12s} {r['eager_ms']:8.1f} ({r['eager_best_ms']:6.1f}) {r['ort_ms']:10.1f} "
                  f"({r['ort_best_ms']:6.1f}) {r['eager_ms'] / r['ort_ms']:8.2f}x {r['max_abs_diff']:11.2e} "
                  f"{r['export_s']:9.1f} {r['mb']:6.1f}  {r['ops']}", flush=True)


if __name__ == "__main__":
    main()
