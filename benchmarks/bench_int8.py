"""int8 (static QDQ, onnxruntime) vs fp32 onnxruntime on the CPU: latency, and the AP a trained model keeps.

Latency (random weights, COCO heads; calibrated on a few synthetic images): export each architecture at a
fixed size with each DCN form (``--dcn-ops``: DeformConv nodes or the gather form; either stays float), quantise,
then time both sessions at batch 1 in alternating rounds (same thread count), medians:

    PYTHONPATH=src python benchmarks/bench_int8.py --archs resdcn_18 dla_34 --size 512 --threads 2

AP (``--ap``): export each checkpoint (its configured input size), quantise it on ``--calib`` (a folder of
images or a data set), run both ``.onnx`` files through the shared evaluator on an ``OnnxRunner`` on every image of ``--val``
and score them with pycocotools (``--methods`` and ``--exclude-sets`` compare quantisation settings).
``--holdout N`` scores only every N-th image of ``--val`` and calibrates on the others (the split ``--train``
trains on). The demo model and a raccoon model:

    python -c "from centernet.app.demo import run_demo; run_demo('/tmp/int8_demo')"
    PYTHONPATH=src python benchmarks/bench_int8.py --ap /tmp/int8_demo/best.pth \\
        --val /tmp/int8_demo/data/annotations/instances_val.json --calib /tmp/int8_demo/data/train
    PYTHONPATH=src python benchmarks/bench_int8.py --train ../shared/data/raccoon_voc --out /tmp/raccoon \\
        --arch dla_tiny --size 192 --epochs 30 --holdout 5 --threads 1
    PYTHONPATH=src python benchmarks/bench_int8.py --ap /tmp/raccoon/best.pth --val ../shared/data/raccoon_voc \\
        --holdout 5
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from centernet.app.builders import eval_settings, model_from_config, open_source, set_classes, task_from_config
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset, read_image
from centernet.data.sample import DetectionSource, Subset
from centernet.engine.evaluator import evaluate
from centernet.export.onnx import META_DCN_OP, OnnxRunner, export_checkpoint, export_onnx, read_metadata
from centernet.export.quantize import DEFAULT_EXCLUDE, quantize_onnx
from timing import median_seconds


def latency(arch: str, size: int, rounds: int, threads: int, calib: Path, workdir: Path,
            exclude: list[str], dcn_op: str | None = None, clock=time.perf_counter) -> dict[str, float]:
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size = arch, (size, size)
    task = task_from_config(cfg)  # COCO: 80 classes
    torch.manual_seed(0)
    fp32 = export_onnx(model_from_config(cfg, task).eval(), task, cfg, workdir / f"{arch}.onnx", dcn_op=dcn_op)
    int8 = quantize_onnx(fp32, workdir / f"{arch}_int8.onnx", calib, num_images=8, exclude=exclude)
    runners = {"fp32": OnnxRunner(fp32, threads=threads), "int8": OnnxRunner(int8, threads=threads)}
    x = torch.randn(1, 3, size, size)
    ref, out = runners["fp32"](x), runners["int8"](x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):  # alternate short rounds so that a noisy neighbour hurts both
        for name, runner in runners.items():
            times[name].append(1000 * median_seconds(lambda: runner(x), 5, 1, clock)[0])
    return {"form": read_metadata(fp32)[META_DCN_OP],
            "fp32_ms": statistics.median(times["fp32"]), "int8_ms": statistics.median(times["int8"]),
            "hm_diff": float((ref["hm"] - out["hm"]).abs().max()),
            "fp32_mb": fp32.stat().st_size / 2**20, "int8_mb": int8.stat().st_size / 2**20}


def onnx_metrics(path: Path, source: DetectionSource) -> dict[str, float]:
    """The task scorer's metrics of an exported model, evaluated through onnxruntime by the shared evaluator."""
    runner = OnnxRunner(path)
    task = task_from_config(runner.config)
    return evaluate(runner, task, source, eval_settings(runner.config), progress=False).metrics


def split(source: DetectionSource, holdout: int) -> tuple[DetectionSource, DetectionSource]:
    """(every ``holdout``-th sample, the others); holdout 0: (source, source)."""
    if holdout <= 0:
        return source, source
    held = [i for i in range(len(source)) if i % holdout == 0]
    return Subset(source, held), Subset(source, [i for i in range(len(source)) if i % holdout])


def ap_rows(checkpoint: Path, val: DetectionSource, calib, workdir: Path, methods: list[str],
            exclude_sets: list[list[str]], num_images: int) -> None:
    fp32 = export_checkpoint(checkpoint, workdir / f"{checkpoint.parent.name}_fp32.onnx")
    base = onnx_metrics(fp32, val)
    print(f"{checkpoint}: {len(val)} images; fp32 AP {100 * base['AP']:.2f}  AP50 {100 * base['AP50']:.2f}",
          flush=True)
    for method in methods:
        for exclude in exclude_sets:
            int8 = quantize_onnx(fp32, workdir / f"{checkpoint.parent.name}_int8.onnx", calib, num_images,
                                 method=method, exclude=exclude)
            m = onnx_metrics(int8, val)
            print(f"  int8 {method:10s} exclude {','.join(exclude) or '-':16s} AP {100 * m['AP']:.2f} "
                  f"({100 * (m['AP'] - base['AP']):+.2f})  AP50 {100 * m['AP50']:.2f} "
                  f"({100 * (m['AP50'] - base['AP50']):+.2f})", flush=True)


def train_holdout(data: str, out: str, arch: str, size: int, epochs: int, holdout: int, lr: float) -> None:
    """Train a ctdet model (the CPU preset's settings, ``epochs`` of Adam at ``lr``) on all but every
    ``holdout``-th image of ``data``."""
    from centernet.engine.trainer import Trainer
    from centernet.presets import get_preset

    source = open_source(data)
    val, train = split(source, holdout)
    cfg = get_preset("ctdet_cpu_small")
    cfg.model.arch, cfg.data.input_size = arch, (size, size)
    cfg.train.out_dir, cfg.train.epochs, cfg.train.lr = out, epochs, lr
    cfg.train.lr_steps = (int(epochs * 0.75), int(epochs * 0.93))
    cfg.train.val_interval = max(epochs // 2, 1)
    set_classes(cfg, source)
    task = task_from_config(cfg)
    Trainer(cfg, model_from_config(cfg, task), task, train, val, progress=False).fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resdcn_18", "dla_34"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of 5 timed runs each")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE), help="nodes kept float")
    parser.add_argument("--dcn-ops", nargs="+", default=["deformconv", "gather"], choices=["deformconv", "gather"],
                        help="DCN forms exported (latency; an architecture without DCNs runs once)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="CPU seconds instead of wall time (with --threads 1: not inflated by other processes)")
    parser.add_argument("--ap", nargs="+", type=Path, metavar="CHECKPOINT", help="AP of fp32 vs int8 instead")
    parser.add_argument("--val", help="data to score on (--ap)")
    parser.add_argument("--calib", help="calibration images: folder or data set (default: the non-held-out --val)")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--holdout", type=int, default=0, help="score every N-th image of --val only")
    parser.add_argument("--methods", nargs="+", default=["minmax"], help="calibration methods to compare")
    parser.add_argument("--exclude-sets", nargs="+", help="comma-separated exclude lists to compare, '-' for none")
    parser.add_argument("--train", help="train a model on DATA minus the --holdout images, then stop")
    parser.add_argument("--out", default="/tmp/int8_holdout", help="run folder of --train")
    parser.add_argument("--arch", default="dla_tiny")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (--train)")
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time counts every thread's time (spinning included): use it with --threads 1")
    clock = time.process_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.train:
            train_holdout(args.train, args.out, args.arch, args.size, args.epochs, args.holdout, args.lr)
        elif args.ap:
            if not args.val:
                parser.error("--ap needs --val")
            val, rest = split(open_source(args.val), args.holdout)
            calib = args.calib or rest
            sets = [[] if s == "-" else s.split(",") for s in args.exclude_sets] if args.exclude_sets \
                else [args.exclude]
            for checkpoint in args.ap:
                ap_rows(checkpoint, val, calib, workdir, args.methods, sets, args.calib_images)
        else:
            calib = Path(args.calib) if args.calib else make_synthetic_dataset(
                workdir / "calib", num_train=8, num_val=1, image_size=(args.size, args.size))["train_images"]
            print(f"onnxruntime int8 (QDQ, per-channel, exclude {args.exclude}) vs fp32, {args.threads} threads "
                  f"({'CPU' if args.cpu_time else 'wall'} time), "
                  f"{args.size}x{args.size}, batch 1, median of {args.rounds} alternating rounds of 5")
            print(f"{'arch':12s} {'DCNs':>10s} {'fp32 ms':>8s} {'int8 ms':>8s} {'speed-up':>9s} {'hm |diff|':>10s} "
                  f"{'MB':>12s}")
            for arch in args.archs:
                for dcn_op in args.dcn_ops:
                    r = latency(arch, args.size, args.rounds, args.threads, calib, workdir, args.exclude, dcn_op,
                                clock)
                    print(f"{arch:12s} {r['form']:>10s} {r['fp32_ms']:8.1f} {r['int8_ms']:8.1f} "
                          f"{r['fp32_ms'] / r['int8_ms']:8.2f}x {r['hm_diff']:10.2e} "
                          f"{r['fp32_mb']:5.1f}->{r['int8_mb']:4.1f}", flush=True)
                    if r["form"] == "none":
                        break


if __name__ == "__main__":
    main()
