"""Decode time against the network's forward time on the CPU, both in one run: ``ctdet`` (80 classes) and
``multi_pose`` (peaks, top-K people, joint regression, joint heatmap snapping over 17 x K x K candidates).

Builds ``--arch`` (default resdcn_18) with the task's heads, runs the forward at ``--size`` (512) at each
``--batches``, then activation + decode of its outputs (and the flip merge + decode) as the evaluator and the
predictor run them (``decode_batch``), and the same decode of the whole batch in one piece (``task.decode``)
beside it; medians over ``--runs`` after a warm-up.

    PYTHONPATH=src python benchmarks/bench_decode.py --tasks ctdet multi_pose --batches 1 8 --runs 5
"""
from __future__ import annotations

import argparse

import torch

from centernet.engine.inference import decode_batch
from centernet.models import build_model
from centernet.tasks import build_task
from timing import add_decode_args, median_ms, parse_decode_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resdcn_18")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tasks", nargs="+", default=["ctdet", "multi_pose"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    add_decode_args(parser)
    args = parse_decode_args(parser)
    print(f"{args.arch}, {args.size}x{args.size}, K={args.K}, {torch.get_num_threads()} threads, medians of "
          f"{args.runs}")
    print(f"{'task':>10s} {'B':>2s} | {'forward ms':>10s} | {'decode ms':>9s} {'share':>6s} | {'one piece ms':>12s} | "
          f"{'flip + decode ms':>16s}")
    for name in args.tasks:
        torch.manual_seed(0)
        task = build_task(name, 80 if name == "ctdet" else 1, max_detections=args.K)
        model = build_model(args.arch, task.heads()).eval()
        for batch in args.batches:
            image = torch.randn(batch, 3, args.size, args.size)
            with torch.no_grad():
                outputs = model(image)[-1]
                flip_outputs = model(torch.cat([image, image.flip(3)]))[-1]
                forward = median_ms(lambda: model(image), args.runs)
                decode = median_ms(lambda: decode_batch(task, task.activate(outputs)), args.runs)
                whole = median_ms(lambda: task.decode(task.activate(outputs)), args.runs)
                flip = median_ms(lambda: decode_batch(task, task.merge_flip(task.activate(flip_outputs))), args.runs)
            print(f"{name:>10s} {batch:>2d} | {forward:10.1f} | {decode:9.1f} {decode / forward:6.1%} | "
                  f"{whole:12.1f} | {flip:16.1f}", flush=True)


if __name__ == "__main__":
    main()
