"""COCO scale: a synthetic data set of COCO train2017's size (118,287 images, 860,001 boxes, every image a link
to one JPEG; tests/helpers/coco_scale.py), and what it costs to open, to hold, to check and to start training on.

* open: ``json.load`` of the annotation file against ``open_dataset`` parsing it (cache off) and reading its
  cache (see centernet.data.cache), each in a fresh process, interleaved over ``--rounds``; the seconds, the
  resident memory after opening and the peak (VmHWM);
* workers: how much each of 2 DataLoader workers' private memory grows per sample it reads (3,000 samples each
  after a warm-up of 300, at random indices, read as the training pipeline reads them), with the samples kept
  as today (a SampleTable) and as a list of Sample objects (the layout before), each in fresh processes,
  interleaved;
* check: the image check (exists, decodes, size, complete) with an empty cache (cold), then again (warm),
  and its cost per image, one thread: a decode, a header and end marker, a ``stat``;
* train: ``centernet train --train <root> --split train2017 --epochs 1 --set train.max_steps_per_epoch=5``
  (a tiny model at 128x128, batch 4, 2 workers; the caches as the parts before left them, warm unless
  ``check`` was skipped): the seconds until the first step's progress line and until the command ends.

Figures are medians over the rounds; the machine's load moves them, the ratios less.

    python benchmarks/bench_scale.py                                  # the full size, under $TMPDIR
    python benchmarks/bench_scale.py --images 20000 --boxes 145000 --rounds 3 --skip check train
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers.coco_scale import COCO_BOXES, COCO_IMAGES, make_coco_scale, worker_growth  # noqa: E402


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


# ------------------------------------------------------------------------------------------ child processes
def child_open(mode: str, ann: str) -> dict:
    """One open in this (fresh) process: ``json`` (json.load), ``parse`` or ``cached`` (open_dataset)."""
    import warnings

    if mode == "json":
        start = time.perf_counter()
        with open(ann) as f:
            data = json.load(f)
        seconds = time.perf_counter() - start
    else:
        from centernet.data import open_dataset

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = open_dataset(ann)
        seconds = time.perf_counter() - start
    out = {"seconds": seconds, "rss_mb": _status_kb("VmRSS") / 1024, "peak_mb": _status_kb("VmHWM") / 1024}
    del data
    return out


def child_workers(ann: str, layout: str, seed: int, samples: int) -> dict:
    """Worker growth per sample read (bytes) with the samples as a ``table`` or as a ``list`` of Samples."""
    from centernet.data import open_dataset
    from centernet.data.sample import SampleTable

    source = open_dataset(ann)
    table = source.samples
    assert isinstance(table, SampleTable)
    if layout == "list":
        source.samples = list(table)
    return {"growth": worker_growth(source, workers=2, samples=samples, seed=seed), "table_mb": table.nbytes() / 2**20}


def child_check(root: str) -> dict:
    """The image check of the training split twice: the first with whatever the cache holds."""
    from centernet.data import open_dataset
    from centernet.data.verify import verify_source

    source = open_dataset(root, split="train2017")
    out = {}
    for name in ("first", "second"):
        start = time.perf_counter()
        report = verify_source(source, "training", progress=False)
        out[name] = {"seconds": time.perf_counter() - start, "images": report.checked,
                     "remembered": report.remembered, "errors": len(report.errors)}
    return out


def run_child(*args: str, env: dict | None = None) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, check=False)
    if result.returncode:
        raise SystemExit(f"child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ the parts
def bench_open(ann: Path, cache_dir: Path, rounds: int) -> None:
    modes = {"json": {}, "parse": {"CENTERNET_CACHE": "off"}, "cached": {"CENTERNET_CACHE": str(cache_dir)}}
    run_child("open", "cached", str(ann), env=modes["cached"])  # writes the cache
    got: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(rounds):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for mode in order:
            got[mode].append(run_child("open", mode, str(ann), env=modes[mode]))
    med = {m: {k: statistics.median(x[k] for x in runs) for k in runs[0]} for m, runs in got.items()}
    for mode, label in (("json", "json.load"), ("parse", "open_dataset, no cache"), ("cached", "open_dataset, cached")):
        m = med[mode]
        print(f"open  {label:<24} {m['seconds']:7.2f} s  ({m['seconds'] / med['json']['seconds']:.2f}x json.load)  "
              f"resident {m['rss_mb']:6.0f} MB  peak {m['peak_mb']:6.0f} MB")


def bench_workers(ann: Path, cache_dir: Path, rounds: int, samples: int) -> None:
    """Each layout in fresh processes (what one leaves in the interpreter would move the other's figures)."""
    got: dict[str, list[dict]] = {"table": [], "list": []}
    table_mb = 0.0
    for r in range(rounds):
        for layout in (("table", "list") if r % 2 == 0 else ("list", "table")):
            out = run_child("workers", str(ann), layout, str(r), str(samples), env={"CENTERNET_CACHE": str(cache_dir)})
            got[layout] += out["growth"]
            table_mb = out["table_mb"]
    med = {layout: {key: statistics.median(g[key] for g in runs) for key in ("rate", "mean")}
           for layout, runs in got.items()}
    print(f"workers: private memory growth per sample read, 2 workers x {samples} samples after 300, "
          f"{rounds} rounds (rate: median of 6 parts; mean: over all, one-time costs included):")
    for layout, label in (("table", "SampleTable"), ("list", "list of Samples (before)")):
        print(f"  {label:<26} rate {med[layout]['rate']:7.0f} B   mean {med[layout]['mean']:7.0f} B")
    print(f"  the table's arrays: {table_mb:.1f} MB; rate ratio {med['list']['rate'] / max(med['table']['rate'], 1):.0f}x")


def bench_check(root: Path, cache_dir: Path) -> None:
    assert not (cache_dir / "image_checks").exists()
    out = run_child("check", str(root), env={"CENTERNET_CACHE": str(cache_dir)})
    first, second = out["first"], out["second"]
    print(f"check: cold {first['seconds']:.1f} s ({first['images']} images, {first['remembered']} remembered), "
          f"warm {second['seconds']:.2f} s ({second['remembered']} remembered): "
          f"{first['seconds'] / second['seconds']:.0f}x")
    per_image(root)


def per_image(root: Path, count: int = 5000) -> None:
    """What the check costs per image, one thread, on ``count`` of the set's files (all one JPEG): a decode as
    ``data.verify=full`` does it, the header and end marker as ``"headers"`` reads them, and a ``stat``."""
    from centernet.data.io import decoded_size, stated_size, truncated

    folder = root / "train2017"
    paths = [str(folder / name) for name in sorted(os.listdir(folder))[:count]]
    parts = {"decode": decoded_size, "header and end marker": lambda p: (stated_size(p), truncated(p)),
             "stat": os.stat}
    costs = []
    for name, fn in parts.items():
        start = time.perf_counter()
        for path in paths:
            fn(path)
        costs.append(f"{name} {(time.perf_counter() - start) / len(paths) * 1e3:.3f} ms")
    print(f"check per image ({len(paths)} images, one thread): " + ", ".join(costs))


def bench_train(root: Path, cache_dir: Path) -> None:
    warm = (cache_dir / "image_checks").is_dir()
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "centernet.cli", "train", "--train", str(root), "--split", "train2017",
               "--epochs", "1", "--arch", "resdcn_18_tiny", "--pretrained", "none", "--batch-size", "4",
               "--workers", "2", "--log-every", "1", "--out", str(Path(out) / "run"),
               "--set", "train.max_steps_per_epoch=5", "data.input_size=[128,128]", "train.device=cpu"]
        start = time.perf_counter()
        first = None
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "CENTERNET_CACHE": str(cache_dir)})
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if first is None and "step 1/" in line:
                first = time.perf_counter() - start
        proc.wait()
        total = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit("train failed:\n" + "".join(lines[-30:]))
    print(f"train: first step done after {first:.1f} s, 5 steps and the command done after {total:.1f} s "
          f"(a tiny model at 128x128; image checks {'remembered' if warm else 'done now: a first start'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "centernet_coco_scale"),
                        help="where the set is written (reused when it is there with the same sizes)")
    parser.add_argument("--images", type=int, default=COCO_IMAGES)
    parser.add_argument("--boxes", type=int, default=COCO_BOXES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=3000, help="samples each worker reads after its warm-up")
    parser.add_argument("--skip", nargs="*", default=[], choices=["open", "workers", "check", "train"])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        out = {"open": lambda: child_open(rest[0], rest[1]),
               "workers": lambda: child_workers(rest[0], rest[1], int(rest[2]), int(rest[3])),
               "check": lambda: child_check(rest[0])}[kind]()
        print(json.dumps(out))
        return
    root = Path(args.root)
    start = time.perf_counter()
    ann = make_coco_scale(root, args.images, args.boxes)
    print(f"data: {args.images:,} images, {args.boxes:,} boxes, {ann.stat().st_size / 1e6:.0f} MB of json "
          f"({time.perf_counter() - start:.0f} s to make or find) in {root}")
    with tempfile.TemporaryDirectory() as cache:
        cache_dir = Path(cache)
        if "open" not in args.skip:
            bench_open(ann, cache_dir, args.rounds)
        if "workers" not in args.skip:
            bench_workers(ann, cache_dir, args.rounds, args.samples)
        if "check" not in args.skip:
            bench_check(root, cache_dir)
        if "train" not in args.skip:
            bench_train(root, cache_dir)


if __name__ == "__main__":
    main()
