"""The pure-PyTorch DCNv2 against a plain conv of the same shape, forward and forward + backward.

Shapes are those of the resdcn_18 neck at a 512x512 input. ``--compile`` adds the same layer under
torch.compile (where it works) as a third column. Medians over --runs, all in one run.

    python benchmarks/bench_deform_conv.py --runs 5 --compile
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from centernet.models.layers.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d
from timing import median_seconds

# (in, out, H, W) of the three DCNs of the resdcn_18 neck at 512x512
SHAPES = [(512, 256, 16, 16), (256, 128, 32, 32), (128, 64, 64, 64)]
# (channels, size, batch) for the two sampling kernels, narrow (dla_tiny's) to wide
SAMPLER_SHAPES = [(8, 64, 16), (16, 32, 16), (32, 32, 16), (64, 32, 4), (64, 64, 1), (128, 32, 1), (512, 16, 1)]


def timed(fn, runs: int) -> float:
    return median_seconds(fn, runs)[0]


def measure(layer: nn.Module, x: torch.Tensor, runs: int) -> tuple[float, float]:
    with torch.no_grad():
        fwd = timed(lambda: layer(x), runs)

    def step() -> None:
        xx = x.detach().requires_grad_()
        layer(xx).sum().backward()

    return fwd, timed(step, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}, batch {args.batch}; times in ms (median of {args.runs})")
    header = "shape                 conv fwd  dcn fwd  ratio | conv f+b  dcn f+b  ratio"
    print(header + ("  | compiled dcn fwd  f+b" if args.compile else ""))
    for cin, cout, h, w in SHAPES:
        x = torch.randn(args.batch, cin, h, w)
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        dcn = ModulatedDeformConv2d(cin, cout, 3, padding=1)
        nn.init.normal_(dcn.conv_offset_mask.weight, std=0.01)  # non-trivial offsets
        cf, cb = measure(conv, x, args.runs)
        df, db = measure(dcn, x, args.runs)
        line = (f"{cin}->{cout} @ {h}x{w}".ljust(21) + f" {cf * 1e3:8.1f} {df * 1e3:8.1f} {df / cf:6.2f} |"
                f" {cb * 1e3:8.1f} {db * 1e3:8.1f} {db / cb:6.2f}")
        if args.compile:
            compiled = torch.compile(dcn)
            kf, kb = measure(compiled, x, args.runs)
            line += f"  | {kf * 1e3:8.1f} ({kf / cf:4.2f}x) {kb * 1e3:8.1f} ({kb / cb:4.2f}x)"
        print(line, flush=True)
    print("\nsampling kernels (C -> C, 3x3): ms forward / forward + backward")
    for c, size, batch in SAMPLER_SHAPES:
        x, w = torch.randn(batch, c, size, size), torch.randn(c, c, 3, 3)
        off, mask = torch.randn(batch, 18, size, size) * 0.5, torch.rand(batch, 9, size, size)
        cells = []
        for sampler in ("bags", "grid"):
            def step(s=sampler) -> None:
                leaves = [t.clone().requires_grad_() for t in (x, off, w)]
                modulated_deform_conv2d(leaves[0], leaves[1], mask, leaves[2], None, 1, 1, sampler=s).sum().backward()
            with torch.no_grad():
                fwd = timed(lambda s=sampler: modulated_deform_conv2d(x, off, mask, w, None, 1, 1, sampler=s), args.runs)
            cells.append(f"{sampler} {fwd * 1e3:7.1f} / {timed(step, args.runs) * 1e3:7.1f}")
        print(f"C={c:<4d} {size}x{size} batch {batch:<3d}  " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
