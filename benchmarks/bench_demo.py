"""The whole demo (``centernet demo``: synthetic shapes, the ``ctdet_cpu_small`` preset at 128x128, evaluation,
picture) timed end to end, with the recipe's knobs exposed for trying shorter schedules.

    python benchmarks/bench_demo.py [--epochs 16] [--num-train 512] [--out /tmp/bench_demo] [--plain-layout]

Prints the seconds in all and of training, the images/s of every epoch (from the run's results.csv) and the AP /
AP50 on the 64 synthetic validation images.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
from pathlib import Path

from centernet.app.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    parser.add_argument("--num-train", type=int, default=512, help="synthetic training images (the demo: 512)")
    parser.add_argument("--out", help="run folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--plain-layout", action="store_true",
                        help="train in the plain (NCHW) memory layout instead of the architecture's preferred one")
    args = parser.parse_args()
    if args.plain_layout:
        from centernet.engine import trainer

        trainer.prefers_channels_last = lambda arch, training=False: False
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_demo_"))
    try:
        summary = run_demo(out, epochs=args.epochs, num_train=args.num_train, progress=False)
        with open(out / "results.csv") as f:
            rates = [round(float(row["images_per_s"]), 1) for row in csv.DictReader(f)]
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"seconds": summary["seconds"], "train_seconds": summary["train_seconds"],
                      "AP": summary["AP"], "AP50": summary["AP50"], "epochs": len(rates),
                      "num_train": args.num_train}))
    print(f"images/s per epoch: {rates}")


if __name__ == "__main__":
    main()
