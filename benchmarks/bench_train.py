"""Training throughput (images/s, batch 8 at 512x512 by default) and peak memory, and data-loading
throughput of one worker, measured in one run so their ratio says whether loading limits training.

    python benchmarks/bench_train.py --arch resdcn_18 --size 512 --batch 8 --steps 3
    python benchmarks/bench_train.py --data ../shared/data/coco_mini/annotations/instances_train2017.json
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from centernet import build_model
from centernet.data import make_synthetic_dataset, open_dataset
from centernet.data.pipeline import TrainDataset, collate
from centernet.tasks import CtdetTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resdcn_18")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--data", help="a data set for the loading figure (default: synthetic 640x480 images)")
    args = parser.parse_args()
    torch.manual_seed(0)

    tmp = tempfile.TemporaryDirectory()
    spec = args.data or str(make_synthetic_dataset(tmp.name, num_train=64, num_val=1, image_size=(640, 480))["train_ann"])
    source = open_dataset(spec)
    task = CtdetTask(num_classes=len(source.class_names))
    dataset = TrainDataset(source, task, (args.size, args.size))
    n = min(len(dataset), 48)
    dataset[0]
    start = time.perf_counter()
    items = [dataset[i % len(dataset)] for i in range(n)]
    load_rate = n / (time.perf_counter() - start)
    print(f"data loading: {load_rate:.1f} images/s per worker ({Path(spec).name}, {args.size}x{args.size}, "
          f"full augmentation + {task.num_classes}-class targets)")

    model = build_model(args.arch, task.heads()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = collate([items[i % n] for i in range(args.batch)])
    times = []
    for step in range(args.steps + 1):
        t = time.perf_counter()
        loss, _ = task.loss(model(batch["input"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up allocators
            times.append(time.perf_counter() - t)
    rate = args.batch / statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"training: {args.arch} batch {args.batch} at {args.size}: {rate:.2f} images/s "
          f"(median step {statistics.median(times):.2f} s), peak RSS {peak:.2f} GiB")
    print(f"one loading worker supplies {load_rate / rate:.1f}x what training consumes")


if __name__ == "__main__":
    main()
