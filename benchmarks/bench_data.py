"""Training-data throughput per core: the pipeline before issue 12 (frozen copy in tests/helpers) against
today's, interleaved in one process, and the cost of target encoding next to a training step.

One process, torch and OpenCV on one thread each (a DataLoader worker is one process). Each round times
one pass over the images with the frozen pipeline and one with today's (alternating which goes first);
the figures are medians over the rounds and the ratio of the medians. The encode figure is the median
per-image time of ``task.encode`` (ctdet on the instances json, multi_pose on the person_keypoints json of
the same folder), compared with the median time of one training step (batch ``--batch``, all threads).

    python benchmarks/bench_data.py                                   # coco_mini, 512x512, 5 rounds
    python benchmarks/bench_data.py --data path/to/instances_train2017.json --rounds 7 --no-step
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import torch

from centernet import build_model
from centernet.data import open_dataset
from centernet.data.pipeline import TrainDataset, collate
from centernet.tasks import CtdetTask, MultiPoseTask, Task
from timing import median_seconds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import frozen_pipeline  # noqa: E402  (the reference copy lives with the tests)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "coco_mini" / "annotations" / "instances_train2017.json"


def images_per_s(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def compare_pipelines(ds: TrainDataset, n: int, rounds: int) -> tuple[float, float]:
    """(median images/s of the frozen pipeline, median images/s of today's) over interleaved rounds."""
    old_fn, new_fn = (lambda i: frozen_pipeline.frozen_item(ds, i)), ds.__getitem__
    old_fn(0), new_fn(0)  # warm up readers and caches
    old, new = [], []
    for r in range(rounds):
        ds.set_epoch(r)  # fresh draws each round, the same for both
        if r % 2:
            new.append(images_per_s(new_fn, n))
            old.append(images_per_s(old_fn, n))
        else:
            old.append(images_per_s(old_fn, n))
            new.append(images_per_s(new_fn, n))
    return statistics.median(old), statistics.median(new)


def captured_encodes(ds: TrainDataset, n: int) -> list[tuple]:
    """The (sample, out_w, out_h) arguments ``ds.task.encode`` receives for the first ``n`` items."""
    calls: list[tuple] = []
    encode = ds.task.encode
    ds.task.encode = lambda sample, w, h: calls.append((sample, w, h)) or encode(sample, w, h)
    try:
        for i in range(n):
            ds[i]
    finally:
        del ds.task.encode
    return calls


def encode_ms(task: Task, calls: list[tuple], frozen: bool, runs: int) -> float:
    """Median milliseconds per image of encoding ``calls`` (today's encoder or the frozen one)."""
    def run() -> None:
        for sample, w, h in calls:
            frozen_pipeline.encode(task, sample, w, h) if frozen else task.encode(sample, w, h)
    return median_seconds(run, runs)[0] / len(calls) * 1e3


def step_seconds(arch: str, task: Task, items: list[dict], batch: int, runs: int) -> float:
    """Median seconds of one forward + backward + Adam step of ``arch`` on ``batch`` images."""
    model = build_model(arch, task.heads()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = collate([items[i % len(items)] for i in range(batch)])

    def step() -> None:
        loss, _ = task.loss(model(data["input"]), data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return median_seconds(step, runs)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a COCO instances json (default: coco_mini)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=40, help="images per timed pass")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--arch", default="resdcn_18")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--step-runs", type=int, default=2)
    parser.add_argument("--no-step", action="store_true", help="skip the training-step timing")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    data = Path(args.data)
    source = open_dataset(data)
    task = CtdetTask(num_classes=len(source.class_names))
    ds = TrainDataset(source, task, (args.size, args.size))  # full augmentation: crop, flip, colour
    n = min(args.images, len(ds))
    old, new = compare_pipelines(ds, n, args.rounds)
    print(f"pipeline ({data.name}, {args.size}x{args.size}, crop+flip+colour+ctdet targets, 1 thread, "
          f"{n} images x {args.rounds} rounds, medians):")
    print(f"  frozen (before issue 12): {old:7.1f} images/s per core")
    print(f"  today:                    {new:7.1f} images/s per core   ratio {new / old:.2f}x")

    tasks: list[tuple[str, Task, TrainDataset]] = [("ctdet", task, ds)]
    pose_json = data.with_name(data.name.replace("instances_", "person_keypoints_"))
    if pose_json != data and pose_json.is_file():
        pose_source = open_dataset(pose_json)
        pose = MultiPoseTask()
        tasks.append(("multi_pose", pose, TrainDataset(pose_source, pose, (args.size, args.size))))
    encodes = {}
    print(f"target encoding per image at {args.size} (median of {args.rounds}):")
    for name, t, d in tasks:
        calls = captured_encodes(d, min(n, len(d)))
        old_ms, new_ms = encode_ms(t, calls, True, args.rounds), encode_ms(t, calls, False, args.rounds)
        encodes[name] = new_ms
        print(f"  {name:10s} frozen {old_ms:6.3f} ms, today {new_ms:6.3f} ms ({old_ms / new_ms:.2f}x)")

    if not args.no_step:
        torch.set_num_threads(threads)
        items = [ds[i] for i in range(min(args.batch, len(ds)))]
        step = step_seconds(args.arch, task, items, args.batch, args.step_runs)
        print(f"training step {args.arch} batch {args.batch} at {args.size} ({threads} threads): {step:.2f} s")
        for name, ms in encodes.items():
            share = ms * 1e-3 * args.batch / step
            print(f"  {name} encoding of the batch (one core) = {100 * share:.2f}% of the step")


if __name__ == "__main__":
    main()
