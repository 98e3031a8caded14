"""COCO-style box evaluation with pycocotools, for any data source."""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.convert import to_coco_dict
from ..data.sample import DetectionSource

KEYPOINT_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
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


def _run_cocoeval(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> tuple[COCOeval, str]:
    """evaluate + accumulate + summarize on every image of ``gt``; returns the run and its printout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, iou_type)
        ev.params.imgIds = sorted(gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, out.getvalue()


def evaluate_coco(gt: COCO, results: list[dict[str, Any]], iou_type: str = "bbox",
                  verbose: bool = False) -> dict[str, float]:
    """Run COCOeval; returns {AP, AP50, ...} in [0, 1] (-1 where undefined). No results: all zeros."""
    return evaluate_coco_per_class(gt, results, iou_type, verbose)[0]


def evaluate_coco_per_class(gt: COCO, results: list[dict[str, Any]], iou_type: str = "bbox",
                            verbose: bool = False) -> tuple[dict[str, float], PerClassPR]:
    """:func:`evaluate_coco`'s metrics and the per-class curves of the same COCOeval run."""
    names = BOX_METRICS if iou_type == "bbox" else KEYPOINT_METRICS
    if not results:
        return {name: 0.0 for name in names}, PerClassPR.empty(gt)
    ev, printout = _run_cocoeval(gt, results, iou_type)
    if verbose:
        print(printout)
    return {name: float(v) for name, v in zip(names, ev.stats)}, PerClassPR.from_eval(ev, gt)


@dataclass
class PerClassPR:
    """Per-class precision at COCOeval's 101 recall points (area "all", the largest maxDets).

    ``precision50`` is at IoU 0.5, ``precision`` the mean over the IoU thresholds 0.5:0.95; both [K, R],
    NaN for a class without ground truth. ``ap`` / ``ap50`` [K] are their means over recall: averaged over
    classes (NaN skipped) they give COCOeval's AP / AP50. ``confidence`` holds, per class, the scores of its
    detections (sorted, descending) and whether each is a true positive at IoU 0.5 (as COCOeval matched it),
    and the number of objects it may find: precision, recall and F1 against the confidence threshold
    (:meth:`confidence_curves`) follow exactly.
    """

    names: list[str]
    cat_ids: list[int]
    recall: np.ndarray  # [R]
    precision: np.ndarray  # [K, R]
    precision50: np.ndarray  # [K, R]
    num_gt: np.ndarray  # [K] non-crowd ground-truth objects
    confidence: list[tuple[np.ndarray, np.ndarray, int]] | None = None  # per class: scores, true positive, objects

    @property
    def ap(self) -> np.ndarray:
        return _mean_or_nan(self.precision)

    @property
    def ap50(self) -> np.ndarray:
        return _mean_or_nan(self.precision50)

    def curves(self, iou50: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{class name: (recall [R], precision [R])} of the classes with ground truth."""
        table = self.precision50 if iou50 else self.precision
        return {n: (self.recall, p) for n, p, g in zip(self.names, table, self.num_gt) if g > 0}

    def confidence_curves(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall and F1 [K', G] at IoU 0.5 of the detections scoring at least each of ``thresholds``
        [G], for the K' classes with ground truth (precision 0 where nothing is kept)."""
        keep = [i for i, g in enumerate(self.num_gt) if g > 0]
        shape = (len(keep), len(thresholds))
        precision, recall = np.zeros(shape), np.zeros(shape)
        for row, k in enumerate(keep):
            scores, hit, objects = self.confidence[k] if self.confidence else (np.zeros(0), np.zeros(0, bool), 1)
            kept = np.searchsorted(-scores, -np.asarray(thresholds), side="right")  # [G] detections >= threshold
            tp = np.concatenate([[0], np.cumsum(hit)])[kept]
            precision[row] = np.where(kept > 0, tp / np.maximum(kept, 1), 0.0)
            recall[row] = tp / max(objects, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        return precision, recall, f1

    @classmethod
    def from_eval(cls, ev: COCOeval, gt: COCO) -> "PerClassPR":
        precision = np.asarray(ev.eval["precision"], dtype=np.float64)[:, :, :, 0, -1]  # [T, R, K]
        precision = np.where(precision < 0, np.nan, precision)  # -1: no ground truth for the class
        iou50 = int(np.argmin(np.abs(np.asarray(ev.params.iouThrs) - 0.5)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN classes stay NaN
            mean_iou = np.nanmean(precision, axis=0)
        cat_ids = list(ev.params.catIds)
        return cls(names=_names(gt, cat_ids), cat_ids=cat_ids, recall=np.asarray(ev.params.recThrs),
                   precision=mean_iou.T, precision50=precision[iou50].T, num_gt=_num_gt(gt, cat_ids),
                   confidence=_matches(ev, iou50))

    @classmethod
    def empty(cls, gt: COCO) -> "PerClassPR":
        """No detections at all: precision 0 for classes with ground truth."""
        cat_ids = sorted(gt.getCatIds())
        num_gt = _num_gt(gt, cat_ids)
        recall = np.linspace(0.0, 1.0, RECALL_POINTS)
        zeros = np.where(num_gt[:, None] > 0, 0.0, np.nan) * np.ones((1, RECALL_POINTS))
        return cls(names=_names(gt, cat_ids), cat_ids=cat_ids, recall=recall, precision=zeros,
                   precision50=zeros.copy(), num_gt=num_gt)


RECALL_POINTS = 101  # COCOeval's recall thresholds 0:.01:1


def _matches(ev: COCOeval, iou: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Per category of ``ev.params.catIds``: its detections' scores (descending), whether each matched an
    object at IoU threshold index ``iou``, and its objects, as COCOeval's evaluateImg left them (area "all",
    the largest maxDets; ignored detections and objects left out)."""
    p = ev.params
    per_cat: dict[int, tuple[list, list, int]] = {c: ([], [], 0) for c in p.catIds}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != p.areaRng[0] or e["maxDet"] != p.maxDets[-1]:
            continue
        keep = ~np.asarray(e["dtIgnore"], dtype=bool).reshape(len(p.iouThrs), len(e["dtIds"]))[iou]
        scores, hits, objects = per_cat[e["category_id"]]
        scores.append(np.asarray(e["dtScores"], dtype=np.float64)[keep])
        hits.append((np.asarray(e["dtMatches"]).reshape(len(p.iouThrs), len(e["dtIds"]))[iou] > 0)[keep])
        per_cat[e["category_id"]] = (scores, hits, objects + int(np.count_nonzero(~np.asarray(e["gtIgnore"], bool))))
    out = []
    for c in p.catIds:
        scores, hits, objects = per_cat[c]
        s = np.concatenate(scores) if scores else np.zeros(0)
        h = np.concatenate(hits) if hits else np.zeros(0, bool)
        order = np.argsort(-s, kind="mergesort")  # COCOeval's own order
        out.append((s[order], h[order], objects))
    return out


def _mean_or_nan(table: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(table, axis=1) if table.size else np.zeros(0)


def _names(gt: COCO, cat_ids: list[int]) -> list[str]:
    return [str(gt.cats[c].get("name", c)) if c in gt.cats else str(c) for c in cat_ids]


def _num_gt(gt: COCO, cat_ids: list[int]) -> np.ndarray:
    return np.array([len(gt.getAnnIds(catIds=[c], iscrowd=False)) for c in cat_ids], dtype=np.int64)
