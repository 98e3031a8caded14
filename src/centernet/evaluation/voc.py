"""PASCAL VOC-style AP at IoU 0.5 (per class, "difficult" objects ignored), as the VOC devkit scores it."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data.sample import DetectionSource, category_ids


def _average_precision(recall: np.ndarray, precision: np.ndarray, eleven_point: bool) -> float:
    if eleven_point:  # VOC2007: mean of the max precision at recall >= 0, 0.1, ..., 1
        return float(np.mean([precision[recall >= t].max(initial=0) for t in np.linspace(0, 1, 11)]))
    # VOC2010+: area under the monotone (right-to-left max) precision envelope
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _overlaps(dets: list[dict[str, Any]], gts: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """IoU [N] of each detection's box with the N objects of its image (continuous coordinates, x2/y2
    exclusive; an empty array where the image has none): one :func:`~centernet.ops.boxes.box_iou` per image.

    Detection boxes are float64 and the objects' keep their dtype (float32 in a Sample): torch promotes the
    mixed operands as NumPy did, so the objects' areas stay float32 products and every value is unchanged."""
    import torch  # on first use: importing this module stays cheap

    from ..ops.boxes import box_iou

    by_image: dict[Any, list[int]] = {}
    for i, det in enumerate(dets):
        by_image.setdefault(det["image_id"], []).append(i)
    out = [np.zeros(0)] * len(dets)
    for image_id, idx in by_image.items():
        boxes = gts.get(image_id, (np.zeros((0, 4)), None))[0]
        if len(boxes) == 0:
            continue
        det_boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (dets[i]["bbox"] for i in idx)], np.float64)
        ious = box_iou(torch.from_numpy(det_boxes[:, None]),  # [D, 1, 4] with [1, N, 4] -> [D, N]
                       torch.from_numpy(np.asarray(boxes)[None])).numpy()
        for i, row in zip(idx, ious):
            out[i] = row
    return out


def voc_ap(source: DetectionSource, results: list[dict[str, Any]], iou_threshold: float = 0.5,
           eleven_point: bool = False, cat_ids: list[int] | None = None) -> dict[str, float]:
    """Per-class VOC AP of COCO-format ``results`` on ``source``; returns {"mAP": m, class name: ap}.

    A detection matching an ignored ("difficult") object is neither a true nor a false positive; each
    ground-truth object is matched at most once, in descending score order.
    """
    cat_ids = cat_ids or category_ids(source)
    label_of = {cid: label for label, cid in enumerate(cat_ids)}
    per_class: dict[str, float] = {}
    by_image = {s.image_id: s for s in source.samples}
    for label, name in enumerate(source.class_names):
        gts = {iid: (s.boxes[s.labels == label], s.ignore[s.labels == label]) for iid, s in by_image.items()}
        num_pos = sum(int((~ign).sum()) for _, ign in gts.values())
        dets = sorted((r for r in results if label_of.get(r["category_id"]) == label), key=lambda r: -r["score"])
        used = {iid: np.zeros(len(b), bool) for iid, (b, _) in gts.items()}
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        for i, (det, ious) in enumerate(zip(dets, _overlaps(dets, gts))):
            _, ignore = gts.get(det["image_id"], (np.zeros((0, 4)), np.zeros(0, bool)))
            if len(ious) == 0:
                fp[i] = 1
                continue
            best = int(ious.argmax())
            if ious[best] < iou_threshold:
                fp[i] = 1
            elif ignore[best]:
                continue
            elif not used[det["image_id"]][best]:
                tp[i], used[det["image_id"]][best] = 1, True
            else:
                fp[i] = 1
        if num_pos == 0:
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / num_pos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        per_class[name] = _average_precision(recall, precision, eleven_point)
    return {"mAP": float(np.mean(list(per_class.values()))) if per_class else 0.0, **per_class}
