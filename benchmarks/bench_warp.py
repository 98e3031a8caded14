"""The training input warp: OpenCV's warpAffine against the exact PyTorch warp that replaces it on OpenCV 4.

    python benchmarks/bench_warp.py [--runs 30] [--size 512]

Times one real COCO image (../shared/data/coco_mini) warped into size x size, interleaved, medians in ms, and the
largest difference of each from the float64 definition (grey levels).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from centernet.data.transforms import warp_affine_exact
from centernet.ops.transforms import get_affine_transform

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini" / "train2017"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a data-loading worker
    image = cv2.imread(str(sorted(IMAGES.glob("*.jpg"))[0]))
    h, w = image.shape[:2]
    trans = get_affine_transform(np.array([w / 2 + 13.3, h / 2 - 7.1], np.float32), max(h, w) * 1.13, 0,
                                 (args.size, args.size))
    warps = {"opencv": lambda: cv2.warpAffine(image, trans, (args.size, args.size), flags=cv2.INTER_LINEAR),
             "exact (torch)": lambda: warp_affine_exact(image, trans, (args.size, args.size))}
    times: dict[str, list[float]] = {k: [] for k in warps}
    for _ in range(args.runs):
        for name, warp in warps.items():
            start = time.perf_counter()
            warp()
            times[name].append((time.perf_counter() - start) * 1e3)
    exact = warps["exact (torch)"]().astype(int)
    print(f"OpenCV {cv2.__version__}, image {w}x{h} -> {args.size}x{args.size}, {args.runs} interleaved runs")
    for name, ts in times.items():
        print(f"  {name:14s} median {statistics.median(ts):6.2f} ms")
    print(f"  largest |opencv - exact|: {np.abs(warps['opencv']().astype(int) - exact).max()} grey levels")


if __name__ == "__main__":
    main()
