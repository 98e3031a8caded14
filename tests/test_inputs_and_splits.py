"""predict on several inputs (files, folders, globs) with batches prepared in workers; named splits
(VOC ImageSets, `centernet split` lists); eval and analyze in the same unit; a missing device in one line."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.app.builders import model_from_config, open_source, task_from_config
from centernet.cli import main
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset, open_dataset
from centernet.engine.analyze import AnalysisRow, format_table
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.inputs import expand_inputs, unique_stems


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    data = make_synthetic_dataset(root / "data", num_train=10, num_val=4, image_size=(64, 64))
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size = "resdcn_18_tiny", (64, 64)
    cfg.task.num_classes, cfg.task.class_names = 3, ["rectangle", "ellipse", "triangle"]
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pth", cfg, model_from_config(cfg, task_from_config(cfg)))
    return root, data


def test_several_inputs_batched_in_workers_match_one_by_one(setup, tmp_path, capsys):
    root, data = setup
    val = sorted(Path(data["val_images"]).iterdir())
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / val[0].name), cv2.imread(str(val[0]))[:, ::-1])  # same name, another folder
    inputs = [str(val[0]), str(Path(data["val_images"]) / "*.png"), str(other)]
    assert expand_inputs(inputs)[:2] == [val[0], val[1]]  # val[0] once, in the order first named
    runs = {}
    for batch, workers in ((1, 0), (3, 2)):
        out = tmp_path / f"b{batch}"
        assert main(["predict", str(root / "tiny.pth"), *inputs, "--out", str(out), "--batch", str(batch),
                     "--workers", str(workers), "--score", "0.1", "--device", "cpu"]) == 0
        runs[batch] = (json.loads((out / "detections.json").read_text()), capsys.readouterr().out.splitlines())
        assert sorted(p.name for p in out.glob("*_pred.jpg")) == sorted(
            [f"{p.stem}_pred.jpg" for p in val] + [f"{val[0].stem}_2_pred.jpg"])
    (single, lines1), (batched, lines3) = runs[1], runs[3]
    assert len(single) == len(batched) > 0
    for a, b in zip(single, batched):
        assert a["file_name"] == b["file_name"] and a["image_id"] == b["image_id"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-5) and a["bbox"] == pytest.approx(b["bbox"], abs=1e-2)
    per_image = [line for line in lines1 if re.match(r"^\S+\.png: \d+ detections? >= 0\.1", line)]
    assert len(per_image) == 5 and per_image == [line for line in lines3 if line in per_image]
    counted = sum(int(line.split(": ")[1].split()[0]) for line in per_image)
    assert counted == len(single) and f"{len(single)} detections >= 0.1" in lines1[-1]


def test_unique_stems():
    paths = [Path("a/x.jpg"), Path("a/x.png"), Path("b/x.jpg"), Path("a/y.jpg")]
    assert unique_stems(paths) == ["x_jpg", "x_png", "x_jpg_2", "y"]


def _voc(root: Path, names: list[str]) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for i, name in enumerate(names):
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), np.full((40, 50, 3), 20 * i, np.uint8))
        (root / "annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>50</width><height>40</height></size>"
            f"<object><name>{'cat' if i % 2 else 'dog'}</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax>"
            "<ymax>35</ymax></bndbox></object></annotation>")
    return root


def test_voc_imagesets_split_and_the_split_command(tmp_path, capsys):
    voc = _voc(tmp_path / "voc", [f"im{i}" for i in range(10)])
    assert main(["split", str(voc), "--val-fraction", "0.3", "--seed", "5"]) == 0
    assert "--split train --val" in capsys.readouterr().out
    train_ids = (voc / "ImageSets" / "Main" / "train.txt").read_text().split()
    val_ids = (voc / "ImageSets" / "Main" / "val.txt").read_text().split()
    assert len(val_ids) == 3 and sorted(train_ids + val_ids) == [f"im{i}" for i in range(10)]
    assert [Path(s.path).stem for s in open_dataset(voc, split="val").samples] == val_ids
    assert len(open_dataset(voc, split="train")) == 7
    assert main(["split", str(voc), "--seed", "5", "--val-fraction", "0.3"]) == 2  # exists: refused
    assert "--exist-ok" in capsys.readouterr().err
    assert main(["split", str(voc), "--seed", "5", "--val-fraction", "0.3", "--exist-ok"]) == 0
    assert (voc / "ImageSets" / "Main" / "val.txt").read_text().split() == val_ids  # same seed, same split
    assert main(["split", str(voc), "--seed", "6", "--val-fraction", "0.3", "--exist-ok"]) == 0
    assert main(["train", "--train", str(voc), "--split", "nope"]) == 2
    assert "VOC split file not found" in capsys.readouterr().err


def test_split_of_a_coco_json_selects_by_file_name(setup, tmp_path):
    _, data = setup
    ann = Path(data["train_ann"])
    assert main(["split", str(ann), "--val-fraction", "0.2", "--seed", "0"]) == 0
    listed = ann.with_name(f"{ann.stem}.val.txt").read_text().split()
    val = open_source(str(ann), split="val")
    assert [Path(s.path).name for s in val.samples] == listed and len(listed) == 2
    assert len(open_source(str(ann), split="train")) == 8 and val.class_names == open_source(str(ann)).class_names


def test_eval_and_analyze_print_fractions():
    rows = [AnalysisRow("none", frozenset(), {"AP": 0.3456, "AP50": 0.5, "AP75": 0.25}),
            AnalysisRow("hm + wh", frozenset({"wh", "hm"}), {"AP": 0.9, "AP50": 1.0, "AP75": 0.95})]
    lines = format_table(rows).splitlines()
    assert lines[-2].split() == ["none", "nothing", "(the", "model", "as", "it", "is)", "0.346", "0.500", "0.250"]
    assert lines[-1].split()[-6:] == ["hm,", "wh", "maps", "0.900", "1.000", "0.950"]


def test_a_device_this_machine_lacks_is_one_line(setup, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    root, data = setup
    assert main(["predict", str(root / "tiny.pth"), str(data["val_images"]), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CUDA is not available here; use --device cpu" in err
