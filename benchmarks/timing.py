"""The one timing helper of the benchmark scripts: warm up, then the median (and best) of several runs."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], runs: int, warmup: int = 1) -> tuple[float, float]:
    """(median, best) wall time in seconds of ``fn()`` over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn()`` in milliseconds (see :func:`median_seconds`)."""
    return median_seconds(fn, runs)[0] * 1e3
