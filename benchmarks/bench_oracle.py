"""Oracle scores: the ground truth through the real target -> decode -> image-coordinates path, on the
real data in ../shared/data (boxes on coco_mini val and raccoon VOC, keypoints on coco_mini val, CornerNet's
corners on coco_mini val, 3D boxes on kitti_mini).

    python benchmarks/bench_oracle.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from centernet.app.builders import open_source
from centernet.engine.evaluator import EvalSettings, evaluate
from centernet.tasks import build_task

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    runs = [
        ("ctdet, coco_mini val", "ctdet", args.data / "coco_mini/annotations/instances_val2017.json", (512, 512)),
        ("ctdet, raccoon VOC", "ctdet", args.data / "raccoon_voc", (384, 384)),
        ("multi_pose, coco_mini val", "multi_pose", args.data / "coco_mini/annotations/person_keypoints_val2017.json",
         (512, 512)),
        ("cornernet, coco_mini val", "cornernet", args.data / "coco_mini/annotations/instances_val2017.json",
         (511, 511)),
        ("ddd, kitti_mini", "ddd", args.data / "kitti_mini", (1280, 384)),
    ]
    for label, task_name, spec, size in runs:
        source = open_source(str(spec), task=task_name)
        task = build_task(task_name, len(source.class_names))
        metrics = evaluate(None, task, source, EvalSettings(input_size=size), progress=False).metrics
        shown = {k: round(v, 4) for k, v in metrics.items() if k in ("AP", "AP50", "AP75", "voc_AP50", "bbox_AP",
                                                                            "kitti_bbox_moderate", "kitti_3d_moderate")}
        print(f"{label:28s} {shown}", flush=True)
    print("(kitti_*: the devkit's interpolated AP samples precision at recall thresholds placed per true positive; "
          "with kitti_mini's one object per class and difficulty only the first of the 11 points is filled, so a "
          "perfect detector scores 1/11 there, as the devkit itself does; AP* are COCO-style on the 2D boxes)")


if __name__ == "__main__":
    main()
