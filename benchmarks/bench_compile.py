"""torch.compile (inductor) against eager inference on the CPU: whole models at batch 1, both in the layout
inference uses (channels-last for the measured families, see centernet.models.prefers_channels_last).

For each architecture: the compile time (the first call), then ``--rounds`` alternating rounds of ``--runs``
calls of each, medians of the round medians, and the largest difference between their maps (the compiled
graph may reorder float sums). Random weights, COCO heads (80 classes).

    python benchmarks/bench_compile.py --archs res_18 resdcn_18 dla_34 --size 512 --rounds 3 --runs 3
    python benchmarks/bench_compile.py --freezing ...
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from centernet import build_model
from centernet.models import prefers_channels_last
from centernet.tasks import CtdetTask
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["res_18", "resdcn_18", "dla_34"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: inductor's default)")
    parser.add_argument("--freezing", action="store_true",
                        help="inductor's freezing: weights as constants (batch norm folded, convolution weights "
                             "prepacked for oneDNN)")
    args = parser.parse_args()
    if args.freezing:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {args.size}x{args.size}, batch 1")
    heads = CtdetTask(num_classes=80).heads()
    for arch in args.archs:
        torch.manual_seed(0)
        model = build_model(arch, heads).eval()
        x = torch.randn(1, 3, args.size, args.size)
        if prefers_channels_last(arch):
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        compiled = torch.compile(model, mode=args.mode)
        with torch.no_grad():
            start = time.perf_counter()
            fast = compiled(x)[-1]
            compile_s = time.perf_counter() - start
            plain = model(x)[-1]
            diff = max(float((fast[k] - plain[k]).abs().max()) for k in plain)
            rounds: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(args.rounds):
                for name, fn in (("eager", model), ("compiled", compiled)):
                    rounds[name].append(median_seconds(lambda: fn(x), args.runs)[0])
        eager, comp = (statistics.median(rounds[k]) * 1e3 for k in ("eager", "compiled"))
        print(f"{arch:<12} compile {compile_s:6.1f} s  eager {eager:8.1f} ms  compiled {comp:8.1f} ms  "
              f"({eager / comp:.2f}x)  max map difference {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
