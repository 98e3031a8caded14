"""Training throughput (images/s, batch 8 at 512x512 by default) per step part (forward, loss, backward,
optimizer; medians) and peak memory, and data-loading throughput of one worker, measured in one run so
their ratio says whether loading limits training. ``--old FILE`` also steps a copy of the model whose DCN layers
run another implementation, in alternation with the current one (same weights, same batch); ``--vs ARCH`` steps a
model of another architecture in alternation (same batch); ``--channels-last`` steps a copy of the model in
channels-last memory (weights and batch) in alternation with the plain layout.

    python benchmarks/bench_train.py --arch resdcn_18 --size 512 --batch 8 --steps 3
    python benchmarks/bench_train.py --arch dla_tiny --size 128 --batch 16 --steps 5 \
        --data runs/demo/data/annotations/instances_train.json      # the demo's step
    python benchmarks/bench_train.py --data ../shared/data/coco_mini/annotations/instances_train2017.json
    python benchmarks/bench_train.py --arch dla_tiny --size 128 --batch 16 --old /tmp/old_deform_conv.py
    python benchmarks/bench_train.py --arch dla_tiny_conv --vs dla_tiny --size 128 --batch 16   # the demo's model
    python benchmarks/bench_train.py --arch dla_34 --size 512 --batch 4 --channels-last
"""
from __future__ import annotations

import argparse
import copy
import resource
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch

from centernet import build_model
from centernet.data import make_synthetic_dataset, open_dataset
from centernet.data.pipeline import TrainDataset, collate
from centernet.models.layers.deform_conv import ModulatedDeformConv2d
from centernet.tasks import CtdetTask
from bench_deform_conv import load_layer_class


def with_layer_class(model: torch.nn.Module, layer_class: type) -> torch.nn.Module:
    """``model`` with every DCN layer running ``layer_class``'s code (same parameters and attributes)."""
    for module in model.modules():
        if isinstance(module, ModulatedDeformConv2d):
            module.__class__ = layer_class
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resdcn_18")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--data", help="a data set for the loading figure (default: synthetic 640x480 images)")
    parser.add_argument("--old", help="a deform_conv.py whose ModulatedDeformConv2d replaces the model's DCNs in a "
                                      "copy stepped in alternation (see bench_deform_conv.py)")
    parser.add_argument("--vs", help="another architecture stepped in alternation on the same batches")
    parser.add_argument("--channels-last", action="store_true",
                        help="also step a channels-last copy of the model (same weights, same batch) in alternation")
    args = parser.parse_args()
    torch.manual_seed(0)

    tmp = tempfile.TemporaryDirectory()
    spec = args.data or str(make_synthetic_dataset(tmp.name, num_train=64, num_val=1, image_size=(640, 480))["train_ann"])
    source = open_dataset(spec)
    task = CtdetTask(num_classes=len(source.class_names))
    dataset = TrainDataset(source, task, (args.size, args.size))
    n = min(len(dataset), 48)
    dataset[0]
    cv2.setNumThreads(1)  # as in a DataLoader worker
    start = time.perf_counter()
    items = [dataset[i % len(dataset)] for i in range(n)]
    load_rate = n / (time.perf_counter() - start)
    cv2.setNumThreads(-1)
    print(f"data loading: {load_rate:.1f} images/s per worker ({Path(spec).name}, {args.size}x{args.size}, "
          f"full augmentation + {task.num_classes}-class targets)")

    model = build_model(args.arch, task.heads()).train()
    models = {"": model}
    if args.old:  # the same weights with another DCN implementation, stepped in alternation
        models["old DCN: "] = with_layer_class(copy.deepcopy(model), load_layer_class(args.old))
    if args.channels_last:
        models["channels-last: "] = copy.deepcopy(model).to(memory_format=torch.channels_last)
    archs = {}
    if args.vs:
        archs[f"{args.vs}: "] = args.vs
        models[f"{args.vs}: "] = build_model(args.vs, task.heads()).train()
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    batch = collate([items[i % n] for i in range(args.batch)])
    inputs = {k: batch["input"].contiguous(memory_format=torch.channels_last) if k == "channels-last: "
              else batch["input"] for k in models}
    parts = {k: {"forward": [], "loss": [], "backward": [], "optimizer": []} for k in models}
    for step in range(args.steps + 1):
        for key, net in models.items():
            t0 = time.perf_counter()
            outputs = net(inputs[key])
            t1 = time.perf_counter()
            loss, _ = task.loss(outputs, batch)
            t2 = time.perf_counter()
            optimizers[key].zero_grad()
            loss.backward()
            t3 = time.perf_counter()
            optimizers[key].step()
            t4 = time.perf_counter()
            if step:  # the first step warms up allocators
                for name, seconds in zip(parts[key], (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    parts[key][name].append(seconds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rates = {}
    for key in models:
        medians = {name: statistics.median(times) for name, times in parts[key].items()}
        step_s = sum(medians.values())
        rate = rates[key] = args.batch / step_s
        print(f"{key}training: {archs.get(key, args.arch)} batch {args.batch} at {args.size} "
              f"({torch.get_num_threads()} threads): {rate:.2f} images/s (median step {step_s:.2f} s), "
              f"peak RSS {peak:.2f} GiB")
        for name, seconds in medians.items():
            share = 100 * seconds / step_s
            print(f"  {name:9s} {seconds * 1e3:8.1f} ms  {args.batch / seconds:8.1f} images/s  {share:5.1f}%")
    print(f"one loading worker supplies {load_rate / rates['']:.1f}x what training consumes")


if __name__ == "__main__":
    main()
