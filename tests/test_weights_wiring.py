"""Weights by name, wired through training, the CLI and the package (no network: files are placed in a
temporary torch hub cache, and the registry's addresses point at a port nobody listens on)."""
from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import cv2
import pytest
import torch

import centernet
from centernet.app.builders import model_from_config, task_from_config
from centernet.cli import main
from centernet.data import make_synthetic_dataset
from centernet.engine.predictor import Predictor
from centernet.weights import catalogue as weights
from centernet.weights.official import to_official_state_dict
from centernet.weights.pretrained import official_config

ZOO = "ctdet_coco_dla_2x"
TINY = "resdcn_18_tiny"


def _dead_url(name: str) -> str:
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/{name}"


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("weights"), num_train=8, num_val=2, image_size=(64, 64))


@pytest.fixture()
def tiny_zoo(cache, monkeypatch):
    """The registry's ctdet_coco_dla_2x entry on a tiny architecture at 64 px, its file in the cache
    (written in the original's format); returns the model that file was made from."""
    info = weights.weights_info(ZOO)
    monkeypatch.setitem(weights._REGISTRY, ZOO, dataclasses.replace(  # noqa: SLF001
        info, arch=TINY, sha256=None, size=None, input_size=(64, 64), url=_dead_url(info.file)))
    cfg = official_config(ZOO)
    torch.manual_seed(0)
    model = model_from_config(cfg, task_from_config(cfg)).eval()
    torch.save({"epoch": 230, "state_dict": to_official_state_dict(model)}, cache / info.file)
    return model


def _train(data, out, *extra: str) -> list[str]:
    return ["train", "--preset", "ctdet_cpu_small", "--arch", TINY, "--train", str(data["train_ann"]),
            "--batch-size", "4", "--epochs", "1", "--out", str(out), "--workers", "0", "--device", "cpu",
            "--set", "data.input_size=[64,64]", "train.flops=false", "train.reports=false",
            "train.max_steps_per_epoch=1", *extra]


def test_zoo_name_loads_into_a_model(tiny_zoo):
    cfg = official_config(ZOO)
    assert cfg.task.class_names[:2] == ["person", "bicycle"] and cfg.task.cat_ids[-1] == 90
    assert cfg.data.input_size == (64, 64) and cfg.model.arch == TINY
    fresh = model_from_config(cfg, task_from_config(cfg))
    report = centernet.load_official_checkpoint(fresh, ZOO)  # the name alone
    assert report.ok and len(report.loaded) == len(fresh.state_dict())
    for (name, a), b in zip(tiny_zoo.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_predict_by_zoo_name(tiny_zoo, shapes, tmp_path, capsys):
    image_path = sorted(Path(shapes["val_images"]).iterdir())[0]
    out = tmp_path / "pred"
    assert main(["predict", ZOO, str(image_path), "--out", str(out), "--score", "0.05", "--workers", "0",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.splitlines()
    results = json.loads((out / "detections.json").read_text())
    assert printed[0].startswith(f"{image_path.name}: {len(results)} detections >= 0.05")
    assert {r["category_id"] for r in results} <= set(weights.COCO_CAT_IDS)  # COCO ids, not 1..80
    cfg = official_config(ZOO)
    direct = Predictor(tiny_zoo, task_from_config(cfg), _settings(cfg), list(cfg.task.class_names),
                       list(cfg.task.cat_ids))(cv2.imread(str(image_path)))
    kept = direct.rows[direct.rows[:, 4] >= 0.05]
    assert len(results) == len(kept) and results[0]["score"] == pytest.approx(float(kept[0, 4]), abs=1e-5)


def _settings(cfg):
    from centernet.app.builders import eval_settings

    return eval_settings(cfg)


def test_missing_zoo_file_says_where_to_put_it(tiny_zoo, cache, shapes, tmp_path, capsys):
    (cache / f"{ZOO}.pth").unlink()
    image_path = sorted(Path(shapes["val_images"]).iterdir())[0]
    assert main(["predict", ZOO, str(image_path), "--out", str(tmp_path / "p"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"put the file at {cache / (ZOO + '.pth')}" in err


def test_pretrained_imagenet_offline_is_one_line(cache, shapes, tmp_path, capsys, monkeypatch):
    info = weights.weights_info("resnet18_imagenet")
    monkeypatch.setitem(weights._REGISTRY, info.name,  # noqa: SLF001
                        dataclasses.replace(info, url=_dead_url(info.file)))
    out = tmp_path / "run"
    argv = _train(shapes, out, "--arch", "res_18", "--pretrained", "imagenet")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: could not download resnet18-f37072fd.pth")
    assert f"put the file at {cache / info.file}" in err and "--pretrained none" in err
    assert not out.exists()  # nothing claimed for a run that could not start


def test_pretrained_by_path_and_by_name_from_the_cache(cache, shapes, tmp_path, capsys, monkeypatch):
    cfg = official_config(ZOO)
    cfg.model.arch = TINY
    torch.manual_seed(1)
    backbone = model_from_config(cfg, task_from_config(cfg)).backbone.state_dict()
    path = tmp_path / "backbone.pth"
    torch.save(backbone, path)
    info = weights.weights_info("resnet18_imagenet")  # by name: the same tensors placed in the cache
    monkeypatch.setitem(weights._REGISTRY, info.name, dataclasses.replace(info, sha256=None))  # noqa: SLF001
    torch.save(backbone, cache / info.file)
    for given, out in ((str(path), tmp_path / "by_path"), (info.name, tmp_path / "by_name")):
        assert main(_train(shapes, out, "--pretrained", given, "--lr", "1e-12")) == 0
        printed = capsys.readouterr().out
        file_name = Path(given).name if given.endswith(".pth") else info.file
        assert f"pretrained backbone {file_name}: {len(backbone)} tensors loaded" in printed
        trained = torch.load(out / "last.pth", weights_only=True)["model"]
        torch.testing.assert_close(trained["backbone.conv1.weight"], backbone["conv1.weight"], rtol=0, atol=1e-6)
    stored = json.loads((tmp_path / "by_path" / "config.json").read_text())["model"]["pretrained"]
    assert stored == str(path.resolve())


def test_fine_tune_from_a_zoo_name(tiny_zoo, shapes, tmp_path, capsys):
    """--weights NAME: every tensor that fits is loaded; the 80-class heatmap head stays fresh for 3 classes."""
    out = tmp_path / "run"
    assert main(_train(shapes, out, "--weights", ZOO, "--lr", "1e-12")) == 0
    printed = capsys.readouterr().out
    assert f"initial weights {ZOO}.pth: " in printed and "mis-shaped" in printed
    trained = torch.load(out / "last.pth", weights_only=True)["model"]
    source = tiny_zoo.state_dict()
    torch.testing.assert_close(trained["backbone.conv1.weight"], source["backbone.conv1.weight"], rtol=0, atol=1e-6)
    assert trained["heads.0.hm.2.weight"].shape[0] == 3 and source["heads.0.hm.2.weight"].shape[0] == 80


def test_paper_presets_default_to_imagenet_cpu_presets_stay_offline():
    from centernet.presets import get_preset

    assert get_preset("ctdet_dla34_coco_1x").model.pretrained == "imagenet"
    assert get_preset("ctdet_resdcn18_voc").model.pretrained == "imagenet"
    assert get_preset("ctdet_hourglass_coco").model.pretrained is None  # no ImageNet Hourglass exists
    assert get_preset("ctdet_cpu_small").model.pretrained is None
    assert get_preset("multi_pose_cpu_small").model.pretrained is None
