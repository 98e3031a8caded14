"""Command line: centernet train | eval | analyze | predict | export | demo | presets (see --help).

Each command has its own ``add_<command>_args``; the work happens in ``cmd_<command>``. Nothing here names
a task: task choices come from the task registry, data needs from the task class."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ExperimentConfig, override

DEFAULT_PRESET = "ctdet_resdcn18_coco"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help="image folder when the annotations do not follow their format's layout")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: CUDA when available)")
    p.add_argument("--workers", type=int, default=2, help="data loading processes")


def _scales(text: str) -> tuple[float, ...]:
    from .engine.evaluator import parse_scales

    try:
        return parse_scales(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_test_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flip", action="store_true", help="flip test: the image and its mirror")
    p.add_argument("--scales", type=_scales, default=(1.0,),
                   help="multi-scale test, e.g. 0.5,0.75,1,1.25,1.5 (merged with soft-NMS)")
    p.add_argument("--keep-res", action="store_true", help="test at the padded original resolution")


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=DEFAULT_PRESET, help="paper configuration (see `centernet presets`)")
    p.add_argument("--config", help="a config.json written by an earlier run (instead of --preset)")
    p.add_argument("--train", help="training annotations (COCO json, VOC or YOLO folder)")
    p.add_argument("--val", help="validation annotations, scored every train.val_interval epochs")
    p.add_argument("--val-images", help="validation image folder, when not the format's layout")
    p.add_argument("--arch", help="architecture, e.g. resdcn_18, dla_34, hourglass")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--out", help="run folder for logs and checkpoints (default: a new runs/train, runs/train2, ...)")
    p.add_argument("--exist-ok", action="store_true", help="let --out replace a run already in that folder")
    p.add_argument("--pretrained", help="ImageNet backbone weights (.pth) to start from")
    p.add_argument("--resume", help="continue a run from its checkpoint (in the checkpoint's folder; --epochs, "
                                    "--lr and the like apply, changes of the model or data geometry are refused)")
    p.add_argument("--sync-bn", action="store_true",
                   help="synchronise batch-norm statistics across processes (under torchrun)")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field, e.g. train.val_interval=1 data.input_size=[384,384]")
    _add_data_args(p)


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="a centernet checkpoint or an exported .onnx model "
                                                 "(omit with --oracle)")
    p.add_argument("--data", required=True, help="annotations to score against")
    _add_test_args(p)
    p.add_argument("--oracle", action="store_true",
                   help="score the ground truth through the real decode path (no checkpoint needed)")
    p.add_argument("--task", help="task of --oracle (default: the task the data suits, e.g. keypoints -> "
                                  "multi_pose)")
    p.add_argument("--json", help="write the metrics here as json")
    p.add_argument("--results-dir", help="write the results here in the data set's own format, when its "
                                         "scorer has one (e.g. KITTI label files, one per image)")
    _add_data_args(p)


def add_analyze_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="annotations to score against")
    p.add_argument("--json", help="write the rows here as json")
    _add_data_args(p)


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="model", help="a centernet checkpoint, or an exported .onnx model")
    p.add_argument("input", help="image file, folder of images or video file")
    p.add_argument("--out", default="predictions", help="folder for drawn images/video and detections.json")
    p.add_argument("--score", type=float, default=0.3, help="draw and save detections above this score")
    p.add_argument("--heatmap", action="store_true", help="overlay the predicted heatmap")
    p.add_argument("--calib", help="KITTI calibration file whose camera matrix P2 every image gets (tasks "
                                   "that lift detections to 3D need it)")
    _add_test_args(p)
    p.add_argument("--backend", choices=("auto", "pytorch", "onnxruntime"), default="auto",
                   help="auto: onnxruntime for .onnx files, else pytorch")
    p.add_argument("--device", default="auto")


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("--out", default="model.onnx", help="the .onnx file to write")
    p.add_argument("--decode", action="store_true",
                   help="decode in the graph: output detection rows [B, K, D] in output-map pixels")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (16 or newer)")
    p.add_argument("--dynamic", action="store_true", help="dynamic input height and width")
    p.add_argument("--size", help="input W,H to trace at (default: the config's input size)")


def add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run folder (data, checkpoints, pictures)")
    p.add_argument("--epochs", type=int, help="override the preset's epoch count")
    p.add_argument("--device", default="auto")


COMMAND_HELP = {
    "train": ("train a model (from a preset, overridable field by field)", add_train_args),
    "eval": ("metrics of a checkpoint or ONNX model on a data set", add_eval_args),
    "analyze": ("error analysis: AP with ground-truth maps substituted", add_analyze_args),
    "predict": ("detect objects in an image, a folder of images or a video", add_predict_args),
    "export": ("export a checkpoint to ONNX (standard ops only)", add_export_args),
    "demo": ("synthetic shapes: generate, train a small CPU model, evaluate, draw", add_demo_args),
    "presets": ("list the named configurations", lambda p: None),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="centernet",
        description="CenterNet detectors in pure PyTorch. Data may be a COCO json file, a PASCAL VOC folder "
                    "(annotations/*.xml + images/) or a YOLO folder (images/ + labels/).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, add_args) in COMMAND_HELP.items():
        add_args(sub.add_parser(name, help=text))
    return parser


def _device(name: str) -> str:
    from .engine.trainer import resolve_device

    return str(resolve_device(name))


def _check_classes(source, task, data: str) -> None:
    if len(source.class_names) != task.num_classes:
        raise SystemExit(f"error: {data} has {len(source.class_names)} classes, the model predicts {task.num_classes}")


def _train_assignments(args: argparse.Namespace) -> list[str]:
    """The config fields set on the command line, as ``section.key=json`` overrides (``--set`` last)."""
    given = {"data.train": args.train, "data.val": args.val, "data.train_images": args.images,
             "data.val_images": args.val_images, "model.arch": args.arch, "model.pretrained": args.pretrained,
             "train.epochs": args.epochs, "train.batch_size": args.batch_size, "train.lr": args.lr,
             "train.out_dir": args.out, "train.sync_bn": args.sync_bn or None, "data.num_workers": args.workers,
             "train.device": args.device}
    return [f"{key}={json.dumps(value)}" for key, value in given.items() if value is not None] + list(args.set)


def cmd_train(args: argparse.Namespace) -> int:
    from .builders import model_from_config, open_source, set_classes, task_from_config
    from .data.verify import verify_source
    from .engine import distributed, rundir
    from .engine.trainer import Trainer, seed_everything
    from .models.official import load_pretrained_backbone
    from .presets import get_preset

    assignments = _train_assignments(args)
    base = rundir.read_config_file(args.config) if args.config else get_preset(args.preset)
    resume = None
    if args.resume:  # the checkpoint's own config, unless --config / --preset name one (checked against it)
        named = args.config or args.preset != DEFAULT_PRESET
        cfg, resume = rundir.resume_config(args.resume, assignments, base if named else None)
    else:
        cfg = override(base, assignments)
    if not cfg.data.train:
        raise SystemExit("error: no training data: pass --train (COCO json, VOC folder or YOLO folder)")
    rundir.validate_train_config(cfg)
    distributed.init_from_env(cfg.train.device)
    train_source = open_source(cfg.data.train, cfg.data.train_images, cfg.task.name)
    val_source = open_source(cfg.data.val, cfg.data.val_images, cfg.task.name) if cfg.data.val else None
    set_classes(cfg, train_source)
    if resume is not None:
        changes = rundir.check_resume(cfg, resume)
        print(f"resuming {resume.path} at epoch {resume.payload['epoch']}"
              + (f"; {', '.join(changes)}" if changes else ""))
    else:
        explicit = bool(args.config) or rundir.out_dir_given(assignments)
        cfg.train.out_dir = str(rundir.claim_run_dir(cfg.train.out_dir, explicit, args.exist_ok))
    if cfg.data.verify and distributed.rank() == 0:
        verify_source(train_source, "training")
        if val_source is not None:
            verify_source(val_source, "validation")
    seed_everything(cfg.train.seed)  # the initial weights depend on it
    task = task_from_config(cfg)
    model = model_from_config(cfg, task)
    if cfg.model.pretrained and resume is None:
        print(load_pretrained_backbone(model, cfg.model.pretrained))
    trainer = Trainer(cfg, model, task, train_source, val_source)
    if resume is not None:
        trainer.resume(resume.path, resume.payload)
    summary = trainer.fit()
    if distributed.rank() == 0:
        print(json.dumps({"best_AP": summary["best_AP"], "out_dir": summary["out_dir"]}))
    distributed.cleanup()
    return 0


def _load_model(path: str, device: str):
    """(config, model or runner, task) of a checkpoint or an exported .onnx file."""
    from .builders import load_checkpoint, task_from_config

    if path.endswith(".onnx"):
        from .export.onnx import OnnxRunner

        runner = OnnxRunner(path)
        return runner.config, runner, task_from_config(runner.config)
    return load_checkpoint(path, device)


def cmd_eval(args: argparse.Namespace) -> int:
    from .builders import eval_settings, open_source, set_classes, task_from_config
    from .data.verify import verify_source
    from .engine.evaluator import evaluate
    from .presets import get_preset
    from .tasks import TASKS, guess_task

    device = _device(args.device)
    if args.checkpoint:
        cfg, model, task = _load_model(args.checkpoint, device)
        source = open_source(args.data, args.images, cfg.task.name)
        _check_classes(source, task, args.data)
    elif args.oracle:
        source = open_source(args.data, args.images, args.task)
        name = args.task or guess_task(source)
        cfg = get_preset(TASKS.get(name).oracle_preset) if TASKS.get(name).oracle_preset else ExperimentConfig()
        cfg.task.name = name
        set_classes(cfg, source)
        task, model = task_from_config(cfg), None
    else:
        raise SystemExit("error: give a checkpoint, or --oracle to score the ground truth")
    if cfg.data.verify:
        verify_source(source, "evaluation")  # a wrong image size would silently lower every metric
    settings = eval_settings(cfg, flip=args.flip, num_workers=args.workers, scales=args.scales)
    if args.keep_res:
        settings.input_size = None
    elif model is None and settings.input_size is None:  # the oracle needs the fixed training geometry
        settings.input_size = tuple(cfg.data.input_size)
    result = evaluate(model, task, source, settings, device, verbose=True)
    report = result.scorer.report() if result.scorer is not None else ""
    if report:
        print(report)
    print(json.dumps({k: round(v, 4) for k, v in result.metrics.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps(result.metrics, indent=2))
    if args.results_dir and result.scorer is not None:
        written = result.scorer.write(args.results_dir)
        print(f"wrote {len(written)} result files to {args.results_dir}" if written
              else f"this data set's scorer writes no result files; nothing in {args.results_dir}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .builders import eval_settings, load_checkpoint, open_source
    from .data.verify import verify_source
    from .engine.analyze import error_analysis, format_table

    device = _device(args.device)
    cfg, model, task = load_checkpoint(args.checkpoint, device)
    source = open_source(args.data, args.images, cfg.task.name)
    _check_classes(source, task, args.data)
    if cfg.data.verify:
        verify_source(source, "evaluation")
    settings = eval_settings(cfg, num_workers=args.workers)
    if settings.input_size is None:
        settings.input_size = tuple(cfg.data.input_size)
    rows = error_analysis(model, task, source, settings, device)
    print(format_table(rows, task.analysis_columns))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"name": r.name, "oracle": sorted(r.oracle), **r.metrics} for r in rows], indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .builders import load_predictor

    overrides = {"flip": args.flip, "scales": args.scales}
    if args.keep_res:
        overrides["input_size"] = None
    backend = args.backend
    if backend == "auto":
        backend = "onnxruntime" if args.checkpoint.endswith(".onnx") else "pytorch"
    if backend == "onnxruntime":
        from .export.onnx import onnx_predictor

        predictor = onnx_predictor(args.checkpoint, **overrides)
    else:
        predictor = load_predictor(args.checkpoint, _device(args.device), **overrides)
    meta = None
    if args.calib:
        from .data.kitti import read_calib

        meta = {"calib": read_calib(args.calib)}
    summary = predictor.run(args.input, args.out, args.score, args.heatmap, meta=meta)
    print(f"{summary['images']} images at {summary['images_per_s']:.1f} images/s ({backend}); "
          f"detections in {summary['json']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export.onnx import export_checkpoint, op_types

    size = None
    if args.size:
        w, h = (int(v) for v in args.size.split(","))
        size = (w, h)
    path = export_checkpoint(args.checkpoint, args.out, input_size=size, decode=args.decode, opset=args.opset,
                             dynamic=args.dynamic)
    custom = sorted(f"{d}::{o}" for d, o in op_types(path) if d not in ("", "ai.onnx"))
    print(f"wrote {path} (opset {args.opset}, {'detections' if args.decode else 'maps'}, "
          f"{'dynamic' if args.dynamic else 'fixed'} size)" + (f"; non-standard ops: {custom}" if custom else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, epochs=args.epochs, device=_device(args.device))
    print(json.dumps(summary, indent=2))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    for name in PRESETS.names():
        cfg = PRESETS.get(name)()
        t = cfg.train
        print(f"{name:24s} {cfg.task.name:10s} {cfg.model.arch:12s} input {cfg.data.input_size} "
              f"batch {t.batch_size} lr {t.lr:g} epochs {t.epochs} steps {list(t.lr_steps)}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "analyze": cmd_analyze, "predict": cmd_predict,
            "export": cmd_export, "demo": cmd_demo, "presets": cmd_presets}


def main(argv: list[str] | None = None) -> int:
    """Run a command; user errors (bad data, unknown names, mismatched checkpoints) print one line and
    return 2. Set CENTERNET_DEBUG=1 to get the traceback instead."""
    import os

    from .engine.errors import cli_warnings, is_user_error, user_message

    args = build_parser().parse_args(argv)
    try:
        with cli_warnings():
            return COMMANDS[args.command](args)
    except SystemExit as exc:  # raise SystemExit("error: ...") in a command: a user error too (exit code 2)
        if not isinstance(exc.code, str):
            raise
        print(exc.code, file=sys.stderr)
        return 2
    except Exception as err:  # user errors (engine/errors.py): DataError, checkpoint errors, a diverged run, ...
        if os.environ.get("CENTERNET_DEBUG") or not is_user_error(err):
            raise
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
