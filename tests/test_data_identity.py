"""Data identity is checked, never assumed: models and data meet by class name (remapped or refused with both
lists), ids in a COCO json are unique or refused, split files list paths relative to the image folder, and
objects past data.max_objects are counted and reported once."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from centernet.app import runs
from centernet.app.builders import model_from_config, open_source, task_from_config
from centernet.cli import main
from centernet.config import ExperimentConfig
from centernet.data import DataError, make_synthetic_dataset, open_dataset
from centernet.data.pipeline import TrainDataset, collate
from centernet.data.sample import Relabeled, Sample
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.evaluator import EvalSettings, evaluate
from centernet.tasks import build_task

NAMES = ["rectangle", "ellipse", "triangle"]  # the synthetic set's classes, by category id 1, 2, 3
PERMUTED_IDS = {1: 3, 2: 1, 3: 2}  # rectangle -> 3, ellipse -> 1, triangle -> 2: sorted by id, another order


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    data = make_synthetic_dataset(root / "data", num_train=6, num_val=4, image_size=(64, 64))
    return root, data


def _rewrite(src: Path, dst: Path, change) -> Path:
    content = json.loads(src.read_text())
    change(content)
    dst.write_text(json.dumps(content))
    return dst


def _permute_ids(content: dict) -> None:
    """Same names, same boxes, other category ids."""
    for cat in content["categories"]:
        cat["id"] = PERMUTED_IDS[cat["id"]]
    for ann in content["annotations"]:
        ann["category_id"] = PERMUTED_IDS[ann["category_id"]]


def _cfg(names: list[str] | None = NAMES) -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size, cfg.data.test_flip = "resdcn_18_tiny", (64, 64), False
    cfg.task.num_classes, cfg.task.class_names = 3, list(names or [])
    cfg.task.cat_ids = [1, 2, 3] if names else []
    return cfg


class Replay:
    """A runner that answers the i-th batch with the ground-truth maps of the i-th image of the data it was made
    from, channels in that data's class order: a perfect model of that data (the test and training geometry
    agree on these 64x64 images)."""

    def __init__(self, source, task) -> None:
        items = TrainDataset(source, task, (64, 64), 4, augment=False)
        self.maps = [task.oracle_maps(collate([items[i]])) for i in range(len(items))]
        self.calls = 0

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.maps[self.calls % len(self.maps)]
        self.calls += 1
        return {k: v.to(images.device) for k, v in maps.items()}


def test_eval_on_permuted_category_ids_gives_the_same_ap(shapes, tmp_path):
    _, data = shapes
    original = Path(data["val_ann"])
    permuted = _rewrite(original, tmp_path / "permuted.json", _permute_ids)
    images = str(data["val_images"])
    assert open_source(str(permuted), images).class_names == ["ellipse", "triangle", "rectangle"]
    cfg = _cfg()
    task = task_from_config(cfg)
    replay = Replay(open_source(str(original)), task)
    loaded = runs.Loaded(cfg, task, runner=replay, source="replay")
    on_original = runs.evaluate(loaded, str(original), progress=False).metrics["AP"]
    with pytest.warns(UserWarning, match="in another order") as caught:
        on_permuted = runs.evaluate(loaded, str(permuted), images, progress=False).metrics["AP"]
    assert len([w for w in caught if "in another order" in str(w.message)]) == 1
    assert on_original > 0.9 and on_permuted == pytest.approx(on_original, abs=1e-9)
    # what the remap fixes: the same model scored against the data's own class order
    settings = EvalSettings(input_size=(64, 64), flip=False)
    unmatched = evaluate(replay, task, open_source(str(permuted), images), settings, progress=False).metrics["AP"]
    assert unmatched < on_original - 0.2
    # the ground truth of the original data scored on the permuted copy: the same as on the original
    oracle, _ = runs.oracle(str(original))
    with pytest.warns(UserWarning, match="in another order"):
        oracle_permuted = runs.evaluate(oracle, str(permuted), images, progress=False).metrics["AP"]
    assert oracle_permuted == pytest.approx(runs.evaluate(oracle, str(original), progress=False).metrics["AP"])


def test_relabeled_view_keeps_names_ids_and_boxes_together(shapes, tmp_path):
    _, data = shapes
    permuted = _rewrite(Path(data["val_ann"]), tmp_path / "permuted.json", _permute_ids)
    source = open_source(str(permuted), str(data["val_images"]))
    view = Relabeled(source, NAMES)
    assert view.class_names == NAMES and view.cat_ids == [3, 1, 2]
    for a, b in zip(source.samples, view.samples):
        assert [source.class_names[k] for k in a.labels] == [view.class_names[k] for k in b.labels]
        assert np.array_equal(a.boxes, b.boxes) and a.path == b.path
    assert view.ann_file == source.ann_file and view.to_coco_dict() == source.to_coco_dict()


def test_eval_with_other_class_names_is_refused_showing_both_lists(shapes, tmp_path, capsys):
    _, data = shapes
    checkpoint = tmp_path / "tiny.pth"
    cfg = _cfg()
    torch.manual_seed(0)
    save_checkpoint(checkpoint, cfg, model_from_config(cfg, task_from_config(cfg)))

    def rename(content: dict) -> None:
        content["categories"][2]["name"] = "Triangle"  # names are exact, case included

    renamed = _rewrite(Path(data["val_ann"]), tmp_path / "renamed.json", rename)
    argv = ["eval", str(checkpoint), "--data", str(renamed), "--images", str(data["val_images"]), "--workers", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "has other class names than the model" in err
    assert "the model's classes ['rectangle', 'ellipse', 'triangle'], the data's ['rectangle', 'ellipse', 'Triangle']" in err
    assert "only the model's: ['triangle'], only the data's: ['Triangle']" in err
    # a checkpoint without class names (an older file) is checked by the count only
    unnamed = tmp_path / "unnamed.pth"
    save_checkpoint(unnamed, _cfg(None), model_from_config(cfg, task_from_config(cfg)))
    assert main(["eval", str(unnamed), "--data", str(renamed), "--images", str(data["val_images"]),
                 "--workers", "0"]) == 0


def test_long_class_lists_are_shortened_in_the_refusal():
    model = ExperimentConfig()
    model.task.num_classes, model.task.class_names = 30, [f"c{i}" for i in range(30)]

    class Data:
        class_names = [f"d{i}" for i in range(25)]

    with pytest.raises(ValueError) as raised:
        runs.match_classes(Data(), model, "x.json")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("x.json has 25 classes, the model predicts 30: ")
    assert "'c9', ... 20 more]" in message and "'d9', ... 15 more]" in message and "'c10'" not in message


def test_eval_cli_says_once_that_classes_are_matched_by_name(shapes, tmp_path):
    _, data = shapes
    checkpoint = tmp_path / "tiny.pth"
    cfg = _cfg()
    save_checkpoint(checkpoint, cfg, model_from_config(cfg, task_from_config(cfg)))
    permuted = _rewrite(Path(data["val_ann"]), tmp_path / "permuted.json", _permute_ids)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(checkpoint), "--data", str(permuted), "--images", str(data["val_images"]),
                     "--workers", "0"]) == 0
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
        f"{permuted} has the model's 3 classes in another order (the data's: ['ellipse', 'triangle', 'rectangle']; "
        "the model's: ['rectangle', 'ellipse', 'triangle']); results are matched to the data's classes by name"]


# ------------------------------------------------------------------------------------------ unique ids
def _duplicate_image_id(content: dict) -> None:
    content["images"][2]["id"] = content["images"][1]["id"]


def _duplicate_annotation_ids(content: dict) -> None:
    for ann in content["annotations"][1:4]:
        ann["id"] = content["annotations"][0]["id"]


def _duplicate_category_id(content: dict) -> None:
    content["categories"][2]["id"] = 2


@pytest.mark.parametrize("change, says", [
    (_duplicate_image_id, "image id 2 occurs 2 times (1 duplicates); image ids must be unique"),
    (_duplicate_annotation_ids, "annotation id 1 occurs 4 times (3 duplicates); annotation ids must be unique"),
    (_duplicate_category_id, "category id 2 occurs 2 times (1 duplicates); category ids must be unique"),
], ids=["image", "annotation", "category"])
def test_duplicate_ids_are_refused(shapes, tmp_path, change, says):
    _, data = shapes
    ann = _rewrite(Path(data["train_ann"]), tmp_path / "dup.json", change)
    with pytest.raises(DataError) as raised:
        open_dataset(ann, image_dir=data["train_images"])
    assert str(raised.value) == f"{ann}: {says}"


def test_annotations_without_ids_are_numbered_for_scoring(shapes, tmp_path):
    _, data = shapes

    def drop_ids(content: dict) -> None:
        for ann in content["annotations"]:
            del ann["id"]

    ann = _rewrite(Path(data["val_ann"]), tmp_path / "noid.json", drop_ids)
    ids = [a["id"] for a in open_dataset(ann, image_dir=data["val_images"]).to_coco_dict()["annotations"]]
    assert sorted(ids) == list(range(1, len(ids) + 1))
    assert main(["eval", "--oracle", "--data", str(ann), "--images", str(data["val_images"]), "--workers", "0"]) == 0


# ------------------------------------------------------------------------------------------ splits
def _two_cameras(root: Path, data: dict) -> Path:
    """A COCO set whose images sit in cam1/ and cam2/ under the same file names."""
    images = root / "images"
    content = json.loads(Path(data["train_ann"]).read_text())
    for k, entry in enumerate(content["images"]):
        name = f"cam{k % 2 + 1}/{k // 2:03d}.png"
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(data["train_images"]) / entry["file_name"], images / name)
        entry["file_name"] = name
    ann = root / "cams.json"
    ann.write_text(json.dumps(content))
    return ann


def test_split_lists_paths_relative_to_the_image_folder(shapes, tmp_path):
    _, data = shapes
    ann = _two_cameras(tmp_path, data)
    assert main(["split", str(ann), "--images", str(tmp_path / "images"), "--val-fraction", "0.5"]) == 0
    listed = {name: (tmp_path / f"cams.{name}.txt").read_text().split() for name in ("train", "val")}
    assert sorted(listed["train"] + listed["val"]) == sorted(f"cam{c}/{i:03d}.png" for c in (1, 2) for i in range(3))
    chosen = {name: open_source(str(ann), str(tmp_path / "images"), split=name) for name in ("train", "val")}
    ids = {name: {s.image_id for s in source.samples} for name, source in chosen.items()}
    assert len(ids["train"]) == len(ids["val"]) == 3 and not ids["train"] & ids["val"]
    assert [s.path.relative_to(tmp_path / "images").as_posix() for s in chosen["val"].samples] == listed["val"]


def test_old_split_files_of_base_names_are_read_when_unambiguous(shapes, tmp_path):
    _, data = shapes
    ann = _two_cameras(tmp_path, data)
    images = str(tmp_path / "images")
    (tmp_path / "cams.old.txt").write_text("000.png\n")
    with pytest.raises(DataError) as raised:
        open_source(str(ann), images, split="old")
    assert str(raised.value) == (f"{tmp_path / 'cams.old.txt'}: '000.png' matches 2 images, cam1/000.png and "
                                 "cam2/000.png; list paths relative to the image folder (`centernet split "
                                 "--exist-ok` writes them)")
    plain = tmp_path / "plain.json"  # base names are unique there
    shutil.copy(data["train_ann"], plain)
    (tmp_path / "plain.old.txt").write_text("000002.png\n000005.png\n")
    assert [s.image_id for s in open_source(str(plain), str(data["train_images"]), split="old").samples] == [2, 5]


# ------------------------------------------------------------------------------------------ max_objects
def test_objects_beyond_max_objects_are_counted_and_reported_once(shapes, tmp_path):
    _, data = shapes
    per_image = [len(s) for s in open_source(str(data["train_ann"])).samples]
    expected = sum(max(0, n - 2) for n in per_image)
    assert expected > 0
    argv = ["train", "--preset", "ctdet_cpu_small", "--arch", "resdcn_18_tiny", "--train", str(data["train_ann"]), "--epochs", "1",
            "--batch-size", "2", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "run"),
            "--set", "data.input_size=[64,64]", "data.max_objects=2", "train.max_steps_per_epoch=1",
            "train.flops=false"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    lines = [str(w.message) for w in caught if "max_objects" in str(w.message)]
    images = sum(n > 2 for n in per_image)
    assert lines == [f"{expected} objects in {images} training images beyond data.max_objects=2 are not "
                     f"trained (up to {max(per_image)} objects in one image); raise data.max_objects"]


def test_crowd_regions_are_not_counted_as_dropped():
    sample = Sample(1, Path("x.png"), 64, 64, np.tile([[1, 1, 9, 9]], (5, 1)), [0] * 5,
                    ignore=np.array([True, True, False, False, False]))
    assert build_task("ctdet", 1, max_objects=2).objects_beyond_limit(sample) == 3  # crowds take slots here
    assert build_task("ddd", 1, max_objects=2).objects_beyond_limit(sample) == 1  # and none here
    assert build_task("ctdet", 1, max_objects=5).objects_beyond_limit(sample) == 0
    assert build_task("ctdet", 1, max_objects=4).objects_beyond_limit(
        Sample(1, Path("x.png"), 64, 64, sample.boxes, sample.labels, ignore=~sample.ignore)) == 0  # a crowd past 4
