"""Cost of the trainer's step guard (batch-norm snapshot + finiteness of the loss and the gradient norm)
next to the training step it guards, measured side by side in one run.

    PYTHONPATH=src python benchmarks/bench_step_guard.py --arch resdcn_18 --size 256 --batch 4 --runs 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_seconds  # noqa: E402

from centernet import build_model  # noqa: E402
from centernet.tasks import CtdetTask  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resdcn_18")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    task = CtdetTask(num_classes=80)
    model = build_model(args.arch, task.heads()).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    buffers = list(model.buffers())
    shadow = [b.detach().clone() for b in buffers]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        maps = model(images)
        loss = sum(m.float().square().mean() for out in maps for m in out.values())
        loss.backward()
        optimizer.step()
        sync()

    @torch.no_grad()
    def guard() -> None:
        for src, dst in zip(buffers, shadow):
            dst.copy_(src)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        finite = torch.isfinite(loss_value) & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        bool(finite)

    loss_value = torch.tensor(1.0, device=device)
    step_s, _ = median_seconds(step, args.runs)
    guard_s, _ = median_seconds(guard, args.runs * 4)
    print(f"{args.arch} {args.size}x{args.size} batch {args.batch} on {device}: step {step_s * 1e3:.1f} ms, "
          f"guard {guard_s * 1e3:.2f} ms ({100 * guard_s / step_s:.2f}% of a step; medians)")


if __name__ == "__main__":
    main()
