"""Small-data detection from scratch on a CPU: the 160 raccoon photos (``raccoon_voc``), several random
128 / 32 splits, mean and spread of the validation AP50 and AP (after the last epoch, not the best one) against
CPU-minutes, for the ``ctdet_cpu_small`` preset as it is (the baseline, first) and for recipes with the
training options on (``train.schedule``, ``train.warmup_epochs``, ``train.ema``, ``task.options``, ...).

Each training runs in its own process, one at a time; CPU-minutes are that process's user + system time
(its data-loading workers included, and the few seconds of the flip-tested evaluation
after training) / 60.

    python benchmarks/bench_small_data.py                               # 128 px, 40 epochs, seeds 0 1 2
    python benchmarks/bench_small_data.py --size 256 --epochs 120 --seeds 0 1 2 3 4
    python benchmarks/bench_small_data.py --recipe mine="train.schedule=cosine train.ema=0.999"
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "raccoon_voc"
#: name -> assignments on top of the preset ("baseline": the preset as it is)
RECIPES = {
    "baseline": "",
    "recipe": "train.schedule=cosine train.warmup_epochs=2 train.ema=0.999",
    # small-data augmentation (centernet.data.mix); select with --only
    "mosaic": "data.mosaic=0.5",
    "multiscale": "data.multiscale=[0.75,1.25]",
    "mosaic_ms": "data.mosaic=0.5 data.multiscale=[0.75,1.25]",
    "mixup": "data.mixup=0.3",
    # ctdet_cpu_photos before its mosaic (on top of ctdet_cpu_small)
    "giou_ema99": "train.schedule=cosine train.warmup_epochs=2 train.ema=0.99 task.options={\"size_loss\":\"giou\"}",
}
PHOTOS = RECIPES["giou_ema99"]
RECIPES.update({  # on top of that recipe; photos_mosaic with --epochs 120 is the ctdet_cpu_photos preset
    "photos_color_crop": PHOTOS + " data.color_aug=true data.random_crop=true",
    "photos_mosaic": PHOTOS + " data.mosaic=0.5",
    "photos_head64": PHOTOS + " model.head_conv=64",
    "photos_head64_ltrb10": PHOTOS + " model.head_conv=64 task.weights={\"ltrb\":10}",
    # AdamW's decoupled weight decay with RTMDet's 0.05, with the mosaic
    "photos_mosaic_adamw": PHOTOS + " data.mosaic=0.5 train.optimizer=adamw train.weight_decay=0.05",
})


def make_splits(data: Path, folder: Path, seeds: list[int], val: int = 32) -> None:
    """VOC split files ``train_s<seed>`` / ``val_s<seed>`` in a copy of ``data`` made of links."""
    from centernet.app.builders import open_source
    from centernet.data.splits import make_split

    for name in ("annotations", "images"):
        link = folder / name
        if not link.exists():
            link.symlink_to(data / name)
    source = open_source(str(folder))
    for seed in seeds:
        make_split(folder, source, val / len(source), seed, names=(f"train_s{seed}", f"val_s{seed}"),
                   exist_ok=True)


def train_one(folder: str, seed: int, size: int, epochs: int, assignments: str, out: str) -> dict:
    """One training run in this process; returns the last validation's metrics."""
    import torch

    from centernet.app import runs
    from centernet.config import override_training
    from centernet.presets import get_preset

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    base = [f"data.train={folder}", f"data.val={folder}", f"data.train_split=train_s{seed}",
            f"data.val_split=val_s{seed}", f"data.input_size=[{size},{size}]", f"train.epochs={epochs}",
            f"train.val_interval={epochs}", f"train.out_dir={out}", "train.flops=false", "train.reports=false",
            "data.verify=false"]
    cfg = override_training(get_preset("ctdet_cpu_small"), base + assignments.split())
    result = runs.train(cfg, explicit_out=True, exist_ok=True, progress=False)
    last = result["history"][-1]
    row = {"AP": last.get("val_AP"), "AP50": last.get("val_AP50"), "AP75": last.get("val_AP75")}
    if not cfg.data.test_flip:  # the same saved model, flip-tested (the image and its mirror)
        loaded = runs.load_model(str(Path(out) / "last.pth"), progress=False)
        flipped = runs.evaluate(loaded, folder, split=f"val_s{seed}", flip=True, progress=False).metrics
        row.update(flip_AP=flipped.get("AP"), flip_AP50=flipped.get("AP50"))
    return row


def child_cpu_minutes() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) / 60


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipe", action="append", default=[], metavar="NAME=ASSIGNMENTS",
                   help="a recipe to measure after the baseline (default: the built-in 'recipe'); repeatable")
    p.add_argument("--only", nargs="+", help="measure only these recipes, in this order (names of RECIPES or of "
                   "--recipe; e.g. skip the baseline)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each training")
    p.add_argument("--json", help="append one line per run to this file")
    p.add_argument("--one", nargs=5, help=argparse.SUPPRESS)  # folder seed size epochs out (child process)
    args = p.parse_args()
    if args.one:
        folder, seed, size, epochs, out = args.one
        print("RESULT " + json.dumps(train_one(folder, int(seed), int(size), int(epochs),
                                               os.environ.get("BENCH_ASSIGNMENTS", ""), out)))
        return
    recipes = {"baseline": RECIPES["baseline"]}
    extra = dict(r.split("=", 1) for r in args.recipe) if args.recipe else {"recipe": RECIPES["recipe"]}
    recipes.update(extra)
    if args.only:  # any named recipe: the built-in ones and those given with --recipe
        known = {**RECIPES, **extra}
        unknown = [k for k in args.only if k not in known]
        if unknown:
            sys.exit(f"unknown recipe(s) {unknown}; known: {sorted(known)}")
        recipes = {k: known[k] for k in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "raccoon"
        folder.mkdir()
        make_splits(Path(args.data), folder, args.seeds)
        table: dict[str, list[dict]] = {}
        for name, assignments in recipes.items():
            for seed in args.seeds:
                before, start = child_cpu_minutes(), time.perf_counter()
                env = dict(os.environ, BENCH_ASSIGNMENTS=assignments, BENCH_THREADS=str(args.threads),
                           OMP_NUM_THREADS=str(args.threads))
                out = subprocess.run([sys.executable, __file__, "--one", str(folder), str(seed), str(args.size),
                                      str(args.epochs), str(Path(tmp) / f"run_{name}_{seed}")],
                                     env=env, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{name} seed {seed} failed:\n{out.stderr[-3000:]}")
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
                row = {"recipe": name, "seed": seed, "size": args.size, "epochs": args.epochs,
                       **json.loads(line[7:]), "cpu_min": child_cpu_minutes() - before,
                       "wall_min": (time.perf_counter() - start) / 60, "assignments": assignments}
                table.setdefault(name, []).append(row)
                flip = f"  flip-tested AP50 {row['flip_AP50']:.3f}  AP {row['flip_AP']:.3f}" if "flip_AP" in row else ""
                print(f"{name:<12} seed {seed}  AP50 {row['AP50']:.3f}  AP {row['AP']:.3f}{flip}  "
                      f"{row['cpu_min']:.1f} CPU-min ({row['wall_min']:.1f} min wall)", flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(row) + "\n")
        print(f"\n{args.size} px, {args.epochs} epochs, splits {args.seeds} (128 train / 32 val)")
        print(f"{'recipe':<12} {'AP50':>15} {'AP':>15} {'CPU-min':>8}")
        for name, rows in table.items():
            flip = (f"   flip-tested {spread([r['flip_AP50'] for r in rows])} / {spread([r['flip_AP'] for r in rows])}"
                    if all("flip_AP" in r for r in rows) else "")
            print(f"{name:<12} {spread([r['AP50'] for r in rows]):>15} {spread([r['AP'] for r in rows]):>15} "
                  f"{statistics.mean(r['cpu_min'] for r in rows):>8.1f}{flip}")


if __name__ == "__main__":
    main()
