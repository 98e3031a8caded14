"""The pure-PyTorch DCNv2 layer against a plain 3x3 conv of the same shape, forward and forward + backward.

Shapes are every distinct DCN of the resdcn_18 neck and of dla_34's up-sampling at a 512x512 input; each runs
at batch 1 and 8 (``--demo``: dla_tiny's layers at 128x128, batch 16). Within a shape the candidates are timed
in interleaved rounds (conv, DCN, ..., conv, DCN, ...) so that a noisy neighbour slows them alike; the table gives medians and the DCN / conv ratios.
``--old FILE`` adds another implementation of the layer (a ``deform_conv.py`` defining
``ModulatedDeformConv2d``, e.g. the previous kernel: ``git show <rev>:src/centernet/models/layers/deform_conv.py
> /tmp/old_dcn.py``), loaded with the same weights. Forward passes run under ``torch.no_grad``; forward +
backward differentiates input and parameters.

    PYTHONPATH=src python benchmarks/bench_deform_conv.py --runs 7 --old /tmp/old_dcn.py
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from centernet.models.layers.deform_conv import ModulatedDeformConv2d
from timing import median_seconds

# (in, out, H=W, where) of the DCNs at a 512x512 input; "x5" = how many layers of dla_34 have that shape
SHAPES = [
    (512, 256, 16, "resdcn_18, dla_34"), (256, 128, 32, "resdcn_18, dla_34 x2"), (128, 64, 64, "resdcn_18, dla_34 x4"),
    (256, 256, 32, "dla_34"), (128, 128, 64, "dla_34 x2"), (64, 64, 128, "dla_34 x5"), (256, 64, 32, "dla_34"),
]
# the demo's dla_tiny at 128x128 (batch 16): narrow layers where per-sample work, not the matmul, dominates
DEMO_SHAPES = [(16, 16, 32, "dla_tiny x5"), (32, 16, 16, "dla_tiny x4"), (32, 32, 16, "dla_tiny x2")]


def load_layer_class(path: str) -> type[nn.Module]:
    spec = importlib.util.spec_from_file_location("old_deform_conv", Path(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModulatedDeformConv2d


def forward_step(layer: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def step() -> None:
        with torch.no_grad():
            layer(x)
    return step


def train_step(layer: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def step() -> None:
        xx = x.detach().requires_grad_()
        layer(xx).sum().backward()
        layer.zero_grad(set_to_none=True)
    return step


def interleaved_ms(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median milliseconds of each function over ``runs`` rounds, one call of each per round."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(median_seconds(fn, 1, warmup=0)[0] * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old", help="a deform_conv.py to compare with (same ModulatedDeformConv2d API)")
    parser.add_argument("--shapes", type=int, nargs="+", help="indices into SHAPES (default: all)")
    parser.add_argument("--demo", action="store_true", help="the demo's dla_tiny shapes at batch 16 instead")
    args = parser.parse_args()
    shapes = DEMO_SHAPES if args.demo else SHAPES
    batches = [16] if args.demo else args.batches
    torch.set_num_threads(args.threads)
    old_class = load_layer_class(args.old) if args.old else None
    print(f"torch {torch.__version__}, {args.threads} threads; median ms of {args.runs} interleaved rounds; "
          "ratio = DCN / conv")
    names = ["dcn"] + (["old"] if old_class else [])
    print(f"{'shape':>16s} {'B':>2s} |" + "".join(
        f" {'conv':>7s} " + " ".join(f"{n:>7s} {'ratio':>5s}" for n in names) + " |" for _ in ("fwd", "f+b")))
    for i, (cin, cout, size, where) in enumerate(shapes):
        if args.shapes and i not in args.shapes:
            continue
        for batch in batches:
            torch.manual_seed(0)
            x = torch.randn(batch, cin, size, size)
            layers = {"conv": nn.Conv2d(cin, cout, 3, padding=1), "dcn": ModulatedDeformConv2d(cin, cout, 3, padding=1)}
            nn.init.normal_(layers["dcn"].conv_offset_mask.weight, std=0.01)  # non-trivial offsets and masks
            if old_class:
                layers["old"] = old_class(cin, cout, 3, padding=1)
                layers["old"].load_state_dict(layers["dcn"].state_dict())
            line = f"{cin:>4d}->{cout:<4d}@{size:<4d} {batch:>2d} |"
            for make in (forward_step, train_step):
                ms = interleaved_ms({k: make(layer, x) for k, layer in layers.items()}, args.runs)
                cells = " ".join(f"{ms[n]:7.1f} {ms[n] / ms['conv']:5.2f}" for n in names)
                line += f" {ms['conv']:7.1f} {cells} |"
            print(line + f" {where}", flush=True)


if __name__ == "__main__":
    main()
