"""The Python facade (centernet.CenterNet / Result): every input kind gives the same detections as the
predictor the CLI uses; val, export and train go through the CLI's code path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.app.builders import model_from_config, task_from_config
from centernet.cli import main
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset
from centernet.engine.checkpoint import save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = "resdcn_18_tiny"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("facade")
    data = make_synthetic_dataset(root / "data", num_train=8, num_val=3, image_size=(64, 64))
    cfg = ExperimentConfig()
    cfg.model.arch = TINY
    cfg.data.input_size = (64, 64)
    cfg.task.num_classes = 3
    cfg.task.class_names = ["rectangle", "ellipse", "triangle"]
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pth", cfg, model_from_config(cfg, task_from_config(cfg)))
    return root, data


def test_import_centernet_stays_torch_free():
    code = "import sys, centernet\nprint('torch' in sys.modules)\ncenternet.CenterNet\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.stdout.split() == ["False", "True"], done.stderr  # torch only once the facade is used


def test_every_input_kind_gives_the_same_detections(setup):
    from PIL import Image

    from centernet import CenterNet, Result

    root, data = setup
    model = CenterNet(root / "tiny.pth", device="cpu", progress=False)
    files = sorted(Path(data["val_images"]).iterdir())
    by_folder = model.predict(data["val_images"], score=0.05)
    assert [r.path for r in by_folder] == [str(p) for p in files] and all(isinstance(r, Result) for r in by_folder)
    by_glob = model.predict(str(Path(data["val_images"]) / "*.png"), score=0.05, batch=2)
    by_list = model.predict([str(p) for p in files], score=0.05)
    bgr = cv2.imread(str(files[0]))
    by_bgr = model.predict(bgr, score=0.05)[0]
    by_rgb = model.predict(bgr[..., ::-1].copy(), score=0.05, rgb=True)[0]
    by_pil = model(Image.open(files[0]), score=0.05)[0]
    direct = model.predictor()(bgr).rows
    direct = direct[direct[:, 4] >= 0.05]
    for result in (by_folder[0], by_glob[0], by_list[0], by_bgr, by_rgb, by_pil):
        np.testing.assert_allclose(result.rows, direct, atol=1e-4)
    for a, b in zip(by_folder, by_glob):  # batched (2 per network run) == one by one
        np.testing.assert_allclose(a.rows, b.rows, atol=1e-4)
    r = by_folder[0]
    assert len(r) == len(direct) and r.boxes.shape == (len(r), 4) and np.all(r.scores >= 0.05)
    assert r.names == [model.class_names[i] for i in r.class_ids] and set(r.fields) == {"boxes", "scores",
                                                                                         "class_ids"}
    assert r.keypoints is None
    picture = r.plot()
    assert picture.shape == bgr.shape and len(r) > 0 and not np.array_equal(picture, bgr)
    assert cv2.imread(str(r.save(root / "drawn.png"))).shape == bgr.shape
    coco = r.to_coco(image_id=7)
    assert len(coco) == len(r) and coco[0]["image_id"] == 7 and coco[0]["category_id"] == int(r.class_ids[0]) + 1


def test_bad_inputs_are_clear(setup):
    from centernet import CenterNet

    root, _ = setup
    model = CenterNet(root / "tiny.pth", device="cpu", progress=False)
    with pytest.raises(TypeError, match="cannot predict on a dict"):
        model.predict({"not": "an image"})
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        model.predict(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        CenterNet(root / "absent.pth")
    with pytest.raises(ValueError, match="is a preset: train it first"):
        CenterNet("ctdet_cpu_small").predict(np.zeros((8, 8, 3), np.uint8))


def test_keypoints_of_a_pose_model(tmp_path):
    from centernet import CenterNet

    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size = TINY, (64, 64)
    cfg.task.name, cfg.task.num_classes, cfg.task.class_names = "multi_pose", 1, ["person"]
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "pose.pth", cfg, model_from_config(cfg, task_from_config(cfg)))
    result = CenterNet(tmp_path / "pose.pth", device="cpu").predict(np.full((64, 80, 3), 90, np.uint8), score=0)[0]
    assert result.keypoints.shape == (len(result), 17, 2)
    assert result.fields["keypoint_scores"].shape == (len(result), 17)
    np.testing.assert_array_equal(result.keypoints.reshape(len(result), -1), result.rows[:, 6:40])
    assert "keypoints" in result.to_coco()[0]


def test_val_and_export_share_the_cli_path(setup, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from centernet import CenterNet

    root, data = setup
    model = CenterNet(root / "tiny.pth", device="cpu", progress=False)
    metrics = model.val(str(data["val_ann"]), report=str(tmp_path / "report"))
    assert main(["eval", str(root / "tiny.pth"), "--data", str(data["val_ann"]), "--workers", "0",
                 "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text()) == pytest.approx(metrics)
    assert {"pr_curves.png", "per_class_ap.txt", "confusion_matrix.png", "val_mosaic.jpg"} <= \
        {p.name for p in (tmp_path / "report").iterdir()}
    onnx_path = model.export("onnx", out=tmp_path / "tiny.onnx")
    image = cv2.imread(str(sorted(Path(data["val_images"]).iterdir())[0]))
    ours, exported = model.predict(image, score=0.2)[0], CenterNet(onnx_path).predict(image, score=0.2)[0]
    np.testing.assert_allclose(np.sort(exported.scores), np.sort(ours.scores), atol=1e-4)


def test_export_without_onnx_names_the_extra(setup, tmp_path, capsys, monkeypatch):
    root, _ = setup
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    assert main(["export", str(root / "tiny.pth"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'centernet[onnx]'" in err


def test_train_from_a_preset_then_predict(setup, tmp_path):
    from centernet import CenterNet

    _, data = setup
    model = CenterNet("ctdet_cpu_small", device="cpu", progress=False)
    summary = model.train(data=str(data["train_ann"]), val=str(data["val_ann"]), epochs=1, arch=TINY,
                          batch_size=4, input_size=[64, 64], out=str(tmp_path / "run"), workers=0, flops=False,
                          max_steps_per_epoch=1, **{"train.reports": False})
    assert Path(summary["out_dir"]) == (tmp_path / "run").resolve() and summary["history"][0]["epoch"] == 1
    assert model.spec == str((tmp_path / "run" / "best.pth").resolve()) and model.cfg.model.arch == TINY
    assert len(model.predict(data["val_images"], score=0.0)) == 3
    with pytest.raises(ValueError, match="'weights' is ambiguous|unknown setting 'nonsense'"):
        model.train(data=str(data["train_ann"]), nonsense=1)


def test_result_save_without_a_path_never_overwrites(setup, tmp_path, monkeypatch):
    import centernet.api
    from centernet import CenterNet

    root, data = setup
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(centernet.api, "_SAVE_FOLDER", [])  # a fresh process
    (tmp_path / "predictions").mkdir()  # an earlier run's folder: not reused
    model = CenterNet(str(root / "tiny.pth"), device="cpu", progress=False)
    first = sorted(Path(data["val_images"]).iterdir())[0]
    a, = model.predict(str(first), score=0.05)
    b, = model.predict(str(first), score=0.05)
    paths = [a.save(), b.save(), model.predict(cv2.imread(str(first)))[0].save()]
    assert [p.parent.name for p in paths] == ["predictions2"] * 3
    assert [p.name for p in paths] == [f"{first.stem}_pred.jpg", f"{first.stem}_pred_2.jpg", "image_pred.jpg"]
    assert all(cv2.imread(str(p)) is not None for p in paths)
