"""The timing helpers of the benchmark scripts: warm up, then the median (and best) of several runs; the decode
benchmarks' shared options."""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch


def median_seconds(fn: Callable[[], object], runs: int, warmup: int = 1,
                   clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """(median, best) wall time in seconds of ``fn()`` over ``runs`` calls after ``warmup`` calls (``clock``:
    e.g. ``time.process_time`` for the CPU time of single-threaded work, which other processes do not inflate)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times), min(times)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn()`` in milliseconds (see :func:`median_seconds`)."""
    return median_seconds(fn, runs)[0] * 1e3


def add_decode_args(parser: argparse.ArgumentParser) -> None:
    """--runs, --K (detections kept) and --threads, as the decode benchmarks take them."""
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--K", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")


def parse_decode_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser``'s arguments, with torch's thread count set from --threads."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
