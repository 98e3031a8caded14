"""A synthetic COCO-size data set for the scale checks (tests/test_scale.py, benchmarks/bench_scale.py).

``<root>/annotations/instances_train2017.json`` shaped like COCO's (the same keys per image, annotation and
category, 80 categories with COCO's ids 1..90, a short polygon per annotation, about 1% crowd regions), and
``<root>/train2017/`` where every image is a symbolic link to one JPEG of the annotated size. The default
size is COCO train2017's: 118,287 images and 860,001 boxes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

COCO_IMAGES, COCO_BOXES = 118_287, 860_001
#: COCO's category ids (80 of 1..90)
COCO_CAT_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A JPEG of ``size`` (w, h) with some structure (smooth gradients and noise: a realistic decode cost)."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
    image = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def coco_scale_annotations(images: int, boxes: int, size: tuple[int, int], seed: int = 0) -> dict:
    """The json content: ``images`` images of ``size``, ``boxes`` annotations spread over them at random."""
    rng = np.random.default_rng(seed)
    w, h = size
    image_ids = rng.choice(np.arange(1, 10 * images), size=images, replace=False)
    entries = [{"license": int(k % 8) + 1, "file_name": f"{int(i):012d}.jpg",
                "coco_url": f"http://images.cocodataset.org/train2017/{int(i):012d}.jpg", "height": h, "width": w,
                "date_captured": "2013-11-14 11:18:45", "flickr_url": f"http://farm4.staticflickr.com/{int(i)}.jpg",
                "id": int(i)} for k, i in enumerate(image_ids)]
    owner = image_ids[rng.integers(0, images, size=boxes)]
    cats = rng.choice(COCO_CAT_IDS, size=boxes)
    bw = np.round(rng.uniform(4, w / 2, size=boxes), 2)
    bh = np.round(rng.uniform(4, h / 2, size=boxes), 2)
    x = np.round(rng.uniform(0, w - bw), 2)
    y = np.round(rng.uniform(0, h - bh), 2)
    crowd = rng.random(boxes) < 0.01
    anns = []
    for k in range(boxes):
        x1, y1, x2, y2 = float(x[k]), float(y[k]), float(x[k] + bw[k]), float(y[k] + bh[k])
        anns.append({"segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]], "area": float(bw[k] * bh[k]),
                     "iscrowd": int(crowd[k]), "image_id": int(owner[k]), "bbox": [x1, y1, float(bw[k]), float(bh[k])],
                     "category_id": int(cats[k]), "id": 900_000 + k})
    categories = [{"supercategory": "thing", "id": c, "name": f"class{c}"} for c in COCO_CAT_IDS]
    return {"info": {"description": "synthetic COCO-size set"}, "licenses": [], "images": entries,
            "annotations": anns, "categories": categories}


def make_coco_scale(root: str | Path, images: int = COCO_IMAGES, boxes: int = COCO_BOXES,
                    size: tuple[int, int] = (640, 480), seed: int = 0, links: bool = True) -> Path:
    """Write the set under ``root`` (reused when a set of these parameters is there); returns the json file.
    ``links=False``: no image files (for what reads annotations only)."""
    root = Path(root)
    ann = root / "annotations" / "instances_train2017.json"
    stamp = root / "made_with.json"
    params = {"images": images, "boxes": boxes, "size": list(size), "seed": seed, "links": links}
    if ann.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == params:
        return ann
    content = coco_scale_annotations(images, boxes, size, seed)
    folder = root / "train2017"
    folder.mkdir(parents=True, exist_ok=True)
    image = write_image(root / "one.jpg", size, seed)
    for entry in content["images"] if links else ():
        link = folder / entry["file_name"]
        if not link.is_symlink():
            os.symlink(os.path.relpath(image, folder), link)
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(content))
    stamp.write_text(json.dumps(params))
    return ann


# ------------------------------------------------------------------------------------------ worker memory
def private_kb() -> int:
    """This process's private memory in KiB (Private_Clean + Private_Dirty of /proc/self/smaps_rollup): pages
    shared with the parent since the fork are not counted until one side writes to them (copy on write)."""
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def can_measure_workers() -> bool:
    """Whether :func:`worker_growth` can run here (Linux with smaps_rollup, workers forked)."""
    import multiprocessing

    return os.path.exists("/proc/self/smaps_rollup") and multiprocessing.get_start_method(allow_none=False) == "fork"


class _Probe:
    """``probe[i]``: read sample ``i`` as the training pipeline does (every field); the worker's private KiB
    after its ``at``-th reads (a reading walks the page tables: too slow to take at every read), else -1."""

    def __init__(self, source, at: tuple[int, ...]) -> None:
        self.source, self.at, self.reads = source, set(at), 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[int, int]:
        sample = self.source[index]
        str(sample.path), sample.width, sample.height, sample.image_id, sample.calib, sample.extra
        float(sample.boxes.sum()), int(sample.labels.sum()), int(sample.ignore.sum())
        if sample.keypoints is not None:
            float(sample.keypoints.sum())
        self.reads += 1
        return os.getpid(), private_kb() if self.reads in self.at else -1


#: readings per worker after its warm-up: the growth per sample is measured over each of this many parts
SEGMENTS = 6


def worker_growth(source, workers: int = 2, samples: int = 3000, warmup: int = 300,
                  seed: int = 0) -> list[dict[str, float]]:
    """How much each DataLoader worker's private memory grows per sample it reads, reading ``samples`` samples
    each (at random indices, as a shuffled epoch does) after ``warmup`` each: per worker ``{"mean": bytes per
    sample over all of them, "rate": the median over SEGMENTS equal parts}``. The rate is the cost of reading
    one more sample; the mean also holds one-time costs (a table of the interpreter's that the worker happens
    to enlarge while it reads)."""
    from torch.utils.data import DataLoader

    step = samples // SEGMENTS
    at = tuple(warmup + k * step for k in range(SEGMENTS + 1))
    n = workers * at[-1]
    order = np.random.default_rng(seed).integers(0, len(source), size=n).tolist()
    loader = DataLoader(_Probe(source, at), batch_size=None, sampler=order, num_workers=workers,
                        collate_fn=lambda item: item)
    seen: dict[int, list[int]] = {}
    for pid, kb in loader:
        if kb >= 0:
            seen.setdefault(pid, []).append(kb)
    out = []
    for readings in seen.values():
        parts = [(b - a) * 1024 / step for a, b in zip(readings, readings[1:])]
        out.append({"mean": (readings[-1] - readings[0]) * 1024 / (at[-1] - at[0]),
                    "rate": float(np.median(parts))})
    return out
