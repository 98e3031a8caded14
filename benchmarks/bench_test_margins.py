"""Margins of the learning tests over seeds: what the overfit tests in tests/test_pose_real.py and
tests/test_ddd_train.py measure, for several seeds, so that their thresholds hold with any library build.

    python benchmarks/bench_test_margins.py --seeds 0 1 2 3 4 [--json out.json]

Run it once per environment to compare (e.g. with OpenCV 4 and 5 installed); it prints one line per seed and
the range of each figure. Needs ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_ddd_train import kitti_mini_overfit  # noqa: E402
from test_pose_real import keypoint_overfit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for seed in args.seeds:
        pose = keypoint_overfit(seed)
        with tempfile.TemporaryDirectory() as tmp:
            before, after, best = kitti_mini_overfit(ROOT.parent / "shared" / "data" / "kitti_mini", Path(tmp), seed)
        row = {"seed": seed, "pose_loss_ratio": pose["first"] / pose["last"],
               "pose_ap_rise": pose["after"] - pose["before"],
               **{f"kitti_{m}_after/ceiling": after[f"kitti_{m}_moderate"] / best[f"kitti_{m}_moderate"]
                  for m in ("bbox", "aos")},
               **{f"kitti_{m}_before/ceiling": before[f"kitti_{m}_moderate"] / best[f"kitti_{m}_moderate"]
                  for m in ("bbox", "aos")},
               "kitti_AP50_rise": after["AP50"] - before["AP50"]}
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    print(f"OpenCV {cv2.__version__}, torch {torch.__version__}, seeds {args.seeds}")
    for key in rows[0]:
        if key != "seed":
            values = [r[key] for r in rows]
            print(f"  {key}: min {min(values):.3f} max {max(values):.3f}")
    if args.json:
        args.json.write_text(json.dumps({"opencv": cv2.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
