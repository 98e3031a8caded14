"""COCO-style box evaluation with pycocotools, for any data source."""
from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.convert import to_coco_dict
from ..data.sample import DetectionSource

BOX_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_ground_truth(source: DetectionSource) -> COCO:
    """A pycocotools COCO object of the source's annotations (its json file when it has one)."""
    data = source.to_coco_dict() if hasattr(source, "to_coco_dict") else to_coco_dict(source)
    gt = COCO()
    gt.dataset = copy.deepcopy(data)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def detections_to_coco(dets: np.ndarray, image_id: int, cat_ids: list[int]) -> list[dict[str, Any]]:
    """Rows (x1, y1, x2, y2, score, class) -> COCO result dicts (xywh)."""
    results = []
    for x1, y1, x2, y2, score, cls in dets[:, :6].tolist():
        results.append({"image_id": int(image_id), "category_id": cat_ids[int(cls)],
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(score, 5)})
    return results


def evaluate_coco(gt: COCO, results: list[dict[str, Any]], iou_type: str = "bbox",
                  verbose: bool = False) -> dict[str, float]:
    """Run COCOeval; returns {AP, AP50, ...} in [0, 1] (-1 where undefined). No results: all zeros."""
    names = BOX_METRICS if iou_type == "bbox" else KEYPOINT_METRICS
    if not results:
        return {name: 0.0 for name in names}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, iou_type)
        ev.params.imgIds = sorted(gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(out.getvalue())
    return {name: float(v) for name, v in zip(names, ev.stats)}


KEYPOINT_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
