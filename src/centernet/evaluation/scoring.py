"""The scorer protocol: accumulate a task's per-image results, then compute metrics.

A scorer's state is its list of results, so sharded evaluation gathers every rank's list through the same
protocol (:meth:`Scorer.state` / :meth:`Scorer.merge`) and rank 0 computes. ``headline`` names the metric
that decides the best checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..data.sample import DetectionSource
from ..registry import Registry


class Scorer:
    """Base: collects result dicts (each carries its ``image_id``); subclasses implement :meth:`result`.

    After :meth:`result`, ``per_class`` holds per-class precision-recall curves when the scorer computed
    them (:class:`~centernet.evaluation.coco.PerClassPR`, for the run reports), else None."""

    headline: str = "AP"

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.per_class: Any = None

    def add(self, results: Iterable[dict[str, Any]]) -> None:
        """The results of one or more images."""
        self.results.extend(results)

    def state(self) -> list[dict[str, Any]]:
        """A picklable partial state (for gathering across processes)."""
        return self.results

    def merge(self, states: Sequence[list[dict[str, Any]]]) -> None:
        """Add other scorers' states (rank 0 after a gather)."""
        for state in states:
            self.results.extend(state)

    def result(self, verbose: bool = False) -> dict[str, float]:
        raise NotImplementedError

    def report(self) -> str:
        """A text report beyond the flat metrics (e.g. a per-class table), after :meth:`result`; "" if none."""
        return ""

    def write(self, folder: str | Path) -> list[Path]:
        """Write the results in the data set's own format under ``folder`` (e.g. KITTI label files);
        returns the paths written (none by default)."""
        return []


class CocoScorer(Scorer):
    """pycocotools metrics for each iou type: the first unprefixed (AP, AP50, ...), the others prefixed
    (e.g. ``bbox_AP`` for the boxes of a keypoint task)."""

    def __init__(self, source: DetectionSource, iou_types: Sequence[str] = ("bbox",)) -> None:
        super().__init__()
        self.source, self.iou_types = source, tuple(iou_types)
        self.by_type: dict[str, dict[str, float]] = {}  # the last result, per iou type

    def result(self, verbose: bool = False) -> dict[str, float]:
        from .coco import coco_ground_truth, evaluate_coco_per_class

        gt = coco_ground_truth(self.source)
        metrics: dict[str, float] = {}
        for i, iou_type in enumerate(self.iou_types):
            # pycocotools replaces a result's bbox by its keypoints' extent: box metrics get box-only results
            typed = self.results if iou_type == "keypoints" else [
                {k: v for k, v in r.items() if k != "keypoints"} for r in self.results]
            scores, per_class = evaluate_coco_per_class(gt, typed, iou_type, verbose=verbose)
            if i == 0:
                self.per_class = per_class  # the curves of the headline iou type
            self.by_type[iou_type] = scores
            metrics.update(scores if i == 0 else {f"{iou_type}_{k}": v for k, v in scores.items()})
        return metrics

    def report(self) -> str:
        """pycocotools' figures as one table, a row per iou type (the first row's names are unprefixed)."""
        return "COCO metrics (pycocotools):\n" + metrics_table(self.by_type) if self.by_type else ""


class VocScorer(Scorer):
    """The VOC devkit's all-point AP at IoU 0.5 (``voc_AP50``), "difficult" objects ignored."""

    headline = "voc_AP50"

    def __init__(self, source: DetectionSource) -> None:
        super().__init__()
        self.source = source

    def result(self, verbose: bool = False) -> dict[str, float]:
        from .voc import voc_ap

        self.ap50 = voc_ap(self.source, self.results)["mAP"]
        return {"voc_AP50": self.ap50}

    def report(self) -> str:
        return f"VOC AP50 (all-point, 'difficult' objects ignored): {self.ap50:.3f}" if hasattr(self, "ap50") else ""


class Scorers(Scorer):
    """Several scorers over the same results; the first one's headline leads."""

    def __init__(self, scorers: Sequence[Scorer]) -> None:
        super().__init__()
        self.scorers = list(scorers)
        self.headline = self.scorers[0].headline

    def add(self, results: Iterable[dict[str, Any]]) -> None:
        results = list(results)
        for scorer in self.scorers:
            scorer.add(results)

    def state(self) -> list[dict[str, Any]]:
        return self.scorers[0].state()

    def merge(self, states: Sequence[list[dict[str, Any]]]) -> None:
        for scorer in self.scorers:
            scorer.merge(states)

    def result(self, verbose: bool = False) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for scorer in self.scorers:
            metrics.update(scorer.result(verbose))
        self.per_class = next((s.per_class for s in self.scorers if s.per_class is not None), None)
        return metrics

    def report(self) -> str:
        return "\n\n".join(text for text in (scorer.report() for scorer in self.scorers) if text)

    def write(self, folder: str | Path) -> list[Path]:
        return [path for scorer in self.scorers for path in scorer.write(folder)]


def metrics_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Rows of metrics (fractions) as a plain table: a line per row label, a column per metric name (in the
    order first seen), three decimals; "-" where a row lacks a metric or it is undefined (pycocotools' -1)."""
    columns = list(dict.fromkeys(name for metrics in rows.values() for name in metrics))
    label = max([5] + [len(r) for r in rows])
    sizes = [max(5, len(c)) for c in columns]
    lines = [" " * label + "".join(f"  {c:>{n}}" for c, n in zip(columns, sizes))]
    for row, metrics in rows.items():
        cells = [f"{metrics[c]:.3f}" if c in metrics and metrics[c] is not None and metrics[c] >= 0 else "-"
                 for c in columns]
        lines.append(f"{row:<{label}}" + "".join(f"  {v:>{n}}" for v, n in zip(cells, sizes)))
    return "\n".join(lines)


#: scorers a data set asks for by name (``DetectionSource.extra_scorers``), e.g. "voc"
SCORERS: Registry[Callable[[DetectionSource], Scorer]] = Registry("scorer")
SCORERS.register("voc")(VocScorer)


def default_scorer(source: DetectionSource, iou_types: Sequence[str]) -> Scorer:
    """COCO metrics of ``iou_types`` plus the scorers the data set names (VOC: its AP50)."""
    extra = [SCORERS.get(name)(source) for name in getattr(source, "extra_scorers", ())]
    coco = CocoScorer(source, iou_types)
    return Scorers([coco, *extra]) if extra else coco
