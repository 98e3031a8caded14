"""What training prints: a start-up summary, one aligned table line per epoch, and progress lines every
N steps when the output is not a terminal (CI, nohup, notebooks), where a progress bar would be noise.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from ..data.io import printable

VAL_PREFIX = "val_"  # log keys of validation metrics (val_AP, val_loss, ...)
LABEL_WIDTH = 7  # "device " column of the start-up summary
PROGRESS_LINES_PER_EPOCH = 10  # default progress lines per epoch without a terminal
HEADER_EVERY = 25  # table rows between repeated headers


# ------------------------------------------------------------------------------------------ summary
def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs (a multiply-add counts 2) of a forward pass on one 3 x H x W image, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; element-wise work
    and the bilinear sampling of deformable convolutions are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def data_summary(source: Any) -> str:
    """"80 images, 739 objects, 80 classes" for a data source (``samples`` with ``labels`` / ``ignore``,
    ``class_names``); crowd regions are not counted as objects."""
    samples = getattr(source, "samples", source)
    if hasattr(samples, "object_counts"):  # a SampleTable: counted from its arrays, no sample made
        objects = int(samples.object_counts(trained_only=True).sum())
    else:
        objects = sum(len(s.labels) - (np.count_nonzero(s.ignore) if s.ignore is not None else 0) for s in samples)
    classes = len(getattr(source, "class_names", ()))
    return f"{plural(len(samples), 'image')}, {plural(objects, 'object')}, {plural(classes, 'class')}"


def plural(n: int, word: str) -> str:
    """"1 image", "2 images", "3 classes"."""
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def startup_summary(model: nn.Module, input_size: tuple[int, int], device: str | torch.device,
                    out_dir: str | os.PathLike[str] | None = None, train: Any = None, val: Any = None,
                    threads: int | None = None, flops: bool = True) -> str:
    """Lines naming the data (``train`` / ``val`` sources), the model (its ``arch``, parameters, GFLOPs
    at ``input_size`` = (H, W)), the device and threads, and the run folder."""
    lines = []
    for name, source in (("train", train), ("val", val)):
        if source is not None:
            lines.append(("data", f"{name}: {data_summary(source)}"))
    arch = getattr(model, "arch", type(model).__name__)
    text = f"{arch}: {count_parameters(model) / 1e6:.2f}M parameters"
    if flops:
        text += f", {count_flops(model, input_size) / 1e9:.3g} GFLOPs at {input_size[0]}x{input_size[1]}"
    lines.append(("model", text))
    device = torch.device(device)
    where = str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        where += f" ({torch.cuda.get_device_name(device)})"
    threads = threads if threads is not None else torch.get_num_threads()
    lines.append(("device", f"{where}, {plural(threads, 'CPU thread')}"))
    if out_dir is not None:
        lines.append(("run", str(Path(out_dir).resolve())))
    return "\n".join(f"{label:<{LABEL_WIDTH}} {printable(text)}" for label, text in lines)


# ------------------------------------------------------------------------------------------ per epoch
def format_duration(seconds: float) -> str:
    """12s, 3m05s, 2h07m, 3d04h."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class EpochTable:
    """Aligned per-epoch lines: epoch, lr, the loss terms, validation metrics, epoch time and the ETA of
    the whole run (the mean time of the epochs seen so far times the epochs left).

    The loss columns are ``loss_keys``, or the record keys containing "loss" of the first row; metrics
    are read as ``val_<name>`` and shown as "-" in epochs without validation.
    """

    def __init__(self, total_epochs: int, loss_keys: Sequence[str] | None = None,
                 metrics: Sequence[str] = ("AP", "AP50")) -> None:
        self.total_epochs = total_epochs
        self.loss_keys = list(loss_keys) if loss_keys is not None else None
        self.metrics = list(metrics)
        self.times: list[float] = []
        self.rows = 0
        self.epoch_width = len(f"{total_epochs}/{total_epochs}")

    def _columns(self) -> list[tuple[str, int]]:
        cols = [("epoch", max(self.epoch_width, 5)), ("lr", 8)]
        names = [k.removesuffix("_loss") for k in self.loss_keys or []]  # "hm_loss" -> "hm"
        cols += [(name, max(8, len(name))) for name in names]
        cols += [(m, max(6, len(m))) for m in self.metrics] + [("time", 7), ("ETA", 7)]
        return cols

    def header(self) -> str:
        return "  ".join(name.rjust(width) for name, width in self._columns())

    def row(self, record: Mapping[str, Any], seconds: float) -> str:
        """The line of one epoch's ``record`` (``epoch``, ``lr``, losses, ``val_*``) that took ``seconds``."""
        if self.loss_keys is None:
            self.loss_keys = [k for k in record if "loss" in k and not k.startswith(VAL_PREFIX)]
        self.times.append(seconds)
        epoch = int(record.get("epoch", len(self.times)))
        eta = sum(self.times) / len(self.times) * max(self.total_epochs - epoch, 0)
        cells = [f"{epoch}/{self.total_epochs}", _number(record.get("lr"), "{:.2e}")]
        cells += [_number(record.get(k), "{:.4f}") for k in self.loss_keys]
        cells += [_number(record.get(VAL_PREFIX + m), "{:.3f}") for m in self.metrics]
        cells += [format_duration(seconds), format_duration(eta)]
        return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, self._columns()))

    def lines(self, record: Mapping[str, Any], seconds: float) -> str:
        """:meth:`row`, preceded by the header on the first row and every :data:`HEADER_EVERY` rows."""
        row = self.row(record, seconds)
        first = self.rows % HEADER_EVERY == 0
        self.rows += 1
        return f"{self.header()}\n{row}" if first else row


def _number(value: Any, fmt: str) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return fmt.format(value)
    return "-"


# ------------------------------------------------------------------------------------------ within an epoch
class ProgressLines:
    """A line every ``every`` steps (default: about :data:`PROGRESS_LINES_PER_EPOCH` per epoch) and at the
    last step, with running means of the logged values, speed and the epoch's ETA. Prints only when
    ``enabled`` (default: when ``stream`` is not a terminal: a tqdm bar serves terminals)."""

    def __init__(self, total_steps: int, epoch: int, total_epochs: int, every: int | None = None,
                 stream: TextIO | None = None, enabled: bool | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = (not _isatty(self.stream)) if enabled is None else enabled
        self.total_steps, self.epoch, self.total_epochs = total_steps, epoch, total_epochs
        self.every = every or max(1, math.ceil(total_steps / PROGRESS_LINES_PER_EPOCH))
        self.clock = clock
        self.start = clock()
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, step: int, values: Mapping[str, float]) -> str | None:
        """Record step ``step`` (1-based) and its ``values``; returns the line when one is printed."""
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1
        if not self.enabled or (step % self.every and step != self.total_steps):
            return None
        elapsed = self.clock() - self.start
        rate = self.count / elapsed if elapsed > 0 else math.inf
        left = (self.total_steps - step) / rate if rate > 0 else math.inf
        means = "  ".join(f"{k} {v / self.count:.4f}" for k, v in self.sums.items())
        width = len(str(self.total_steps))
        line = (f"epoch {self.epoch}/{self.total_epochs}  step {step:>{width}}/{self.total_steps} "
                f"({100 * step / self.total_steps:3.0f}%)  {means}  {rate:.2f} it/s  ETA {format_duration(left)}")
        print(line, file=self.stream, flush=True)
        return line


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
