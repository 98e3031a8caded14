"""What the command line and the Python facade (:mod:`centernet.api`) both run, so the two share one path:

* :func:`load_model`: a centernet checkpoint, an exported ``.onnx`` file or a model-zoo name -> :class:`Loaded`
* :func:`training_config` (preset / config file / checkpoint to resume, then overrides) and :func:`train`
* :func:`evaluate`, :func:`oracle`, :func:`analyze`, :func:`predictor`, :func:`export`, :func:`make_split`

Nothing here names a task.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from .builders import (class_names, eval_settings, load_checkpoint, model_from_config, official_model, open_source,
                       set_classes, task_from_config)
from ..config import ExperimentConfig, override_training
from ..data.io import DataError, printable
from ..data.sample import DetectionSource
from ..engine.checkpoint import CheckpointFileError
from ..engine.errors import require
from ..engine.evaluator import EvalResult
from ..engine.predictor import Predictor
from ..weights.pretrained import (detector_names, is_detector_name, load_backbone, load_initial_weights,
                                 resolve_backbone, resolve_initial_weights)
from ..tasks import Task

DEFAULT_PRESET = "ctdet_resdcn18_coco"


@dataclass
class Loaded:
    """A model ready to run: its configuration and task, and a PyTorch ``model`` or another ``runner``
    (an onnxruntime session); ``kind`` is "checkpoint", "zoo", "onnx" or "oracle" (the ground truth)."""

    cfg: ExperimentConfig
    task: Task
    model: nn.Module | None = None
    runner: Any = None
    source: str = ""
    kind: str = "checkpoint"

    @property
    def net(self) -> Any:
        """What the evaluator runs: the module, the runner, or None (the ground truth)."""
        return self.model if self.model is not None else self.runner


def load_model(spec: str | os.PathLike[str], device: str = "cpu", progress: bool = True) -> Loaded:
    """A centernet checkpoint (``runs/x/best.pth``), an exported ``.onnx`` file, a model-zoo name
    (``ctdet_coco_dla_2x``: from the torch hub cache, downloaded when absent) or an original zoo file
    named like its entry (``ctdet_coco_dla_2x.pth``)."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".onnx":
        require("onnxruntime", "onnx", "running an .onnx model")
        from ..export.onnx import OnnxRunner

        runner = OnnxRunner(path)
        return Loaded(runner.config, task_from_config(runner.config), None, runner, text, "onnx")
    if path.is_file():
        try:
            cfg, model, task = load_checkpoint(path, device)
        except CheckpointFileError:
            if not is_detector_name(path.stem):
                raise
            cfg, model, task = official_model(path.stem, device, path=path)
            return Loaded(cfg, task, _inference_layout(model, cfg, device), None, text, "zoo")
        return Loaded(cfg, task, _inference_layout(model, cfg, device), None, text, "checkpoint")
    if is_detector_name(text):
        cfg, model, task = official_model(text, device, progress=progress)
        return Loaded(cfg, task, _inference_layout(model, cfg, device), None, text, "zoo")
    if path.suffix or os.sep in text:  # meant as a file
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raise FileNotFoundError(f"{text}: no such file, and not a model-zoo name (known: {', '.join(detector_names())})")


# ------------------------------------------------------------------------------------------ training
def _inference_layout(model: nn.Module, cfg: ExperimentConfig, device: str) -> nn.Module:
    """``model`` in channels-last memory on a CPU where its architecture runs faster so
    (:func:`centernet.models.prefers_channels_last`); the inference path then lays its images out alike."""
    import torch

    from ..models import prefers_channels_last

    if torch.device(device).type == "cpu" and prefers_channels_last(cfg.model.arch):
        model.to(memory_format=torch.channels_last)
    return model


def training_config(preset: str | None = None, config_file: str | None = None, resume: str | None = None,
                    assignments: Sequence[str] = ()):
    """(config, :class:`~centernet.engine.rundir.Resume` or None): the named preset (default
    :data:`DEFAULT_PRESET`) or config file, or the checkpoint's own config when resuming (a preset or
    config file named alongside is checked against it), with ``section.key=value`` assignments applied."""
    from ..engine import rundir
    from ..presets import get_preset

    base = rundir.read_config_file(config_file) if config_file else get_preset(preset or DEFAULT_PRESET)
    if resume:
        return rundir.resume_config(resume, list(assignments), base if (preset or config_file) else None)
    return override_training(base, list(assignments)), None


def train(cfg: ExperimentConfig, resume: Any = None, explicit_out: bool = False, exist_ok: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` (or continue ``resume``) in its run folder; returns the trainer's summary. Under
    torchrun every process calls this."""
    from ..engine import distributed, rundir

    if not cfg.data.train:
        raise ValueError("no training data: pass --train (COCO json, VOC folder or YOLO folder)")
    rundir.validate_train_config(cfg)
    distributed.init_from_env(cfg.train.device)
    finished = False
    try:
        summary = _train(cfg, resume, explicit_out, exist_ok, progress)
        finished = True
        return summary
    finally:
        distributed.cleanup(synchronize=finished)


def _train(cfg: ExperimentConfig, resume: Any, explicit_out: bool, exist_ok: bool, progress: bool) -> dict[str, Any]:
    """Open and check the data, resolve initial weights (before a run folder is claimed), claim and lock the
    folder, fit."""
    from ..data.verify import check_object_limit, verify_source
    from ..engine import distributed, rundir

    rank0 = distributed.rank() == 0
    say = print if progress and rank0 else (lambda *args: None)
    rundir.absolute_paths(cfg)
    d = cfg.data
    train_source = open_source(d.train, d.train_images, cfg.task.name, d.train_split)
    val_source = open_source(d.val, d.val_images, cfg.task.name, d.val_split) if d.val else None
    for name, spec, split, source in (("training", d.train, d.train_split, train_source),
                                      ("validation", d.val, d.val_split, val_source)):
        if source is not None and not source.samples:
            raise DataError(f"no {name} images in {spec}" + (f" (split {split})" if split else ""))
    if d.verify and rank0:  # before a run folder is claimed: bad data leaves nothing behind
        verify_source(train_source, "training", progress=progress, mode=d.verify)
        if val_source is not None:
            verify_source(val_source, "validation", progress=progress, mode=d.verify)
    set_classes(cfg, train_source)
    if val_source is not None:  # validated with the training data's classes, matched by name
        val_source = match_classes(val_source, cfg, d.val)
    if rank0:  # objects past data.max_objects in a sample would be trained as background without a word
        task = task_from_config(cfg)
        check_object_limit(train_source, task.max_objects, task.objects_beyond_limit)
    backbone = weights = None
    if resume is None:  # resolved before a run folder is claimed: an offline machine leaves nothing behind
        if cfg.model.weights:
            weights = resolve_initial_weights(cfg.model.weights, progress=progress and rank0)
        else:
            backbone = resolve_backbone(cfg, progress=progress and rank0)
        cfg.train.out_dir = str(rundir.claim_run_dir(cfg.train.out_dir, explicit_out, exist_ok).resolve())
    else:
        changes = rundir.check_resume(cfg, resume)
        where = ""
        if resume.branch:  # not the run's own last.pth: continuing in its folder would rewind last.pth and the log
            named = Path(cfg.train.out_dir).resolve() != Path(resume.saved.train.out_dir).resolve()
            cfg.train.out_dir = str(rundir.claim_run_dir(cfg.train.out_dir, named, exist_ok).resolve())
            where = f" in a new run folder {cfg.train.out_dir} (only a run's own {rundir.LAST} continues in its folder)"
        say(printable(f"resuming {resume.path} at epoch {resume.payload['epoch']}{where}"
                      + (f"; {', '.join(changes)}" if changes else "")))
    lock = rundir.lock_run_dir(cfg.train.out_dir)
    try:
        return _fit(cfg, resume, train_source, val_source, backbone, weights, progress, say)
    finally:
        lock.release()


def _fit(cfg: ExperimentConfig, resume: Any, train_source: DetectionSource, val_source: DetectionSource | None,
         backbone: Any, weights: Any, progress: bool, say: Any) -> dict[str, Any]:
    """Build the task and model (initial weights or the checkpoint's), and train."""
    from ..engine.trainer import Trainer, seed_everything

    seed_everything(cfg.train.seed)  # the initial weights depend on it
    task = task_from_config(cfg)
    model = model_from_config(cfg, task)
    if backbone is not None:
        say(load_backbone(model, backbone))
    if weights is not None:
        say(load_initial_weights(model, weights))
    trainer = Trainer(cfg, model, task, train_source, val_source, progress=progress)
    if resume is not None:
        trainer.resume(resume.path, resume.payload)
    return trainer.fit()


# ------------------------------------------------------------------------------------------ evaluation
def _source(data: str | DetectionSource, images: str | None, split: str | None, task_name: str) -> DetectionSource:
    return data if isinstance(data, DetectionSource) else open_source(str(data), images, task_name, split)


#: class names shown per list in a refusal (the rest are counted)
SHOWN_NAMES = 10


def match_classes(source: DetectionSource, cfg: ExperimentConfig, data: Any = None) -> DetectionSource:
    """``source`` (called ``data`` in messages) as the model of configuration ``cfg`` sees it: models and data
    meet by class name.

    The same names in the same order: ``source`` itself (results carry the data's category ids, whatever they
    are). The same names in another order: a :class:`~centernet.data.sample.Relabeled` view in the model's
    order, with one warning. Other names: a ValueError showing both lists. A model without class names
    (older checkpoints) or data whose classes are unnamed (YOLO without ``classes.txt``: "0", "1", ...) are
    checked by their count only."""
    from ..data.sample import Relabeled

    name = _data_name(data, source)
    model_names, data_names, count = list(cfg.task.class_names), list(source.class_names), cfg.task.num_classes
    if not (_named(model_names) and _named(data_names)) or len(model_names) != count:
        if len(data_names) != count:
            raise ValueError(f"{name} has {len(data_names)} classes, the model predicts {count}")
        return source
    if model_names == data_names:
        return source
    unique = len(set(model_names)) == len(model_names) and len(set(data_names)) == len(data_names)
    if sorted(model_names) == sorted(data_names) and unique:
        warnings.warn(f"{name} has the model's {count} classes in another order (the data's: {_names(data_names)}; "
                      f"the model's: {_names(model_names)}); results are matched to the data's classes by name",
                      stacklevel=3)
        return Relabeled(source, model_names)
    head = (f"{name} has {len(data_names)} classes, the model predicts {count}" if len(data_names) != count
            else f"{name} has other class names than the model")
    if not unique:
        head += " (a class name repeats, so classes cannot be matched by name)"
    only_model = [n for n in model_names if n not in data_names]
    only_data = [n for n in data_names if n not in model_names]
    differ = (f"; only the model's: {_names(only_model)}, only the data's: {_names(only_data)}"
              if only_model or only_data else "")
    raise ValueError(f"{head}: the model's classes {_names(model_names)}, the data's {_names(data_names)}{differ}")


def _data_name(data: Any, source: DetectionSource) -> str:
    """What messages call a data set: the path it was given by, else its annotation file or image folder."""
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    return str(getattr(source, "ann_file", None) or getattr(source, "image_dir", None) or type(source).__name__)


def _named(names: Sequence[str]) -> bool:
    """Whether ``names`` are names: not empty and not the placeholders "0", "1", ... of unnamed classes."""
    return bool(names) and list(names) != [str(i) for i in range(len(names))]


def _names(names: Sequence[str]) -> str:
    """A list of class names on one line (each quoted and escaped), the first :data:`SHOWN_NAMES` and a count."""
    shown = ", ".join(repr(str(n)) for n in names[:SHOWN_NAMES])
    more = f", ... {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    return f"[{shown}{more}]"


def oracle(data: str, images: str | None = None, split: str | None = None, task: str | None = None):
    """(:class:`Loaded` of the ground truth, the data set): the task ``task`` or the one the data suits,
    with the geometry of the task's oracle preset."""
    from ..presets import get_preset
    from ..tasks import TASKS, guess_task

    source = open_source(data, images, task, split)
    name = task or guess_task(source)
    preset = TASKS.get(name).oracle_preset
    cfg = get_preset(preset) if preset else ExperimentConfig()
    cfg.task.name = name
    set_classes(cfg, source)
    return Loaded(cfg, task_from_config(cfg), source=data, kind="oracle"), source


def _test_options(flip: bool | None, **options: Any) -> dict[str, Any]:
    """EvalSettings overrides: ``flip`` only when chosen (None: the configuration's ``data.test_flip``)."""
    return options if flip is None else {**options, "flip": bool(flip)}


def evaluate(loaded: Loaded, data: str | DetectionSource, images: str | None = None, split: str | None = None,
             device: str = "cpu", workers: int = 0, flip: bool | None = None, scales: Sequence[float] = (1.0,),
             keep_res: bool = False, report: str | Path | None = None, verbose: bool = False,
             progress: bool = True, precision: str = "fp32", normalize: bool = False) -> EvalResult:
    """Metrics of ``loaded`` on ``data`` (a path or an opened data set); ``flip`` None: the configuration's
    ``data.test_flip``; ``report``: a folder for the PR curves, AP table, confusion matrix (counts, or
    ``normalize``-d per true class) and mosaic of this evaluation."""
    from ..data.verify import verify_source
    from ..engine.evaluator import evaluate as run_evaluation
    from ..engine.reports import evaluation_reports

    cfg, task = loaded.cfg, loaded.task
    source = match_classes(_source(data, images, split, cfg.task.name), cfg, data)
    if cfg.data.verify:
        verify_source(source, "evaluation", progress=progress, mode=cfg.data.verify)  # a wrong image size would lower every metric
    settings = eval_settings(cfg, **_test_options(flip, num_workers=workers, scales=tuple(scales),
                                                  precision=precision))
    if keep_res:
        settings.input_size = None
    elif loaded.kind == "oracle" and settings.input_size is None:  # the oracle needs the training geometry
        settings.input_size = tuple(cfg.data.input_size)
    result = run_evaluation(loaded.net, task, source, settings, device, progress=progress, verbose=verbose)
    if report is not None:
        evaluation_reports(report, result, source, class_names(cfg), normalize=normalize)
    return result


def analyze(loaded: Loaded, data: str | DetectionSource, images: str | None = None, split: str | None = None,
            device: str = "cpu", workers: int = 0, progress: bool = True):
    """The error analysis rows (:func:`centernet.engine.analyze.error_analysis`) of a PyTorch model."""
    from ..data.verify import verify_source
    from ..engine.analyze import error_analysis

    if loaded.model is None:
        raise ValueError(f"{loaded.source}: the error analysis needs a PyTorch model (a checkpoint), not an "
                         ".onnx file")
    cfg, task = loaded.cfg, loaded.task
    source = match_classes(_source(data, images, split, cfg.task.name), cfg, data)
    if cfg.data.verify:
        verify_source(source, "evaluation", progress=progress, mode=cfg.data.verify)
    settings = eval_settings(cfg, num_workers=workers)
    if settings.input_size is None:
        settings.input_size = tuple(cfg.data.input_size)
    return error_analysis(loaded.model, task, source, settings, device, progress=progress)


# ------------------------------------------------------------------------------------------ prediction, export
def predictor(loaded: Loaded, device: str = "cpu", flip: bool | None = None, scales: Sequence[float] = (1.0,),
              keep_res: bool = False, precision: str = "fp32") -> Predictor:
    """A :class:`Predictor` around ``loaded`` with the test options (``flip`` None: ``data.test_flip``)."""
    cfg = loaded.cfg
    settings = eval_settings(cfg, **_test_options(flip, scales=tuple(scales), precision=precision))
    if keep_res:
        settings.input_size = None
    if loaded.model is not None:
        return Predictor(loaded.model, loaded.task, settings, class_names(cfg), cfg.task.cat_ids or None, device)
    return Predictor(None, loaded.task, settings, class_names(cfg), cfg.task.cat_ids or None, "cpu", loaded.runner)


def export(loaded: Loaded, out: str | Path = "model.onnx", input_size: tuple[int, int] | None = None,
           decode: bool = False, opset: int = 17, dynamic: bool = False,
           dcn_op: str | None = None) -> tuple[Path, list[str]]:
    """Export ``loaded`` to ONNX (see :func:`centernet.export.onnx.export_onnx`; ``dcn_op`` "deformconv" or
    "gather", None: DeformConv where the installed onnxruntime runs it); returns the file and the non-standard
    ops it uses (none expected)."""
    require("onnx", "onnx", "ONNX export")
    if loaded.model is None:
        raise ValueError(f"{loaded.source}: export needs a PyTorch model (a checkpoint or a model-zoo name)")
    from ..export.onnx import export_onnx, op_types

    import torch

    device = next(loaded.model.parameters()).device
    loaded.model.to(memory_format=torch.contiguous_format)  # the graph as traced from the plain layout
    try:
        path = export_onnx(loaded.model.cpu(), loaded.task, loaded.cfg, out, input_size=input_size, decode=decode,
                           opset=opset, dynamic=dynamic, dcn_op=dcn_op)
    finally:
        _inference_layout(loaded.model.to(device), loaded.cfg, str(device))
    custom = sorted(f"{d}::{o}" for d, o in op_types(path) if d not in ("", "ai.onnx"))
    return path, custom


def make_split(data: str, val_fraction: float = 0.2, seed: int = 0, images: str | None = None,
          exist_ok: bool = False) -> dict[str, tuple[Path, int]]:
    """Write a reproducible train / val split of one data set (see :func:`centernet.data.splits.make_split`)."""
    from ..data.splits import check_splittable, make_split as write_split

    check_splittable(data)  # before opening: a COCO folder of several splits would ask which to open
    return write_split(data, open_source(data, images), val_fraction, seed, exist_ok=exist_ok)
