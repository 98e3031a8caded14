"""Compare two detection lists (result dicts) by identity, not by list order.

Two runs of one model (eager and onnxruntime, one build of a library and another) agree on what they detect
to within rounding, but detections whose scores differ by less than that rounding may swap places in a
sorted list, and one run's K-th detection may be the other's (K+1)-th.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

import numpy as np


def assert_same_detections(
    ours: list[dict], theirs: list[dict], score_tol: float, box_tol: float,
    key: Iterable[str] = ("image_id", "category_id"), compare: Callable[[dict, dict], None] | None = None,
    top: int | None = None,
) -> int:
    """Every detection of ``ours`` has a partner in ``theirs`` with the same ``key`` fields, a score within
    ``score_tol`` and a box within ``box_tol`` (the nearest such one), and ``compare(a, b)`` holds for each
    pair. Detections within ``score_tol`` of the lowest score of their group (the K cut) are exempt: the other
    run may have cut them. ``top``: only the best ``top`` detections of ``ours`` per group. Returns the number
    of pairs compared."""
    key = tuple(key)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for d in theirs:
        groups[tuple(d[k] for k in key[:1])].append(d)
    by_image: dict[tuple, list[dict]] = defaultdict(list)
    for d in ours:
        by_image[tuple(d[k] for k in key[:1])].append(d)
    pairs = 0
    for image, mine in by_image.items():
        others = groups.get(image, [])
        assert len(others) == len(mine), f"{image}: {len(mine)} vs {len(others)} detections"
        floor = min(d["score"] for d in mine)
        ranked = sorted(mine, key=lambda d: -d["score"])[:top]
        for a in ranked:
            if a["score"] <= floor + score_tol:
                continue
            candidates = [b for b in others if all(b[k] == a[k] for k in key)
                          and abs(b["score"] - a["score"]) <= score_tol
                          and np.abs(np.subtract(b["bbox"], a["bbox"])).max() <= box_tol]
            assert candidates, f"no partner for {a}"
            b = min(candidates, key=lambda b: np.abs(np.subtract(b["bbox"], a["bbox"])).max())
            if compare is not None:
                compare(a, b)
            pairs += 1
    return pairs
