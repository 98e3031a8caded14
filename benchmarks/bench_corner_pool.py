"""Corner pooling (cummax, scan and the ONNX "doubling" formulation) against a 3x3 conv of the same shape.

The map is CornerNet's at a 511x511 input: [1, 256, 128, 128]. Each pool direction is timed with every
formulation, then the whole corner branch (CornerPoolModule(256)) with "auto" (what training uses), cummax
and doubling; forward and forward + backward, medians over --runs, all in one run, ratios against the conv.

    python benchmarks/bench_corner_pool.py --runs 7
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from centernet.models.layers.corner_pool import CornerPoolModule, corner_pool
from timing import median_seconds

DIRECTIONS = ("top", "bottom", "left", "right")


def measure(fn, x: torch.Tensor, runs: int) -> tuple[float, float]:
    """(forward, forward + backward) median seconds of ``fn(x)``."""
    with torch.no_grad():
        fwd = median_seconds(lambda: fn(x), runs)[0]

    def step() -> None:
        leaf = x.detach().requires_grad_()
        fn(leaf).sum().backward()

    return fwd, median_seconds(step, runs)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=128, help="map side (a 511 input gives 128)")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, args.channels, args.size, args.size)
    conv = nn.Conv2d(args.channels, args.channels, 3, padding=1)
    base_f, base_b = measure(conv, x, args.runs)
    print(f"threads {torch.get_num_threads()}, map {list(x.shape)}; ms, median of {args.runs}; ratio = / conv")
    print(f"{'layer':28s} {'fwd':>8s} {'ratio':>6s} | {'fwd+bwd':>8s} {'ratio':>6s}")
    print(f"{'conv3x3 C->C':28s} {base_f * 1e3:8.2f} {1:6.2f} | {base_b * 1e3:8.2f} {1:6.2f}")
    for method in ("cummax", "scan", "doubling"):
        for direction in DIRECTIONS:
            f, b = measure(lambda t, d=direction, m=method: corner_pool(t, d, m), x, args.runs)
            print(f"{method + ' ' + direction:28s} {f * 1e3:8.2f} {f / base_f:6.2f} | {b * 1e3:8.2f} {b / base_b:6.2f}",
                  flush=True)
    for method in ("auto", "cummax", "doubling"):
        branch = CornerPoolModule(args.channels, method=method).eval()
        f, b = measure(branch, x, args.runs)
        print(f"{'branch (' + method + ')':28s} {f * 1e3:8.2f} {f / base_f:6.2f} | {b * 1e3:8.2f} {b / base_b:6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
