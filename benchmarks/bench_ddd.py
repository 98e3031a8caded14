"""ddd (monocular 3D) decode + post-processing time against the network's forward time, on the CPU, in one run.

Builds ``--arch`` (default dla_34, the paper's) with the ddd heads, runs the forward at ``--size`` W,H
(default 1280,384, KITTI's input) with batch 1, then on its outputs: activation + decode (peaks, top-K,
gathers, rotation bins) and the post-processing (to image pixels, unprojection with P2 and rotation_y).
Medians over ``--runs`` after a warm-up.

    PYTHONPATH=src python benchmarks/bench_ddd.py --runs 5
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from centernet.data.synthetic_kitti import kitti_like_p2
from centernet.models import build_model
from centernet.ops.transforms import get_affine_transform, to_image_coords
from centernet.tasks import DddTask
from timing import add_decode_args, median_ms, parse_decode_args

KITTI_IMAGE = (1242, 375)  # (w, h) of a KITTI frame: the post-processing maps rows back to it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="dla_34")
    parser.add_argument("--size", default="1280,384", help="input W,H")
    add_decode_args(parser)
    args = parse_decode_args(parser)
    w, h = (int(v) for v in args.size.split(","))
    torch.manual_seed(0)
    task = DddTask(max_detections=args.K)
    model = build_model(args.arch, task.heads()).eval()
    image = torch.randn(1, 3, h, w)
    center = np.array([KITTI_IMAGE[0] / 2, KITTI_IMAGE[1] / 2], np.float32)
    trans_inv = torch.from_numpy(get_affine_transform(center, float(max(KITTI_IMAGE)), 0, (w // 4, h // 4),
                                                      inv=True)).float()[None]
    meta = {"calib": torch.from_numpy(kitti_like_p2(*KITTI_IMAGE)).float()[None], "trans_inv": trans_inv}
    with torch.no_grad():
        outputs = model(image)[-1]
        forward = median_ms(lambda: model(image), args.runs)
        decode = median_ms(lambda: task.decode(task.activate(outputs)), args.runs)
        rows = task.decode(task.activate(outputs))
        post = median_ms(lambda: task.postprocess(to_image_coords(rows, trans_inv, task.point_columns), meta),
                         args.runs)
        final = task.postprocess(to_image_coords(rows, trans_inv, task.point_columns), meta)
    print(f"{args.arch} + ddd heads, {w}x{h}, batch 1, K={args.K}, {torch.get_num_threads()} threads, "
          f"medians of {args.runs}")
    print(f"  forward                 {forward:9.1f} ms")
    print(f"  activate + decode       {decode:9.2f} ms  ({decode / forward:.2%} of the forward)")
    print(f"  post-process (3D lift)  {post:9.2f} ms  ({post / forward:.2%} of the forward)")
    print(f"  output rows             {tuple(final.shape)}")


if __name__ == "__main__":
    main()
