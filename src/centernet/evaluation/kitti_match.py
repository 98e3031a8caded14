"""The KITTI devkit's matching and precision curve for one class, metric and difficulty, in NumPy.

The devkit (evaluate_object_3d_offline.cpp) matches each frame's ground truth in file order, greedily:
a first pass over all detections collects the true positives' scores, from which 41 recall thresholds are
picked; a second pass per threshold, over the detections scoring at least that, counts TP / FP / FN and the
orientation similarity. The greedy walk over a frame's ground truth is inherently sequential, so it runs
as a loop over the ground-truth rank, vectorised over frames (and, in the second pass, over the distinct
sets of eligible detections per frame: a frame's outcome only changes when a threshold passes one of its
scores). Only detections that overlap some object above the threshold can be matched; the others enter
the false positives through a global count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_SAMPLES = 41  # recall samples 0, 1/40, ..., 1
NO_DETECTION = -10000000.0  # the devkit's "no candidate yet" score: lower scores never match in pass one


@dataclass(frozen=True)
class MatchInput:
    """Flat arrays of one class's relevant objects, candidate detections and their overlapping pairs.

    Objects and detections are grouped by frame (ascending) and in file order within a frame.
    ``det_state`` is the devkit's ignored_det: 0 evaluated, 1 ignored (too small), -1 not a candidate.
    """

    gt_frame: np.ndarray  # [G] int
    gt_ignored: np.ndarray  # [G] bool: neighbouring class, or outside the difficulty
    gt_alpha: np.ndarray  # [G]
    det_frame: np.ndarray  # [D] int
    det_state: np.ndarray  # [D] int in {-1, 0, 1}
    det_score: np.ndarray  # [D]
    det_alpha: np.ndarray  # [D]
    det_swallowed: np.ndarray  # [D] bool: overlaps a DontCare region (relative to its own area)
    pair_gt: np.ndarray  # [P] index into the objects
    pair_det: np.ndarray  # [P] index into the detections
    pair_overlap: np.ndarray  # [P]


@dataclass
class _Padded:
    """Frames that hold objects, padded: [F, Gmax] objects and [F, Mmax] matchable detections."""

    overlap: np.ndarray  # [F, Gmax, Mmax], 0 where no pair
    gt_count: np.ndarray  # [F]
    gt_ignored: np.ndarray  # [F, Gmax]
    gt_alpha: np.ndarray  # [F, Gmax]
    state: np.ndarray  # [F, Mmax], -1 on padding
    score: np.ndarray  # [F, Mmax], -inf on padding
    alpha: np.ndarray  # [F, Mmax]
    swallowed: np.ndarray  # [F, Mmax]


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal (sorted) group ids."""
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))


def _pad(inp: MatchInput, min_overlap: float) -> _Padded:
    keep = (inp.pair_overlap > min_overlap) & (inp.det_state[inp.pair_det] != -1)
    frames, gt_slot = np.unique(inp.gt_frame, return_inverse=True)
    gt_rank = _rank_in_group(gt_slot)
    dets = np.unique(inp.pair_det[keep])  # the matchable detections, still grouped by frame
    det_slot = np.searchsorted(frames, inp.det_frame[dets])
    det_rank = _rank_in_group(det_slot)
    num_f, g_max = len(frames), int(gt_rank.max(initial=-1)) + 1
    m_max = max(int(det_rank.max(initial=-1)) + 1, 1)  # one padding column keeps argmax defined
    local = np.zeros(len(inp.det_frame), int)
    local[dets] = det_rank

    overlap = np.zeros((num_f, g_max, m_max))
    pg, pd = inp.pair_gt[keep], inp.pair_det[keep]
    overlap[gt_slot[pg], gt_rank[pg], local[pd]] = inp.pair_overlap[keep]

    def objects(values: np.ndarray, fill) -> np.ndarray:
        out = np.full((num_f, g_max), fill, dtype=values.dtype)
        out[gt_slot, gt_rank] = values
        return out

    def detections(values: np.ndarray, fill) -> np.ndarray:
        out = np.full((num_f, m_max), fill, dtype=values.dtype)
        out[det_slot, det_rank] = values[dets]
        return out

    return _Padded(overlap, np.bincount(gt_slot, minlength=num_f), objects(inp.gt_ignored, True),
                   objects(inp.gt_alpha, 0.0), detections(inp.det_state, -1),
                   detections(inp.det_score, -np.inf), detections(inp.det_alpha, 0.0),
                   detections(inp.det_swallowed, True))


def _greedy(pad: _Padded, slots: np.ndarray, eligible: np.ndarray, min_overlap: float,
            by_score: bool) -> dict[str, np.ndarray]:
    """The devkit's per-frame walk over the objects, for rows (a frame ``slots`` [R] and the eligible
    detections [R, Mmax]). by_score: pass one (the candidate with the highest score); otherwise pass two
    (the evaluated candidate with the largest overlap, else the first too-small one)."""
    order = np.argsort(-pad.gt_count[slots], kind="stable")
    slots, eligible = slots[order], eligible[order]
    state, score, alpha = pad.state[slots], pad.score[slots], pad.alpha[slots]
    num_rows = len(slots)
    active = np.searchsorted(-pad.gt_count[slots], -np.arange(pad.overlap.shape[1]), side="left")
    assigned = np.zeros_like(eligible)
    tp, fn, similarity = np.zeros(num_rows, int), np.zeros(num_rows, int), np.zeros(num_rows)
    tp_scores = []
    for g, n in enumerate(active):  # rows [:n] hold an object of rank g
        rows, ovg = np.arange(n), pad.overlap[slots[:n], g]  # [n, Mmax]
        cand = (ovg > min_overlap) & eligible[:n] & ~assigned[:n]
        if by_score:
            cand &= score[:n] > NO_DETECTION
            found = cand.any(axis=1)
            j = np.argmax(np.where(cand, score[:n], -np.inf), axis=1)
            chose_ignored = state[rows, j] == 1
        else:
            evaluated, small = cand & (state[:n] == 0), cand & (state[:n] == 1)
            any_evaluated = evaluated.any(axis=1)
            found = any_evaluated | small.any(axis=1)
            j = np.where(any_evaluated, np.argmax(np.where(evaluated, ovg, -np.inf), axis=1),
                         np.argmax(small, axis=1))
            chose_ignored = ~any_evaluated
        ignored_gt = pad.gt_ignored[slots[:n], g]
        fn[:n] += ~found & ~ignored_gt
        hit = found & ~ignored_gt & ~chose_ignored
        tp[:n] += hit
        assigned[rows[found], j[found]] = True
        if by_score:
            tp_scores.append(score[rows[hit], j[hit]])
        else:
            delta = pad.gt_alpha[slots[:n], g] - alpha[rows, j]
            similarity[:n] += np.where(hit, (1.0 + np.cos(delta)) / 2.0, 0.0)
    back = np.argsort(order)
    return {"tp": tp[back], "fn": fn[back], "similarity": similarity[back], "assigned": assigned[back],
            "tp_scores": np.concatenate(tp_scores) if tp_scores else np.zeros(0)}


def recall_thresholds(scores: np.ndarray, num_gt: int) -> np.ndarray:
    """The devkit's getThresholds: the true-positive scores closest to recall 0, 1/40, 2/40, ..."""
    v = np.sort(scores)[::-1]
    n = len(v)
    i = np.arange(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = (i + 1) / float(num_gt)
        right = np.where(i < n - 1, (i + 2) / float(num_gt), left)
    picks, current, start = [], 0.0, 0
    while start < n:  # the "take" condition holds on a suffix, so the next pick is its first index
        take = ~((right[start:] - current) < (current - left[start:])) | (i[start:] == n - 1)
        start += int(np.argmax(take))
        picks.append(start)
        current += 1.0 / (N_SAMPLES - 1.0)
        start += 1
    return v[picks]


def precision_curves(inp: MatchInput, min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """(precision [41], orientation similarity [41]) as the devkit's eval_class computes them."""
    num_gt = int(np.sum(~inp.gt_ignored))
    precision, aos = np.zeros(N_SAMPLES), np.zeros(N_SAMPLES)
    pad = _pad(inp, min_overlap)
    valid = pad.state != -1
    first = _greedy(pad, np.arange(len(pad.gt_count)), valid, min_overlap, by_score=True)
    thresholds = recall_thresholds(first["tp_scores"], num_gt)[:N_SAMPLES]
    if len(thresholds) == 0:
        return precision, aos
    # Rows of pass two: each frame once per distinct number of eligible matchable detections.
    passing = valid[None] & (pad.score[None] >= thresholds[:, None, None])  # [T, F, Mmax]
    code = np.arange(len(pad.gt_count))[None] * (pad.score.shape[1] + 1) + passing.sum(axis=2)  # [T, F]
    _, first_at, inverse = np.unique(code.ravel(), return_index=True, return_inverse=True)
    row_t, row_slot = np.unravel_index(first_at, code.shape)
    second = _greedy(pad, row_slot, passing[row_t, row_slot], min_overlap, by_score=False)
    inverse = inverse.reshape(code.shape)
    counted = second["assigned"] & (pad.state[row_slot] == 0) & ~pad.swallowed[row_slot]
    tp = second["tp"][inverse].sum(axis=1)
    similarity = second["similarity"][inverse].sum(axis=1)
    # False positives: evaluated, above the threshold, neither matched nor in a DontCare region.
    free = np.sort(inp.det_score[(inp.det_state == 0) & ~inp.det_swallowed])
    fp = len(free) - np.searchsorted(free, thresholds, side="left") - counted.sum(axis=1)[inverse].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision[: len(thresholds)] = np.nan_to_num(tp / (tp + fp))
        aos[: len(thresholds)] = np.nan_to_num(similarity / (tp + fp))
    # The devkit's filter: precision[i] = max(precision[i:]).
    return np.maximum.accumulate(precision[::-1])[::-1], np.maximum.accumulate(aos[::-1])[::-1]
