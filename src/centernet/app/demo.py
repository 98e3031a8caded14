"""The demo: a synthetic data set -> a task's small CPU preset trained briefly -> evaluation -> a picture.

``centernet demo --task NAME`` (the names of :data:`DEMOS`; each trains the preset ``<NAME>_cpu_small``):

* ``ctdet`` (the default): filled shapes of 3 kinds (:mod:`centernet.data.synthetic`), 128x128;
* ``multi_pose``: stick figures with the 17 COCO joints (:mod:`centernet.data.synthetic_pose`), 128x128;
* ``ddd``: shaded 3D boxes of Cars, Pedestrians and Cyclists in the KITTI layout, 5-30 m away
  (:mod:`centernet.data.synthetic_kitti`), 320x96;
* ``cornernet``: the shapes of ``ctdet``.

Only light modules are imported at the top, so that the command line lists the demos without loading torch.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from ..data.sample import Sample
    from ..engine.predictor import Predictor

#: (folder, training images, validation images) -> (training set, validation set), as open_dataset opens them
MakeData = Callable[[Path, int, int], tuple[Path, Path]]

DEMOS: Registry[MakeData] = Registry("demo task")
DEFAULT_TASK = "ctdet"
PICTURE_IMAGES = 8  # validation images drawn
GRID_WIDTH = 1600  # pixels: the picture has as many columns (at most 4) as fit


@DEMOS.register("ctdet")
@DEMOS.register("cornernet")
def make_shapes(folder: Path, num_train: int, num_val: int) -> tuple[Path, Path]:
    """filled shapes of 3 kinds"""
    from ..data.synthetic import make_synthetic_dataset

    paths = make_synthetic_dataset(folder, num_train=num_train, num_val=num_val, image_size=(128, 128),
                                   num_classes=3, seed=0)
    return paths["train_ann"], paths["val_ann"]


@DEMOS.register("multi_pose")
def make_stick_figures(folder: Path, num_train: int, num_val: int) -> tuple[Path, Path]:
    """stick figures with 17 joints"""
    from ..data.synthetic_pose import make_synthetic_pose_dataset

    paths = make_synthetic_pose_dataset(folder, num_train=num_train, num_val=num_val, image_size=(128, 128), seed=0)
    return paths["train_ann"], paths["val_ann"]


@DEMOS.register("ddd")
def make_boxes_3d(folder: Path, num_train: int, num_val: int) -> tuple[Path, Path]:
    """3D boxes in the KITTI layout"""
    from ..data.synthetic_kitti import make_synthetic_kitti

    paths = make_synthetic_kitti(folder, num_train=num_train, num_val=num_val, size=(320, 96), seed=0,
                                 depth_range=(5.0, 30.0))
    return paths["train_split"], paths["val_split"]


def add_demo_args(p: argparse.ArgumentParser) -> None:
    """``centernet demo``'s options (each demo named with its data: the data maker's docstring)."""
    demos = ", ".join(f"{name}: {(DEMOS.get(name).__doc__ or '').strip()}" for name in DEMOS.names())
    p.add_argument("--task", choices=DEMOS.names(), default=DEFAULT_TASK,
                   help=f"the task whose <TASK>_cpu_small preset trains on its synthetic data ({demos})")
    p.add_argument("--out", help="run folder (data, checkpoints, pictures; default: runs/demo, runs/demo_<TASK> "
                                 "for the other tasks)")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the <TASK>_cpu_small preset's)")
    p.add_argument("--num-train", type=int, default=512, help="synthetic training images")
    p.add_argument("--num-val", type=int, default=64, help="synthetic validation images")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: CUDA when available)")


def default_out_dir(task: str = DEFAULT_TASK) -> Path:
    """``runs/demo`` for the default task, ``runs/demo_<task>`` for the others."""
    return Path("runs/demo" if task == DEFAULT_TASK else f"runs/demo_{task}")


def detection_grid(predictor: Predictor, samples: Sequence[Sample], score_thresh: float = 0.3, columns: int = 4,
                   zoom: int = 2) -> np.ndarray:
    """Predictions drawn on the images of ``samples`` (each enlarged ``zoom`` times; a sample's camera
    matrix, when it has one, scaled with it), tiled into one picture of at most ``columns`` columns."""
    import cv2
    import numpy as np

    from ..data import read_image

    tiles = []
    for sample in samples:
        image = read_image(sample.path)
        image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        meta = None if sample.calib is None else {"calib": np.diag([zoom, zoom, 1.0]) @ sample.calib}
        pred = predictor(image, meta)
        tiles.append(predictor.draw(image, pred, score_thresh, heatmap=False))
    h, w = tiles[0].shape[:2]
    columns = max(1, min(columns, GRID_WIDTH // w))
    while len(tiles) % columns:
        tiles.append(np.zeros((h, w, 3), np.uint8))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def run_demo(out_dir: str | Path | None = None, epochs: int | None = None, device: str = "cpu",
             num_train: int = 512, num_val: int = 64, progress: bool = True,
             task: str = DEFAULT_TASK) -> dict[str, Any]:
    """Generate ``task``'s synthetic set (``num_train`` / ``num_val`` images) under ``out_dir`` (default
    :func:`default_out_dir`), train the ``<task>_cpu_small`` preset on it (``epochs``: default the preset's),
    evaluate the best checkpoint, draw its detections on the first validation images. Returns a summary:
    AP, AP50 (and the task's headline metric when another), checkpoint, picture, seconds, train_seconds."""
    make_data = DEMOS.get(task)
    if num_train < 1 or num_val < 1:
        raise ValueError(f"the demo needs at least 1 training and 1 validation image, got {num_train} and {num_val}")
    import cv2

    from .builders import (eval_settings, load_checkpoint, model_from_config, open_source, set_classes,
                           task_from_config)
    from ..engine.evaluator import evaluate
    from ..engine.predictor import Predictor
    from ..engine.trainer import Trainer
    from ..presets import get_preset

    start = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(task)
    train_spec, val_spec = make_data(out_dir / "data", num_train, num_val)
    cfg = get_preset(f"{task}_cpu_small")
    cfg.data.train, cfg.data.val = str(train_spec), str(val_spec)
    cfg.train.out_dir, cfg.train.device = str(out_dir), device
    cfg.train.epochs = epochs or cfg.train.epochs
    train_source = open_source(cfg.data.train, task=cfg.task.name)
    val_source = open_source(cfg.data.val, task=cfg.task.name)
    set_classes(cfg, train_source)
    train_task = task_from_config(cfg)
    Trainer(cfg, model_from_config(cfg, train_task), train_task, train_source, val_source, progress=progress).fit()
    train_seconds = time.perf_counter() - start
    best = out_dir / ("best.pth" if (out_dir / "best.pth").exists() else "last.pth")
    cfg, model, model_task = load_checkpoint(best, device)
    result = evaluate(model, model_task, val_source, eval_settings(cfg), device, progress=False)
    predictor = Predictor(model, model_task, eval_settings(cfg), cfg.task.class_names, cfg.task.cat_ids, device)
    picture = out_dir / "detections.png"
    cv2.imwrite(str(picture), detection_grid(predictor, val_source.samples[:PICTURE_IMAGES]))
    metrics = {name: round(result.metrics[name], 4) for name in dict.fromkeys([result.headline, "AP", "AP50"])
               if name in result.metrics}
    return {**metrics, "checkpoint": str(best), "picture": str(picture),
            "seconds": round(time.perf_counter() - start, 1), "train_seconds": round(train_seconds, 1)}
