"""Prediction throughput: single-image latency next to images/s at batch 1 and batch N, with images read
and prepared in DataLoader workers (``Predictor.predictions``, what ``centernet predict --batch`` runs).

Latency: the median of ``predictor(image)`` on an image already in memory (preparation + network + decode).
Throughput: every file of the folder from disk through the workers and the network, drawing and writing
excluded; each setting runs ``--rounds`` times, alternating, and the median round is reported.

    PYTHONPATH=src python benchmarks/bench_predict.py --arch resdcn_18 --size 512 --images ../shared/data/coco128
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from centernet.app.builders import eval_settings, model_from_config, task_from_config
from centernet.config import ExperimentConfig
from centernet.data.io import read_image
from centernet.engine.inputs import expand_inputs
from centernet.engine.predictor import Predictor
from timing import median_seconds

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128"


def build(arch: str, size: int, device: str) -> Predictor:
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size = arch, (size, size)
    task = task_from_config(cfg)  # COCO: 80 classes
    torch.manual_seed(0)
    return Predictor(model_from_config(cfg, task), task, eval_settings(cfg), [str(i) for i in range(80)],
                     device=device)


def throughput(predictor: Predictor, files: list[Path], batch: int, workers: int) -> float:
    start = time.perf_counter()
    count = sum(1 for _, pred in predictor.predictions(files, batch, workers) if pred is not None)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resdcn_18")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", default=str(DEFAULT_IMAGES), help="a folder (searched for images) or a glob")
    parser.add_argument("--limit", type=int, default=48, help="images per throughput round")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help="latency calls")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.images)
    pattern = str(root / "**" / "*.jpg") if root.is_dir() else args.images
    files = [p for p in expand_inputs([pattern]) if p.suffix.lower() in (".jpg", ".jpeg", ".png")][: args.limit]
    predictor = build(args.arch, args.size, args.device)
    image = read_image(files[0])
    with torch.no_grad():
        latency, best = median_seconds(lambda: predictor(image), args.runs, warmup=2)
    rates: dict[int, list[float]] = {1: [], args.batch: []}
    throughput(predictor, files[: args.batch * 2], args.batch, args.workers)  # warm-up
    for _ in range(args.rounds):
        for batch in rates:
            rates[batch].append(throughput(predictor, files, batch, args.workers))
    print(f"{args.arch} at {args.size}x{args.size}, {args.device}, {args.threads} threads, {args.workers} workers, "
          f"{len(files)} images ({root.name}), median of {args.rounds} rounds")
    print(f"single image latency  {1000 * latency:8.1f} ms  (best {1000 * best:.1f} ms, "
          f"{1 / latency:.2f} images/s)")
    for batch, values in rates.items():
        print(f"batch {batch:<2d} throughput     {statistics.median(values):8.2f} images/s  "
              f"(rounds {', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(rates[args.batch]) / statistics.median(rates[1])
    print(f"batch {args.batch} / batch 1: {ratio:.2f}x;  batch 1 / single-image latency: "
          f"{statistics.median(rates[1]) * latency:.2f}x")


if __name__ == "__main__":
    main()
