"""KITTI evaluation time (pure NumPy, CPU) on synthetic labels the size of the 3DOP val split (3,769 frames).

Labels and noisy detections come from tests/helpers/kitti_synthetic.py (``--seed``); timed are the
in-memory evaluation (evaluate_kitti_labels: 3 classes x {2D, BEV, 3D} x 3 difficulties, AOS included)
and the same from label folders (evaluate_kitti, parsing included). Medians over ``--runs`` after a warm-up.

    PYTHONPATH=src python benchmarks/bench_kitti_eval.py --runs 3
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from centernet.evaluation.kitti import evaluate_kitti, evaluate_kitti_labels, format_kitti_table
from centernet.data.kitti_labels import write_kitti_labels
from timing import median_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.kitti_synthetic import synthetic_kitti_labels  # noqa: E402  (the generator lives with the tests)

VAL_FRAMES = 3769  # the 3DOP val split of KITTI's training set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=VAL_FRAMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    gt, dets = synthetic_kitti_labels(args.frames, seed=args.seed)
    num_gt, num_det = sum(map(len, gt.values())), sum(map(len, dets.values()))
    print(f"{args.frames} frames, {num_gt} labelled objects (DontCare included), {num_det} detections")
    median, best = median_seconds(lambda: evaluate_kitti_labels(gt, dets), args.runs)
    print(f"evaluate_kitti_labels (in memory): median {median:.2f} s, best {best:.2f} s over {args.runs} runs")
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, det_dir = Path(tmp, "label_2"), Path(tmp, "data")
        gt_dir.mkdir(), det_dir.mkdir()
        for frame in gt:
            write_kitti_labels(gt_dir / f"{frame:06d}.txt", gt[frame])
            write_kitti_labels(det_dir / f"{frame:06d}.txt", dets[frame])
        median, best = median_seconds(lambda: evaluate_kitti(gt_dir, det_dir), args.runs)
        print(f"evaluate_kitti (label folders):    median {median:.2f} s, best {best:.2f} s over {args.runs} runs")
    print(format_kitti_table(evaluate_kitti_labels(gt, dets)))


if __name__ == "__main__":
    main()
