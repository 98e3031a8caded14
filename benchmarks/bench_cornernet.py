"""CornerNet against CenterNet-Hourglass on the CPU: forward and decode times at batch 1, side by side.

Both networks are Hourglass-104 with 2 stacks (eval mode: the last stack's heads only); CornerNet adds its
two corner-pooling branches and six heads, CenterNet has hm / wh / reg. Inputs are CornerNet's 511x511 and
CenterNet's 512x512 (both give 128x128 maps), 80 classes, untrained weights (timings do not depend on the
values, except CornerNet's soft-NMS). Decode times start from the activated maps: CenterNet's peak + top-100
decode; CornerNet's pair decode (top-100 corners, 1000 pairs, what an ONNX graph runs), then its per-class
soft-NMS to 100 detections ("merge"). An untrained CornerNet pairs few corners (most pairs differ in class),
so its merge is also timed on 1000 valid pairs of random boxes in 10 classes, a trained model's worst case.
Medians over --runs, in one process, with --threads threads.

    python benchmarks/bench_cornernet.py --runs 3 --threads 2
"""
from __future__ import annotations

import argparse

import torch

from centernet import build_model
from centernet.tasks import build_task
from centernet.tasks.cornernet_decode import NUM_DETS
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classes", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, arch, side in (("CenterNet-HG", "hourglass", 512), ("CornerNet", "cornernet", 511)):
        task = build_task("ctdet" if arch == "hourglass" else "cornernet", args.classes)
        model = build_model(arch, task.heads()).eval()
        x = torch.randn(1, 3, side, side)
        with torch.no_grad():
            forward = median_seconds(lambda: model(x), args.runs)[0]
            maps = task.activate(model(x)[-1])
            decode = median_seconds(lambda: task.decode(maps), args.runs)[0]
            rows_out = task.decode(maps)
            post = median_seconds(lambda: task.merge([rows_out]), args.runs)[0]
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows.append((name, side, params, forward, decode, post))
        print(f"{name}: done", flush=True)
        del model
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(1, NUM_DETS, 2, generator=g) * 400
    wh = torch.rand(1, NUM_DETS, 2, generator=g) * 100 + 4
    valid = torch.cat([xy, xy + wh, torch.rand(1, NUM_DETS, 1, generator=g),
                       torch.randint(0, 10, (1, NUM_DETS, 1), generator=g).float()], dim=2)  # [1, 1000, 6]
    worst = median_seconds(lambda: task.merge([valid]), args.runs)[0]
    base = rows[0]
    print(f"\nthreads {args.threads}, batch 1, median of {args.runs} runs; ratio = / CenterNet-HG")
    print(f"{'model':14s} {'input':>5s} {'params':>8s} {'forward s':>10s} {'ratio':>6s} {'decode ms':>10s} "
          f"{'merge ms':>9s} {'ratio':>6s}")
    for name, side, params, forward, decode, post in rows:
        total, base_total = decode + post, base[4] + base[5]
        print(f"{name:14s} {side:5d} {params:7.2f}M {forward:10.2f} {forward / base[3]:6.2f} {decode * 1e3:10.1f} "
              f"{post * 1e3:9.1f} {total / base_total:6.2f}")
    print(f"CornerNet merge of {NUM_DETS} valid pairs in 10 classes: {worst * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
