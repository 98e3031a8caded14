"""Error analysis (the paper's table): AP with the ground truth substituted for some of the network's maps.

Each row (``task.analysis_rows``, e.g. none, the size, the heatmap, heatmap + size, heatmap + size + offset for
CenterNet) evaluates the model with the named heads replaced by maps rebuilt from the encoded ground truth
(``task.oracle_maps``). Every row
uses the deterministic training geometry (``TrainDataset(augment=False)``: centre, no flip), so the
network's maps and the ground truth line up on the same output pixels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..data.sample import DetectionSource
from ..tasks.base import Task
from .evaluator import EvalSettings, evaluate

COLUMNS = ("AP", "AP50", "AP75")


@dataclass
class AnalysisRow:
    name: str
    oracle: frozenset[str]
    metrics: dict[str, float]


def analysis_rows(task: Task) -> list[tuple[str, frozenset[str]]]:
    """The task's error-analysis rows whose heads the model has (an offset row needs an offset head)."""
    heads = set(task.heads())
    return [(name, oracle) for name, oracle in task.analysis_rows if oracle <= heads]


def error_analysis(model: nn.Module, task: Task, source: DetectionSource, settings: EvalSettings | None = None,
                   device: torch.device | str = "cpu", progress: bool = True,
                   rows: list[tuple[str, frozenset[str]]] | None = None) -> list[AnalysisRow]:
    """Evaluate ``model`` once per row of :func:`analysis_rows` (or ``rows``); returns the metrics of each.

    ``settings`` must have a fixed input size; its flip and scale options are ignored (the oracle path
    runs one scale, unflipped, so that the rows stay comparable).
    """
    settings = settings or EvalSettings()
    if settings.input_size is None:
        raise ValueError("error analysis needs a fixed input size (not keep_res)")
    out = []
    for name, oracle in rows or analysis_rows(task):
        row_settings = dataclasses.replace(settings, flip=False, scales=(1.0,), oracle=frozenset(oracle),
                                           train_geometry=True)
        metrics = evaluate(model, task, source, row_settings, device, progress=progress).metrics
        out.append(AnalysisRow(name, frozenset(oracle), metrics))
    return out


def substituted(row: AnalysisRow) -> str:
    """What a row replaces: "nothing (the model as it is)" or the heads whose maps come from the ground truth."""
    return "nothing (the model as it is)" if not row.oracle else "the " + ", ".join(sorted(row.oracle)) + " maps"


def format_table(rows: list[AnalysisRow], columns: tuple[str, ...] = COLUMNS) -> str:
    """A plain-text table: one line per row (its name, what it replaces by the ground truth), AP columns as
    fractions in [0, 1] (the unit ``centernet eval``, the epoch table and the json files use)."""
    head, what = "ground truth for", "replaces"
    width = max([len(head)] + [len(r.name) for r in rows])
    middle = max([len(what)] + [len(substituted(r)) for r in rows])
    sizes = [max(6, len(c)) for c in columns]
    lines = [f"{head:<{width}}  {what:<{middle}}  " + "  ".join(f"{c:>{n}}" for c, n in zip(columns, sizes))]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(f"{r.name:<{width}}  {substituted(r):<{middle}}  " + "  ".join(
            f"{r.metrics.get(c, 0.0):{n}.3f}" for c, n in zip(columns, sizes)))
    return "\n".join(lines)
