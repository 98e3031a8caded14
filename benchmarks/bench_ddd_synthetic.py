"""The ddd figures on synthetic 3D boxes: what the encoding loses (oracle, box vs projected centre) and what a
small model learns from scratch on the CPU (``ddd_cpu_small``): KITTI AP, COCO AP50 and the depth error.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_ddd_synthetic.py --out /tmp/ddd_demo

Generates ``--train`` / ``--val`` frames (320x96, depths 5-30 m), scores the ground truth through the oracle
path with both keypoint choices, trains for ``--epochs`` and scores the untrained and the trained model on
the validation frames. The depth error is the median |z - z_label| over labelled objects matched by a
detection (same class, 2D IoU >= 0.5, score >= 0.3). Prints the load average: the machine may be shared.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from centernet.app.builders import eval_settings, model_from_config, open_source, set_classes, task_from_config
from centernet.data.synthetic_kitti import make_synthetic_kitti
from centernet.engine.evaluator import evaluate
from centernet.engine.trainer import Trainer
from centernet.presets import get_preset

SHOWN = ("kitti_bbox_moderate", "kitti_aos_moderate", "kitti_bev_moderate", "kitti_3d_moderate", "AP50")
MATCH_IOU, MATCH_SCORE = 0.5, 0.3


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` [4] (x1 y1 x2 y2) with boxes ``b`` [N, 4]."""
    w = (np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])).clip(0)
    h = (np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])).clip(0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - w * h
    return w * h / np.maximum(union, 1e-9)


def depth_error(results: list[dict], source) -> tuple[float, int, int]:
    """(median |dz| metres, matched objects, labelled objects): each labelled object against its best-IoU
    detection of the same class."""
    errors, total = [], 0
    for s in source.samples:
        dets = [r for r in results if r["image_id"] == s.image_id and r["score"] >= MATCH_SCORE]
        for k in np.flatnonzero(~s.ignore):
            total += 1
            same = [r for r in dets if r["category_id"] == s.labels[k] + 1]
            if not same:
                continue
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in same)])
            overlaps = iou(s.boxes[k], boxes)
            if overlaps.max() >= MATCH_IOU:
                errors.append(abs(same[int(overlaps.argmax())]["location"][2] - s.extra["loc"][k, 2]))
    return (float(np.median(errors)) if errors else float("nan")), len(errors), total


def line(name: str, result, source) -> str:
    dz, matched, total = depth_error(result.results, source)
    shown = "  ".join(f"{k.removeprefix('kitti_')} {100 * result.metrics[k]:5.1f}" for k in SHOWN)
    return f"{name:<22s} {shown}  |dz| {dz:5.2f} m ({matched}/{total} matched)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_ddd_synthetic")
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--val", type=int, default=64)
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    args = parser.parse_args()
    out = Path(args.out)
    paths = make_synthetic_kitti(out / "data", num_train=args.train, num_val=args.val, size=(320, 96), seed=0,
                                 depth_range=(5.0, 30.0))
    train = open_source(str(paths["train_split"]), task="ddd")
    val = open_source(str(paths["val_split"]), task="ddd")
    cfg = get_preset("ddd_cpu_small")
    cfg.train.out_dir, cfg.train.device, cfg.data.num_workers = str(out / "run"), "cpu", 0
    cfg.train.epochs = args.epochs or cfg.train.epochs
    cfg.train.val_interval = 0
    set_classes(cfg, train)
    settings = eval_settings(cfg)
    print(f"{args.train} train / {args.val} val frames, {sum((~s.ignore).sum() for s in val.samples)} val objects; "
          f"figures in percent (KITTI 11-point AP at moderate, mean over classes; COCO AP50)")
    for center in ("box", "projected"):
        cfg.task.options = {"center": center}
        print(line(f"oracle ({center})", evaluate(None, task_from_config(cfg), val, settings, progress=False), val))
    cfg.task.options = {}
    task = task_from_config(cfg)
    torch.manual_seed(cfg.train.seed)
    model = model_from_config(cfg, task)
    print(line("untrained", evaluate(model, task, val, settings, progress=False), val))
    start, load = time.perf_counter(), os.getloadavg()
    Trainer(cfg, model, task, train, None, progress=False).fit()
    seconds = time.perf_counter() - start
    trained = evaluate(model, task, val, settings, progress=False)
    print(line(f"trained {cfg.train.epochs} epochs", trained, val))
    print(f"training {seconds:.0f} s, {torch.get_num_threads()} threads, load average before / after "
          f"{load[0]:.1f} / {os.getloadavg()[0]:.1f}")
    print(trained.scorer.report().split("\n\n")[0])


if __name__ == "__main__":
    main()
