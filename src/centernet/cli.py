"""Command line: centernet train | eval | analyze | predict | export | split | demo | presets (see --help).

Each command has its own ``add_<command>_args``; the work happens in :mod:`centernet.app.runs`, which the Python
facade (:mod:`centernet.api`) calls too. Only torch-free modules are imported at the top, so ``--help`` and
argument errors answer at once. Nothing here names a task."""
from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn
from pathlib import Path

from .app.demo import add_demo_args  # torch-free: the demo's options live with it

DEFAULT_PRESET = "ctdet_resdcn18_coco"  # centernet.app.runs.DEFAULT_PRESET (not imported: it would load torch)
DATA_FORMATS = ("a COCO json file, a COCO folder (annotations/instances_*.json + their image folders), a PASCAL "
                "VOC folder (annotations/*.xml + images/) or a YOLO folder")


class _Formatter(argparse.HelpFormatter):
    """Each option's help followed by its default, unless the help states it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _add_data_args(p: argparse.ArgumentParser, workers: int = 2) -> None:
    p.add_argument("--images", help="image folder when the annotations do not follow their format's layout "
                                    "(default: the format's own)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: CUDA when available)")
    p.add_argument("--workers", type=int, default=workers, help="data loading processes")


def _scales(text: str) -> tuple[float, ...]:
    from .engine.evaluator import parse_scales

    try:
        return parse_scales(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_test_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test: the image and its mirror; --no-flip: without (default: the model's "
                        "data.test_flip, on for cornernet_hg104_coco as the original, else off)")
    p.add_argument("--scales", type=_scales, default=(1.0,),
                   help="multi-scale test, e.g. 0.5,0.75,1,1.25,1.5, merged with soft-NMS (default: 1)")
    p.add_argument("--keep-res", action="store_true",
                   help="test at the padded original resolution (default: the model's input size)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="compute precision of a PyTorch model: bf16/fp16 only on CUDA or a CPU with AMX units, "
                        "where it pays; refused with the reason elsewhere (default: fp32)")


def _add_split_arg(p: argparse.ArgumentParser, flag: str = "--split", what: str = "the data") -> None:
    p.add_argument(flag, metavar="NAME", help=f"a named split of {what}: a COCO folder's "
                                              "annotations/instances_NAME.json, VOC ImageSets/Main/NAME.txt, KITTI "
                                              "ImageSets/NAME.txt, or a list written by `centernet split` "
                                              "(default: every image)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"paper configuration, see `centernet presets` (default: {DEFAULT_PRESET})")
    p.add_argument("--config", help="a config.json written by an earlier run, instead of --preset")
    p.add_argument("--train", help=f"training annotations: {DATA_FORMATS} (required unless --resume)")
    p.add_argument("--val", help="validation annotations, scored every --val-interval epochs (default: none)")
    p.add_argument("--val-images", help="validation image folder (default: the format's layout)")
    _add_split_arg(p, "--split", "--train")
    _add_split_arg(p, "--val-split", "--val")
    p.add_argument("--arch", help="architecture, e.g. resdcn_18, dla_34, hourglass, or the small CPU ones "
                                  "dla_tiny, dla_tiny_conv, resdcn_18_half, resdcn_18_tiny (default: the preset's)")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the preset's); the preset's lr steps stretch "
                   "to the new length unless train.lr_steps is set")
    p.add_argument("--batch-size", type=int, help="images per step, over all processes (default: the preset's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    p.add_argument("--seed", type=int, help="seed of the initial weights, data order and augmentation "
                                            "(default: the preset's, 317 for the paper presets)")
    p.add_argument("--patience", type=int, help="stop after N epochs without a better validation AP "
                                                "(default: 0, never)")
    p.add_argument("--val-interval", type=int, help="epochs between validations, 0 for none "
                                                    "(default: the preset's, 5 for the paper presets)")
    p.add_argument("--log-every", type=int, help="steps between progress lines when the output is not a "
                                                 "terminal (default: about 10 lines per epoch)")
    p.add_argument("--pretrained", metavar="WEIGHTS",
                   help="backbone start: imagenet (downloaded into the torch hub cache), none, a file or a "
                        "weights name (default: imagenet for the paper presets, none for the CPU ones)")
    p.add_argument("--weights", help="initial weights of the whole model: a centernet checkpoint or an "
                                     "original model-zoo name / file, e.g. ctdet_coco_dla_2x (default: none)")
    p.add_argument("--out", help="run folder for logs, reports and checkpoints (default: a new runs/train, "
                                 "runs/train2, ...)")
    p.add_argument("--exist-ok", action="store_true", help="let --out replace a run already in that folder")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run from its last.pth, in its folder with its configuration (--epochs, "
                        "--lr and the like apply; changes of the model or data geometry are refused)")
    p.add_argument("--sync-bn", action="store_true",
                   help="synchronise batch-norm statistics across processes (under torchrun)")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field, e.g. train.val_interval=1 data.input_size=[384,384] "
                        "train.flops=false (default: none)")
    _add_data_args(p)


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="model", nargs="?",
                   help="a centernet checkpoint, an exported .onnx model or a model-zoo name (omit with --oracle)")
    p.add_argument("--data", required=True, help=f"annotations to score against: {DATA_FORMATS}")
    _add_split_arg(p)
    _add_test_args(p)
    p.add_argument("--oracle", action="store_true",
                   help="score the ground truth through the real decode path (no model needed)")
    p.add_argument("--task", help="task of --oracle (default: the task the data suits, e.g. keypoints -> "
                                  "multi_pose)")
    p.add_argument("--json", help="write every metric here as json (default: the table is printed only)")
    p.add_argument("--verbose", action="store_true", help="also print pycocotools' own summary lines")
    p.add_argument("--report", metavar="DIR", help="write PR curves, the AP table, the confusion matrix and a "
                                                   "mosaic of predictions here (default: none)")
    p.add_argument("--normalize", action="store_true", help="the confusion matrix of --report as shares of each "
                                                            "true class instead of counts")
    p.add_argument("--results-dir", help="write the results here in the data set's own format, when its "
                                         "scorer has one (e.g. KITTI label files, one per image)")
    _add_data_args(p)


def add_analyze_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="model", help="a centernet checkpoint or a model-zoo name")
    p.add_argument("--data", required=True, help=f"annotations to score against: {DATA_FORMATS}")
    _add_split_arg(p)
    p.add_argument("--json", help="write the rows here as json (default: printed only)")
    _add_data_args(p)


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="model",
                   help="a centernet checkpoint, an exported .onnx model or a model-zoo name (ctdet_coco_dla_2x)")
    p.add_argument("input", nargs="+", help="image files, folders of images, globs ('photos/*.jpg'), http(s) image "
                                            "URLs, videos, or a camera index (0: until Ctrl-C)")
    p.add_argument("--out", help="folder for drawn images/videos and detections.json (default: a new predictions, "
                                 "predictions2, ...)")
    p.add_argument("--score", type=float, default=0.3, help="draw, count and save detections from this score")
    p.add_argument("--batch", type=int, default=1, help="images per network run (1 with --keep-res)")
    p.add_argument("--workers", type=int, default=2, help="processes reading and preparing images")
    p.add_argument("--heatmap", action="store_true", help="overlay the predicted heatmap")
    p.add_argument("--calib", help="KITTI calibration file whose camera matrix P2 every image gets (tasks "
                                   "that lift detections to 3D need it)")
    p.add_argument("--quiet", action="store_true", help="no line per image, only the summary")
    _add_test_args(p)
    p.add_argument("--backend", choices=("auto", "pytorch", "onnxruntime"), default="auto",
                   help="auto: onnxruntime for .onnx files, else pytorch")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: CUDA when available)")


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="model", help="a centernet checkpoint or a model-zoo name")
    p.add_argument("--out", help="the .onnx file to write (default: beside the checkpoint, with its name: "
                                 "runs/x/best.pth -> runs/x/best.onnx)")
    p.add_argument("--decode", action="store_true",
                   help="decode in the graph: output detection rows [B, K, D] in output-map pixels "
                        "(default: the activated maps)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (16 or newer)")
    p.add_argument("--dcn-op", choices=("deformconv", "gather"), default=None,
                   help="how deformable convolutions are written: deformconv (one ONNX DeformConv node each; "
                        "opset 19, raised to it; onnxruntime 1.25 or newer) or gather (standard ops any runtime "
                        "runs); default: deformconv, or gather when the installed onnxruntime is older than 1.25")
    p.add_argument("--dynamic", action="store_true", help="dynamic input height and width (default: fixed)")
    p.add_argument("--size", help="input W,H to trace at (default: the config's input size)")
    p.add_argument("--int8", action="store_true",
                   help="also write <out>_int8.onnx: static int8 (QDQ) for onnxruntime, calibrated on --calibrate")
    p.add_argument("--calibrate", metavar="DATA", help="calibration images for --int8: a folder or a data set")
    p.add_argument("--calib-images", type=int, default=64, help="calibration images used (default: 64)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="activation range estimate (default: minmax)")


def add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help=f"one annotated data set: {DATA_FORMATS}")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the images for validation")
    p.add_argument("--seed", type=int, default=0, help="the same seed always draws the same split")
    p.add_argument("--images", help="image folder when not the format's layout (default: the format's own)")
    p.add_argument("--exist-ok", action="store_true", help="replace existing train / val split files")


def add_info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a checkpoint, an exported .onnx model, a model-zoo name or a preset name")
    p.add_argument("--size", help="W,H for the GFLOPs figure (default: the model's input size)")


COMMAND_HELP = {
    "train": ("train a model (from a preset, overridable field by field)", add_train_args),
    "eval": ("metrics of a checkpoint, ONNX model or model-zoo name on a data set", add_eval_args),
    "analyze": ("error analysis: AP with ground-truth maps substituted", add_analyze_args),
    "predict": ("detect objects in images, folders, globs or videos", add_predict_args),
    "export": ("export a checkpoint to ONNX (standard ops only)", add_export_args),
    "split": ("write a reproducible train / val split of one data set", add_split_args),
    "demo": ("synthetic data: generate, train a small CPU model of a task, evaluate, draw", add_demo_args),
    "presets": ("list the named configurations", lambda p: None),
    "info": ("what a model is: architecture, parameters, GFLOPs, heads, classes, training", add_info_args),
}


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (``error: <prog>: <problem> (see <prog> --help)``, exit code 2), like
    every other failure; ``--help`` is unchanged."""

    def error(self, message: str) -> NoReturn:
        from .data.io import printable

        self.exit(2, f"error: {self.prog}: {printable(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="centernet", formatter_class=_Formatter,
        description=f"CenterNet detectors in pure PyTorch. Data may be {DATA_FORMATS} (images/ + labels/).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, add_args) in COMMAND_HELP.items():
        add_args(sub.add_parser(name, help=text, description=text, formatter_class=_Formatter))  # a _Parser too
    return parser


def _device(name: str) -> str:
    from .engine.distributed import resolve_device

    return str(resolve_device(name))


def _train_assignments(args: argparse.Namespace) -> list[str]:
    """The config fields set on the command line, as ``section.key=json`` overrides (``--set`` last)."""
    given = {"data.train": args.train, "data.val": args.val, "data.train_images": args.images,
             "data.val_images": args.val_images, "data.train_split": args.split, "data.val_split": args.val_split,
             "model.arch": args.arch, "model.pretrained": args.pretrained, "model.weights": args.weights,
             "train.epochs": args.epochs, "train.batch_size": args.batch_size, "train.lr": args.lr,
             "train.seed": args.seed, "train.patience": args.patience, "train.val_interval": args.val_interval,
             "train.log_every": args.log_every, "train.out_dir": args.out, "train.sync_bn": args.sync_bn or None,
             "data.num_workers": args.workers, "train.device": args.device}
    return [f"{key}={json.dumps(value)}" for key, value in given.items() if value is not None] + list(args.set)


def cmd_train(args: argparse.Namespace) -> int:
    from .app import runs
    from .engine import distributed, rundir

    assignments = _train_assignments(args)
    cfg, resume = runs.training_config(args.preset, args.config, args.resume, assignments)
    explicit = bool(args.config) or rundir.out_dir_given(assignments)
    summary = runs.train(cfg, resume, explicit_out=explicit, exist_ok=args.exist_ok)
    if distributed.launch_rank() == 0:  # the process group is gone by now: rank() would be 0 everywhere
        files = sorted(p.name for p in Path(summary["out_dir"]).iterdir() if p.is_file())
        print(f"run folder {summary['out_dir']}: {', '.join(files)}")
        print(json.dumps({"best_AP": summary["best_AP"], "headline": summary["headline"],
                          "best_epoch": summary["best_epoch"], "stopped_early": summary["stopped_early"],
                          "out_dir": summary["out_dir"]}))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .app import runs
    from .engine.outputs import check_output_file, claim_output_dir, is_metrics_json

    device = _device(args.device)
    if args.json:  # checked before the work, so that a refusal loses nothing
        check_output_file(args.json, is_metrics_json, "eval")
    if args.results_dir:
        claim_output_dir(args.results_dir, "eval", [args.data] + ([args.images] if args.images else []),
                         flag="--results-dir")
    if args.checkpoint:
        loaded, data = runs.load_model(args.checkpoint, device), args.data
    elif args.oracle:
        loaded, data = runs.oracle(args.data, args.images, args.split, args.task)
    else:
        raise SystemExit("error: give a model, or --oracle to score the ground truth")
    result = runs.evaluate(loaded, data, args.images, args.split, device, args.workers, args.flip, args.scales,
                           args.keep_res, args.report, verbose=args.verbose, precision=args.precision,
                           normalize=args.normalize)
    from .evaluation.scoring import metrics_table

    report = result.scorer.report() if result.scorer is not None else ""
    print(report or metrics_table({"metrics": result.metrics}))  # fractions, as analyze and the epoch table
    if args.json:
        Path(args.json).write_text(json.dumps(result.metrics, indent=2))
    if args.report:
        print(f"evaluation reports in {args.report}")
    if args.results_dir and result.scorer is not None:
        written = result.scorer.write(args.results_dir)
        print(f"wrote {len(written)} result files to {args.results_dir}" if written
              else f"this data set's scorer writes no result files; nothing in {args.results_dir}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .app import runs
    from .engine.analyze import format_table
    from .engine.outputs import check_output_file, is_rows_json

    device = _device(args.device)
    if args.json:
        check_output_file(args.json, is_rows_json, "analyze")
    loaded = runs.load_model(args.checkpoint, device)
    rows = runs.analyze(loaded, args.data, args.images, args.split, device, args.workers)
    print(format_table(rows, loaded.task.analysis_columns))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"name": r.name, "oracle": sorted(r.oracle), **r.metrics} for r in rows], indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .app import runs
    from .data.io import printable
    from .engine.console import plural

    is_onnx = args.checkpoint.lower().endswith(".onnx")
    backend = args.backend if args.backend != "auto" else ("onnxruntime" if is_onnx else "pytorch")
    if (backend == "onnxruntime") != is_onnx:
        raise SystemExit(f"error: --backend {backend} runs {'exported .onnx models' if not is_onnx else 'checkpoints'}"
                         f"; {args.checkpoint} is {'an .onnx model' if is_onnx else 'not one'}")
    device = "cpu" if is_onnx else _device(args.device)
    predictor = runs.predictor(runs.load_model(args.checkpoint, device), device, args.flip, args.scales,
                               args.keep_res, args.precision)
    task = predictor.task
    names = predictor.class_names

    def report(frame, rows) -> None:
        kept = rows[rows[:, task.score_column] >= args.score]
        counts: dict[str, int] = {}
        for label in kept[:, task.class_column].astype(int).tolist():
            name = names[label] if 0 <= label < len(names) else str(label)
            counts[name] = counts.get(name, 0) + 1
        detail = ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda kv: -kv[1]))
        line = f"{frame.name}: {plural(len(kept), 'detection')} >= {args.score:g}" + (f" ({detail})" if detail else "")
        tqdm.write(printable(line))  # file and class names as the user's files hold them, escaped

    meta = None
    if args.calib:
        from .data.kitti import read_calib

        meta = {"calib": read_calib(args.calib)}
    from .engine.outputs import claim_output_dir
    from .engine.rundir import numbered_dir

    from .engine.inputs import camera_index, is_url

    local = [i for i in args.input if not is_url(i) and camera_index(i) is None]
    out = claim_output_dir(args.out or numbered_dir("predictions"), "predict", local)
    summary = predictor.run(args.input, out, args.score, args.heatmap, batch=max(1, args.batch),
                            workers=max(0, args.workers), on_image=None if args.quiet else report, meta=meta)
    print(f"{plural(summary['images'], 'image')} at {summary['images_per_s']:.1f} images/s ({backend}, batch "
          f"{args.batch}); {plural(summary['detections'], 'detection')} >= {args.score:g} in {summary['json']}")
    return 0


def _size(text: str) -> tuple[int, int]:
    """--size W,H -> (w, h)."""
    try:
        w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"error: --size must be W,H, e.g. 512,384; got {text!r}") from None
    return w, h


def export_path(checkpoint: str, out: str | None) -> Path:
    """Where ``export`` writes: ``out``, else beside the checkpoint with its name (a model-zoo name: here). Never
    onto the checkpoint itself, nor onto an existing file that is not an .onnx model."""
    source = Path(checkpoint)
    path = Path(out) if out else (source.with_suffix(".onnx") if source.is_file() else Path(f"{source.name}.onnx"))
    if source.is_file() and path.exists() and path.resolve() == source.resolve():
        raise SystemExit(f"error: --out {path} is the checkpoint being exported; name another file")
    if path.exists() and (path.is_dir() or path.suffix.lower() != ".onnx"):
        raise SystemExit(f"error: --out {path} exists and is not an .onnx model; name another file")
    return path


def cmd_export(args: argparse.Namespace) -> int:
    from .app import runs

    size = _size(args.size) if args.size else None
    if args.int8 and not args.calibrate:
        raise SystemExit("error: --int8 needs --calibrate DATA (images the int8 ranges are measured on)")
    loaded = runs.load_model(args.checkpoint, "cpu")
    if size is not None:
        from .engine.rundir import check_input_size

        check_input_size(loaded.cfg.model.arch, size, loaded.cfg.data.down_ratio, name="--size")
    path, custom = runs.export(loaded, export_path(args.checkpoint, args.out), size,
                               args.decode, args.opset, args.dynamic, args.dcn_op)
    from .export.onnx import META_DCN_OP, read_header

    opset, metadata = read_header(path)
    dcn = metadata.get(META_DCN_OP, "none")
    print(f"wrote {path} (opset {opset}, {'detections' if args.decode else 'maps'}, "
          f"{'dynamic' if args.dynamic else 'fixed'} size" + (f", DCNs as {dcn}" if dcn != "none" else "") + ")"
          + (f"; non-standard ops: {custom}" if custom else ""))
    if args.int8:
        from .export.quantize import quantize_onnx

        from .data import has_images

        folder = Path(args.calibrate)  # a plain folder of images, else a data set in any format
        calibration = folder if folder.is_dir() and has_images(folder) else runs.open_source(args.calibrate)
        out = Path(path).with_name(Path(path).stem + "_int8.onnx")
        quantize_onnx(path, out, calibration, num_images=args.calib_images, method=args.calib_method)
        print(f"wrote {out} (int8, calibrated on {args.calib_images} images of {args.calibrate})")
    return 0



def cmd_split(args: argparse.Namespace) -> int:
    from .app import runs

    written = runs.make_split(args.data, args.val_fraction, args.seed, args.images, args.exist_ok)
    for name, (path, count) in written.items():
        print(f"{name}: {count} images -> {path}")
    print(f"train with: centernet train --train {args.data} --split train --val {args.data} --val-split val")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .app.demo import run_demo

    from .app.demo import default_out_dir
    from .engine.rundir import numbered_dir

    out = args.out if args.out else numbered_dir(default_out_dir(args.task))  # runs/demo, runs/demo2, ...
    summary = run_demo(out, epochs=args.epochs, device=_device(args.device), num_train=args.num_train,
                       num_val=args.num_val, task=args.task)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .app.info import describe, format_info

    print(format_info(describe(args.model, _size(args.size) if args.size else None)))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    for name in PRESETS.names():
        cfg = PRESETS.get(name)()
        t = cfg.train
        print(f"{name:28s} {cfg.task.name:10s} {cfg.model.arch:14s} input {cfg.data.input_size} "
              f"batch {t.batch_size} lr {t.lr:g} epochs {t.epochs} steps {list(t.lr_steps)} "
              f"pretrained {cfg.model.pretrained or 'none'}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "analyze": cmd_analyze, "predict": cmd_predict,
            "export": cmd_export, "split": cmd_split, "demo": cmd_demo, "presets": cmd_presets, "info": cmd_info}


def main(argv: list[str] | None = None) -> int:
    """Run a command; user errors (bad data, unknown names, mismatched checkpoints, a missing optional
    package, a failed download) print one line and return 2. Set CENTERNET_DEBUG=1 for the traceback."""
    import os

    args = build_parser().parse_args(argv)
    from .data.io import printable
    from .engine.errors import cli_warnings, is_user_error, user_message

    try:
        with cli_warnings():
            return COMMANDS[args.command](args)
    except KeyboardInterrupt as err:  # Ctrl-C: one line (what was saved, how to go on), exit code 130
        print(f"interrupted {err}" if str(err) else "interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # raise SystemExit("error: ...") in a command: a user error too (exit code 2)
        if not isinstance(exc.code, str):
            raise
        print(printable(exc.code, keep_newlines=True), file=sys.stderr)
        return 2
    except Exception as err:  # user errors (engine/errors.py): DataError, checkpoint errors, a diverged run, ...
        if os.environ.get("CENTERNET_DEBUG") or not is_user_error(err):
            raise
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
