"""multi_pose decode time against the network's forward time, on the CPU, both in one run.

Builds ``--arch`` (default resdcn_18) with the pose heads, runs the forward at ``--size`` (512) with batch 1,
then activation + decode (peaks, top-K people, joint regression, joint heatmap snapping over 17 x K x K
candidates) on its outputs; optionally the flip merge too. Medians over ``--runs`` after a warm-up.

    PYTHONPATH=src python benchmarks/bench_pose_decode.py --runs 5
"""
from __future__ import annotations

import argparse

import torch

from centernet.models import build_model
from centernet.tasks import MultiPoseTask
from timing import median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resdcn_18")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--K", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    task = MultiPoseTask(max_detections=args.K)
    model = build_model(args.arch, task.heads()).eval()
    image = torch.randn(1, 3, args.size, args.size)
    pair = torch.cat([image, image.flip(3)])
    with torch.no_grad():
        outputs = model(image)[-1]
        flip_outputs = model(pair)[-1]
        forward = median_ms(lambda: model(image), args.runs)
        decode = median_ms(lambda: task.decode(task.activate(outputs)), args.runs)
        flip_decode = median_ms(lambda: task.decode(task.merge_flip(task.activate(flip_outputs))), args.runs)
    rows = task.decode(task.activate(outputs))
    print(f"{args.arch} + pose heads, {args.size}x{args.size}, batch 1, K={args.K}, "
          f"{torch.get_num_threads()} threads, medians of {args.runs}")
    print(f"  forward                 {forward:9.1f} ms")
    print(f"  activate + decode       {decode:9.1f} ms  ({decode / forward:.1%} of the forward)")
    print(f"  flip merge + decode     {flip_decode:9.1f} ms")
    print(f"  output rows             {tuple(rows.shape)}")


if __name__ == "__main__":
    main()
