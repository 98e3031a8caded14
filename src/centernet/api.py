"""The Python facade: one object per model, whatever it was loaded from, with the command line's code path
(:mod:`centernet.app.runs`) underneath::

    from centernet import CenterNet
    model = CenterNet("ctdet_coco_dla_2x")        # a model-zoo name, "runs/x/best.pth", "model.onnx", a preset
    for r in model.predict("photos/", score=0.3):  # a path, folder, glob, list, BGR / RGB array or PIL image
        print(r.path, r.boxes, r.scores, r.names)  # r.keypoints, r.fields, r.plot(), r.save(...), r.to_coco()
    model.train(data="voc/", val="voc/", epochs=20, batch_size=8)
    model.val(data="voc/")                         # {"AP": ..., "AP50": ...} (fractions, as the CLI prints)
    model.export("onnx")
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .app import runs
from .config import ExperimentConfig, override_training
from .data.io import DataError, ImageTooLarge, max_image_pixels
from .engine.distributed import resolve_device
from .engine.inputs import camera_index, expand_inputs, is_video
from .engine.predictor import Prediction, Predictor
from .ops.boxes import clip_boxes
from .tasks import Task

#: keyword arguments of :meth:`CenterNet.train` that name a config field by another name
TRAIN_ALIASES = {"data": "data.train", "val": "data.val", "images": "data.train_images", "split": "data.train_split",
                 "val_split": "data.val_split", "out": "train.out_dir", "weights": "model.weights",
                 "loss_weights": "task.weights", "workers": "data.num_workers"}


@dataclass
class Result:
    """The detections of one image at or above the score threshold: the task's raw ``rows`` [N, D] (image
    pixels, boxes clipped) and views of them by the task's ``row_fields`` (boxes, scores, class ids, and
    e.g. keypoints)."""

    rows: np.ndarray
    image: np.ndarray  # the BGR image
    path: str | None
    class_names: list[str]
    task: Task = field(repr=False)
    cat_ids: list[int] = field(repr=False, default_factory=list)
    prediction: Prediction | None = field(repr=False, default=None)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        shown = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.names[:5], self.scores[:5].tolist()))
        more = ", ..." if len(self) > 5 else ""
        return f"Result({self.path or 'array'}: {len(self)} detections{': ' if shown else ''}{shown}{more})"

    @property
    def fields(self) -> dict[str, np.ndarray]:
        """{field name: [N] or [N, n] columns} as the task declares them (``Task.row_fields``)."""
        return {name: (self.rows[:, a] if b - a == 1 else self.rows[:, a:b])
                for name, (a, b) in self.task.row_fields.items() if b <= self.rows.shape[1]}

    @property
    def boxes(self) -> np.ndarray:  # [N, 4] x1, y1, x2, y2
        return self.rows[:, :4]

    @property
    def scores(self) -> np.ndarray:  # [N]
        return self.rows[:, self.task.score_column]

    @property
    def class_ids(self) -> np.ndarray:  # [N] 0-based labels
        return self.rows[:, self.task.class_column].astype(np.int64)

    @property
    def names(self) -> list[str]:
        return [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in self.class_ids.tolist()]

    @property
    def keypoints(self) -> np.ndarray | None:
        """[N, J, 2] (x, y) when the task's rows have keypoints, else None."""
        points = self.fields.get("keypoints")
        return None if points is None else points.reshape(len(self.rows), -1, 2)

    def plot(self, heatmap: bool = False) -> np.ndarray:
        """A BGR picture of the detections (``heatmap``: over the predicted heatmap)."""
        image = self.image
        if heatmap and self.prediction is not None and self.prediction.heat is not None:
            from .viz.detections import heatmap_overlay

            image = heatmap_overlay(image, self.prediction.heat, self.prediction.trans_inv)
        meta = self.prediction.meta if self.prediction is not None else None
        return self.task.draw(image, self.rows, self.class_names, 0.0, meta)

    def save(self, path: str | os.PathLike[str] | None = None, heatmap: bool = False) -> Path:
        """Write :meth:`plot` to ``path`` (the format from its suffix); without one, to ``<name>_pred.jpg`` in
        this process's predictions folder (the first free of predictions, predictions2, ..., made on first use),
        never onto an earlier picture."""
        path = Path(path) if path is not None else _default_save_path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), self.plot(heatmap)):
            raise OSError(f"{path}: could not write the picture (unknown suffix?)")
        return path

    def to_coco(self, image_id: int = 0) -> list[dict[str, Any]]:
        """The task's result dicts (COCO format: bbox as x, y, w, h; keypoints where the task has them)."""
        meta = {**(self.prediction.meta if self.prediction else {}), "image_id": image_id}
        cat_ids = self.cat_ids or list(range(1, self.task.num_classes + 1))
        return self.task.to_results(self.rows, meta, cat_ids)


class CenterNet:
    """A detector: from a model-zoo name, a centernet checkpoint, an exported ``.onnx`` model or a preset
    name (an untrained configuration, for :meth:`train`)."""

    def __init__(self, model: str | os.PathLike[str] = "ctdet_coco_dla_2x", device: str = "auto",
                 progress: bool = True) -> None:
        from .presets import PRESETS

        self.device = str(resolve_device(device))
        self.progress = progress
        self.spec = os.fspath(model)
        self.loaded: runs.Loaded | None = None
        self.preset: ExperimentConfig | None = None
        self._predictor: tuple[tuple, Predictor] | None = None
        if self.spec in PRESETS.names() and not Path(self.spec).exists():
            self.preset = PRESETS.get(self.spec)()
        else:
            self.loaded = runs.load_model(self.spec, "cpu" if self.spec.endswith(".onnx") else self.device, progress)

    def __repr__(self) -> str:
        return f"CenterNet({self.spec!r}, arch={self.cfg.model.arch!r}, task={self.cfg.task.name!r})"

    @property
    def cfg(self) -> ExperimentConfig:
        return self.loaded.cfg if self.loaded is not None else self.preset

    @property
    def task(self) -> Task:
        return self._require().task

    @property
    def class_names(self) -> list[str]:
        from .app.builders import class_names

        return class_names(self.cfg)

    def _require(self) -> runs.Loaded:
        if self.loaded is None:
            raise ValueError(f"{self.spec} is a preset: train it first (model.train(data=...)) or load weights")
        return self.loaded

    # -- prediction ----------------------------------------------------------------------------------------
    def predictor(self, flip: bool | None = None, scales: Sequence[float] = (1.0,), keep_res: bool = False,
                  precision: str = "fp32") -> Predictor:
        """The :class:`Predictor` the CLI would use with these test options (kept between calls); ``flip``
        None: the model's ``data.test_flip``."""
        key = (flip, tuple(scales), keep_res, precision)
        if self._predictor is None or self._predictor[0] != key:
            loaded = self._require()
            self._predictor = (key, runs.predictor(loaded, "cpu" if loaded.kind == "onnx" else self.device, *key))
        return self._predictor[1]

    def predict(self, source: Any, score: float = 0.3, rgb: bool = False, flip: bool | None = None,
                scales: Sequence[float] = (1.0,), keep_res: bool = False, batch: int = 1,
                workers: int = 0, precision: str = "fp32") -> list[Result]:
        """Detections on ``source``: an image path, a folder, a glob, an http(s) URL, a BGR array (``rgb=True``: RGB), a PIL
        image, or a list of these; one :class:`Result` per image, in order. Files are read and prepared by
        ``workers`` processes and run ``batch`` at a time; ``precision`` "bf16" / "fp16" where it pays (CUDA,
        AMX CPUs), else a ValueError says why not."""
        predictor = self.predictor(flip, scales, keep_res, precision)
        items = list(source) if isinstance(source, (list, tuple)) else [source]
        out: list[Result] = []
        for item in items:
            if isinstance(item, (int, str)) and camera_index(item) is not None:
                raise ValueError(f"camera {item}: for cameras use model.save_predictions({item!r}) or "
                                 f"`centernet predict ... {item}` (they record until Ctrl-C)")
            if isinstance(item, (str, os.PathLike)):
                files = expand_inputs([item])
                videos = [str(p) for p in files if is_video(p)]
                if videos:
                    raise ValueError(f"{videos[0]}: for videos use model.save_predictions(...) or `centernet predict`")
                for frame, pred in predictor.predictions(files, batch, workers):
                    if pred is None:
                        raise DataError(frame.error or frame.name)
                    out.append(self._result(predictor, frame.image, pred, score, str(files[frame.index])))
            else:
                image = to_bgr(item, rgb)
                out.append(self._result(predictor, image, predictor(image), score, None))
        return out

    __call__ = predict

    def _result(self, predictor: Predictor, image: np.ndarray, pred: Prediction, score: float,
                path: str | None) -> Result:
        rows = clip_boxes(pred.rows, image.shape[1], image.shape[0])
        rows = rows[rows[:, predictor.task.score_column] >= score]
        return Result(rows, image, path, predictor.class_names, predictor.task, predictor.cat_ids, pred)

    def save_predictions(self, source: Any, out: str | os.PathLike[str] = "predictions", score: float = 0.3,
                         heatmap: bool = False, batch: int = 1, workers: int = 0, **test: Any) -> dict[str, Any]:
        """What ``centernet predict`` does: drawings (videos too) and detections.json in ``out``."""
        return self.predictor(**test).run(source, out, score, heatmap, self.progress, batch, workers)

    # -- training, validation, export ------------------------------------------------------------------------
    def train(self, data: str | None = None, epochs: int | None = None, resume: str | None = None,
              **overrides: Any) -> dict[str, Any]:
        """Train on ``data`` (a COCO json, VOC or YOLO folder): from this model's weights and configuration
        (a checkpoint or zoo name: fine-tuning; a preset: its start), ``overrides`` naming config fields
        (``batch_size=8``, ``val="..."``, ``input_size=[384, 384]``, ``"train.lr": 1e-4``). ``resume``: a
        run's last.pth. Afterwards this object holds the trained model (best.pth, else last.pth)."""
        assignments = _assignments({"data": data, "epochs": epochs, **overrides})
        if resume is not None:
            cfg, state = runs.training_config(resume=resume, assignments=assignments)
        else:
            cfg, state = override_training(self._train_base(), assignments), None
        if resume is None and not any(a.startswith("train.device=") for a in assignments):
            cfg.train.device = self.device
        explicit = "train.out_dir" in {a.split("=", 1)[0] for a in assignments}
        summary = runs.train(cfg, state, explicit_out=explicit, progress=self.progress)
        folder = Path(summary["out_dir"])
        best = folder / "best.pth"
        self.spec = str(best if best.is_file() else folder / "last.pth")
        self.loaded, self.preset, self._predictor = runs.load_model(self.spec, self.device), None, None
        return summary

    def _train_base(self) -> ExperimentConfig:
        """The configuration a new run starts from: the preset's, or the loaded model's with its weights."""
        if self.preset is not None:
            return ExperimentConfig.from_dict(self.preset.to_dict())
        loaded = self._require()
        if loaded.kind == "onnx":
            raise ValueError(f"{self.spec}: an .onnx model cannot be trained; start from a checkpoint or a name")
        cfg = ExperimentConfig.from_dict(loaded.cfg.to_dict())
        cfg.model.weights, cfg.model.pretrained = loaded.source, None
        fresh = ExperimentConfig()  # the earlier run's data and folder are not this run's
        for name in ("train", "val", "train_images", "val_images", "train_split", "val_split"):
            setattr(cfg.data, name, None)
        cfg.train.out_dir = fresh.train.out_dir
        return cfg

    def val(self, data: str, split: str | None = None, images: str | None = None, report: str | None = None,
            flip: bool | None = None, scales: Sequence[float] = (1.0,), keep_res: bool = False,
            workers: int = 0, precision: str = "fp32") -> dict[str, float]:
        """The metrics of ``centernet eval`` on ``data`` (fractions); ``flip`` None: the model's
        ``data.test_flip`` (on for CornerNet's paper preset); ``report``: a folder for the PR curves, AP table,
        confusion matrix and mosaic."""
        loaded = self._require()
        device = "cpu" if loaded.kind == "onnx" else self.device
        result = runs.evaluate(loaded, data, images, split, device, workers, flip, scales, keep_res, report,
                               progress=self.progress, precision=precision)
        return result.metrics

    def export(self, format: str = "onnx", out: str | os.PathLike[str] | None = None, **options: Any) -> Path:
        """Export to ONNX (``options``: ``decode``, ``opset``, ``dynamic``, ``input_size`` (w, h), ``dcn_op``
        "deformconv" or "gather"); ``out`` defaults to the checkpoint's name with ``.onnx``."""
        if format.lower() != "onnx":
            raise ValueError(f"export format {format!r}: only 'onnx' is supported")
        target = Path(out) if out is not None else Path(self.spec).with_suffix(".onnx").name
        path, _ = runs.export(self._require(), target, **options)
        return path


_SAVE_FOLDER: list[Path] = []  # the predictions folder of Result.save() without a path, made on first use


def _default_save_path(source: str | None) -> Path:
    """A new file ``<stem>_pred.jpg`` (``_2``, ``_3``, ... when taken) in this process's predictions folder."""
    from .engine.rundir import numbered_dir

    if not _SAVE_FOLDER or not _SAVE_FOLDER[0].is_dir():
        _SAVE_FOLDER[:] = [numbered_dir("predictions").resolve()]
    stem = Path(source).stem if source else "image"
    for number in range(1, 1_000_000):
        path = _SAVE_FOLDER[0] / (f"{stem}_pred.jpg" if number == 1 else f"{stem}_pred_{number}.jpg")
        if not path.exists():
            return path
    raise OSError(f"{_SAVE_FOLDER[0]}: no free name for {stem}_pred.jpg")


#: integer image types and the value that stands for white
_WHITE = {np.dtype(np.uint16): 65535}


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An image array as uint8: uint8 as it is; uint16 scaled (65535 -> 255); floats in [0, 1] scaled by 255
    and floats or integers in [0, 255] rounded. Anything else (negative, above 255, non-finite, bool, empty)
    is a ValueError in one line, never silently clipped."""
    if image.dtype == np.uint8:
        return image
    if image.size == 0:
        raise ValueError(f"an image array must not be empty, got shape {list(image.shape)}")
    if image.dtype in _WHITE:
        return np.round(image.astype(np.float32) * (255.0 / _WHITE[image.dtype])).astype(np.uint8)
    if image.dtype.kind not in "iuf":
        raise ValueError(f"an image array must be uint8, uint16, another integer type or float, got {image.dtype}")
    low, high = float(np.min(image)), float(np.max(image))
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise ValueError(f"a {image.dtype} image array must hold values in [0, 1] (floats) or [0, 255], got "
                         f"{low:g} .. {high:g}")
    scale = 255.0 if image.dtype.kind == "f" and high <= 1.0 else 1.0
    return np.round(image.astype(np.float32) * scale).astype(np.uint8)


def to_bgr(image: Any, rgb: bool = False) -> np.ndarray:
    """A BGR uint8 [H, W, 3] copy of an array (BGR, or RGB with ``rgb``; grey or with alpha; any dtype
    :func:`to_uint8` takes) or PIL image."""
    if type(image).__module__.startswith("PIL"):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    if not isinstance(image, np.ndarray):
        raise TypeError(f"cannot predict on a {type(image).__name__}: give a path, a folder, a glob, an array or a "
                        "PIL image")
    if image.ndim in (2, 3) and image.shape[0] * image.shape[1] > max_image_pixels():
        raise ImageTooLarge(f"an image array of {image.shape[1]}x{image.shape[0]} pixels is above the limit of "
                            f"{max_image_pixels()} (CENTERNET_MAX_IMAGE_PIXELS sets it)")
    array = to_uint8(image)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
        return cv2.cvtColor(array.reshape(array.shape[:2]), cv2.COLOR_GRAY2BGR)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4], got {list(image.shape)}")
    array = array[..., :3]
    return np.ascontiguousarray(array[..., ::-1] if rgb else array)


def _assignments(values: dict[str, Any]) -> list[str]:
    """Keyword arguments -> ``section.key=json`` overrides (a unique field name, an alias, or "section.key")."""
    known = {f"{section.name}.{f.name}" for section in fields(ExperimentConfig)
             for f in fields(section.default_factory)}  # type: ignore[arg-type]
    by_name: dict[str, list[str]] = {}
    for path in known:
        by_name.setdefault(path.split(".", 1)[1], []).append(path)
    out = []
    for key, value in values.items():
        if value is None:
            continue
        path = TRAIN_ALIASES.get(key) or (key if key in known else key.replace("__", ".", 1))
        if path not in known:
            matches = by_name.get(key, [])
            if len(matches) != 1:
                raise ValueError(f"unknown setting {key!r}" if not matches else
                                 f"{key!r} is ambiguous: name one of {sorted(matches)}")
            path = matches[0]
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        out.append(f"{path}={json.dumps(list(value) if isinstance(value, tuple) else value)}")
    return out
