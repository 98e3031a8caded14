"""The demo: synthetic shapes -> train a small model on the CPU -> evaluate -> a picture of detections."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .builders import (eval_settings, load_checkpoint, model_from_config, open_source, set_classes,
                       task_from_config)
from .data import make_synthetic_dataset, read_image
from .engine.evaluator import evaluate
from .engine.predictor import Predictor
from .engine.trainer import Trainer
from .presets import get_preset


def detection_grid(predictor: Predictor, paths: list[Path], score_thresh: float = 0.3, columns: int = 4,
                   zoom: int = 2) -> np.ndarray:
    """Predictions drawn on ``paths``, tiled into one picture (each image enlarged ``zoom`` times)."""
    tiles = []
    for path in paths:
        image = read_image(path)
        image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        pred = predictor(image)
        tiles.append(predictor.draw(image, pred, score_thresh, heatmap=False))
    h, w = tiles[0].shape[:2]
    while len(tiles) % columns:
        tiles.append(np.zeros((h, w, 3), np.uint8))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def run_demo(out_dir: str | Path = "runs/demo", epochs: int | None = None, device: str = "cpu",
             num_train: int = 512, num_val: int = 64, progress: bool = True) -> dict[str, Any]:
    """Generate the synthetic set, train ``ctdet_cpu_small`` on it, evaluate, draw. Returns a summary."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    paths = make_synthetic_dataset(out_dir / "data", num_train=num_train, num_val=num_val, image_size=(128, 128),
                                   num_classes=3, seed=0)
    cfg = get_preset("ctdet_cpu_small")
    cfg.data.train, cfg.data.val = str(paths["train_ann"]), str(paths["val_ann"])
    cfg.train.out_dir, cfg.train.device = str(out_dir), device
    cfg.train.epochs = epochs or cfg.train.epochs
    train_source, val_source = open_source(cfg.data.train), open_source(cfg.data.val)
    set_classes(cfg, train_source)
    task = task_from_config(cfg)
    trainer = Trainer(cfg, model_from_config(cfg, task), task, train_source, val_source, progress=progress)
    trainer.fit()
    train_seconds = time.perf_counter() - start
    best = out_dir / ("best.pth" if (out_dir / "best.pth").exists() else "last.pth")
    cfg, model, task = load_checkpoint(best, device)
    metrics = evaluate(model, task, val_source, eval_settings(cfg), device, progress=False).metrics
    predictor = Predictor(model, task, eval_settings(cfg), cfg.task.class_names, cfg.task.cat_ids, device)
    picture = out_dir / "detections.png"
    val_images = sorted(paths["val_images"].iterdir())[:8]
    cv2.imwrite(str(picture), detection_grid(predictor, val_images))
    return {"AP": round(metrics["AP"], 4), "AP50": round(metrics["AP50"], 4), "checkpoint": str(best),
            "picture": str(picture), "seconds": round(time.perf_counter() - start, 1),
            "train_seconds": round(train_seconds, 1)}
