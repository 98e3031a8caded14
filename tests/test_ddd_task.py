"""The "ddd" task through the shared engine: data opening, the oracle round trip, results, calibration
errors, pictures, ONNX export and the command line (eval with the KITTI table, predict --calib)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from centernet.app.builders import eval_settings, model_from_config, open_source, set_classes, task_from_config
from centernet.cli import main
from centernet.data import KittiDetection, open_dataset, read_image
from centernet.data.kitti_labels import ORIGINAL_CLASS_ORDER
from centernet.data.synthetic_kitti import make_synthetic_kitti
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.evaluator import evaluate, run_detections, scorer_results
from centernet.engine.predictor import Predictor
from centernet.models.heads import HEATMAP_PRIOR
from centernet.presets import get_preset
from centernet.tasks import TASKS, DddTask, build_task, guess_task
from centernet.tasks.ddd import GT_BOXES_KEY, gt_boxes3d
from helpers.detections import assert_same_detections

KITTI_SIZE = (1242, 375)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """12 frames at KITTI's size (the KITTI difficulties are in pixels), split 4 train / 8 val."""
    return make_synthetic_kitti(tmp_path_factory.mktemp("synk"), num_train=4, num_val=8, size=KITTI_SIZE, seed=2)


def oracle_config(source, center: str = "box"):
    cfg = get_preset("ddd_dla34_3dop")
    set_classes(cfg, source)
    cfg.task.options = {"center": center}
    return cfg


def tiny_model(source, seed: int = 0):
    """An untrained small ddd model at a quarter of KITTI's input size, and its config and task."""
    cfg = get_preset("ddd_cpu_small")
    cfg.model.arch = "resdcn_18_tiny"
    cfg.data.input_size = (320, 96)
    set_classes(cfg, source)
    task = task_from_config(cfg)
    torch.manual_seed(seed)
    return cfg, model_from_config(cfg, task).eval(), task


def test_registered_with_heads_options_and_seam_flags():
    task = build_task("ddd", 3, center="projected", radius_variant="corrected", min_overlap=0.5)
    assert isinstance(task, DddTask) and TASKS.get("ddd") is DddTask
    assert (task.center, task.radius_variant, task.min_overlap) == ("projected", "corrected", 0.5)
    heads = task.heads()
    assert {k: h.channels for k, h in heads.items()} == {"hm": 3, "dep": 1, "rot": 8, "dim": 3, "wh": 2, "reg": 2}
    assert heads["hm"].prior == HEATMAP_PRIOR and all(h.prior is None for k, h in heads.items() if k != "hm")
    assert task.weights == {"hm": 1, "dep": 1, "rot": 1, "dim": 1, "wh": 0.1, "reg": 1}
    assert not task.can_flip and task.flip_test is None
    with pytest.raises(ValueError, match="center"):
        build_task("ddd", 3, center="middle")
    cfg = get_preset("ddd_dla34_subcnn")
    assert cfg.task.class_names == list(ORIGINAL_CLASS_ORDER) and cfg.data.input_size == (1280, 384)
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.lr_steps) == (16, 70, (45, 60))


def test_open_dataset_reads_kitti_folders_and_split_files(shared_data, synthetic):
    mini = open_dataset(shared_data / "kitti_mini")
    assert isinstance(mini, KittiDetection) and guess_task(mini) == "ddd"
    val = open_dataset(synthetic["val_split"])  # <root>/ImageSets/val.txt
    assert isinstance(val, KittiDetection) and [s.image_id for s in val.samples] == list(range(4, 12))
    ddd = open_source(str(synthetic["train_split"]), task="ddd")  # the original weights' class order
    assert ddd.class_names == list(ORIGINAL_CLASS_ORDER) and len(ddd) == 4
    assert all(s.calib is not None and s.calib.shape == (3, 4) for s in ddd.samples)


def _nearest(results, sample, k):
    """The result of the same class whose 2D box is nearest to object ``k``'s."""
    box = sample.boxes[k]
    same = [r for r in results if r["image_id"] == sample.image_id and r["category_id"] == sample.labels[k] + 1]
    cost = [np.abs(np.array(r["bbox"]) - [box[0], box[1], box[2] - box[0], box[3] - box[1]]).sum() for r in same]
    return same[int(np.argmin(cost))]


@pytest.mark.parametrize("center, loc_tol, rot_tol, max_trunc", [("projected", 0.01, 0.02, 1.0),
                                                                 ("box", 0.3, 0.05, 0.05)])
def test_oracle_through_the_engine_gives_the_labels_back(synthetic, center, loc_tol, rot_tol, max_trunc):
    """encode -> oracle maps -> decode -> image pixels -> 3D -> results: every labelled object comes back
    with its dims, alpha, location and rotation (the box centre as keypoint costs some location, and far
    more on truncated objects, whose box centre is far from the 3D centre's image)."""
    source = open_source(str(synthetic["val_split"]), task="ddd")
    cfg = oracle_config(source, center)
    results = scorer_results(None, task_from_config(cfg), source, eval_settings(cfg), progress=False)
    checked = 0
    for sample in source.samples:
        keep = ~sample.ignore & (sample.keypoints[:, 0, 2] > 0)  # the 3D centre in the image
        for k in np.flatnonzero(keep & (sample.extra["trunc"] <= max_trunc)):
            r = _nearest([r for r in results if r["score"] > 0.99], sample, k)
            assert set(r) >= {"bbox", "score", "alpha", "dimensions", "location", "rotation_y"}
            np.testing.assert_allclose(r["dimensions"], sample.extra["dim"][k], atol=1e-3)
            assert abs((r["alpha"] - sample.extra["alpha"][k] + np.pi) % (2 * np.pi) - np.pi) < 1e-3
            assert np.abs(np.array(r["location"]) - sample.extra["loc"][k]).max() < loc_tol
            assert abs((r["rotation_y"] - sample.extra["rot_y"][k] + np.pi) % (2 * np.pi) - np.pi) < rot_tol
            checked += 1
    assert checked >= 15


def test_oracle_kitti_ap_reaches_the_labels_own(synthetic):
    """The ground truth through the engine scores as the labels themselves do (on 8 frames the devkit's AP
    of the labels is below 100: it samples precision at no more recall points than there are objects)."""
    pytest.importorskip("centernet.evaluation.kitti")
    from centernet.evaluation.kitti_scoring import KittiScorer, label_results

    source = open_source(str(synthetic["val_split"]), task="ddd")
    ceiling = KittiScorer(source)
    ceiling.add(label_results(source))
    best = ceiling.result()
    assert best["kitti_3d_moderate"] > 0.1
    box = evaluate(None, task_from_config(oracle_config(source, "box")), source,
                   eval_settings(oracle_config(source)), progress=False)
    assert box.headline == "kitti_3d_moderate" and box.metrics["AP50"] == pytest.approx(1.0)  # + COCO boxes
    for metric in ("bbox", "aos"):
        assert box.metrics[f"kitti_{metric}_moderate"] == pytest.approx(best[f"kitti_{metric}_moderate"], abs=1e-3)
    projected = evaluate(None, task_from_config(oracle_config(source, "projected")), source,
                         eval_settings(oracle_config(source)), progress=False)
    for metric in ("bev", "3d"):  # the exact 3D centre: only rounding is lost
        assert projected.metrics[f"kitti_{metric}_moderate"] > 0.97 * best[f"kitti_{metric}_moderate"]
    assert projected.metrics["kitti_3d_moderate"] >= box.metrics["kitti_3d_moderate"]
    assert "Car" in box.scorer.report() and "40 recall points" in box.scorer.report()


def test_postprocess_and_prediction_need_the_camera_matrix(synthetic):
    source = open_source(str(synthetic["val_split"]), task="ddd")
    cfg, model, task = tiny_model(source)
    with pytest.raises(ValueError, match="needs the camera matrix"):
        task.postprocess(torch.zeros(1, 5, 13), {"image_id": torch.zeros(1)})
    predictor = Predictor(model, task, eval_settings(cfg), cfg.task.class_names)
    sample = source.samples[0]
    image = read_image(sample.path)
    with pytest.raises(ValueError, match="--calib"):
        predictor(image)
    pred = predictor(image, meta={"calib": sample.calib, GT_BOXES_KEY: gt_boxes3d(sample)})
    assert pred.rows.shape == (task.K, 17) and np.isfinite(pred.rows).all()
    results = task.to_results(pred.rows, {**pred.meta, "image_id": 7}, [1, 2, 3])
    assert len(results) == task.K and results[0]["image_id"] == 7 and len(results[0]["location"]) == 3


def test_draw_puts_a_birds_eye_view_beside_the_image(synthetic):
    source = open_source(str(synthetic["val_split"]), task="ddd")
    cfg = oracle_config(source, "projected")
    task = task_from_config(cfg)
    sample = source.samples[0]
    meta, rows = next(iter(run_detections(None, task, source, eval_settings(cfg), progress=False)))
    image = read_image(sample.path)
    rows = rows.numpy()
    drawn = task.draw(image, rows, source.class_names, 0.5, meta)
    h, w = image.shape[:2]
    assert drawn.shape[0] == h and drawn.shape[1] > w  # the bird's-eye view is beside the image
    bev = drawn[:, w:]
    assert (bev == [0, 0, 255]).all(axis=2).any()  # predictions in red
    gt_only = task.draw(image, rows, source.class_names, 2.0, {**meta, GT_BOXES_KEY: gt_boxes3d(sample)})
    assert (gt_only[:, w:] == [0, 200, 0]).all(axis=2).any() and not (bev == [0, 200, 0]).all(axis=2).any()
    assert not (gt_only[:, w:] == [0, 0, 255]).all(axis=2).any()  # ground truth in green, nothing above 2.0
    assert not np.array_equal(drawn[:, :w], image)  # projected boxes on the image
    assert task.draw(image, rows, source.class_names, 0.5, {}).shape == image.shape  # no calib: 2D only


def test_onnx_export_and_onnxruntime_match_pytorch(synthetic, tmp_path):
    pytest.importorskip("onnxruntime")
    from centernet.export.onnx import OnnxRunner, export_onnx, onnx_predictor

    source = open_source(str(synthetic["val_split"]), task="ddd")
    cfg, model, task = tiny_model(source)
    with torch.no_grad():  # distinct scores and non-trivial 3D heads
        for name, p in model.named_parameters():
            if name.startswith("heads"):
                p.normal_(0, 0.05)
    settings = eval_settings(cfg)
    eager = scorer_results(model, task, source, settings, progress=False)
    for decode in (False, True):
        path = export_onnx(model, task, cfg, tmp_path / f"ddd_{decode}.onnx", decode=decode)
        onnx = scorer_results(OnnxRunner(path), task, source, settings, progress=False)
        assert len(onnx) == len(eager)

        def same_3d(a: dict, b: dict) -> None:
            assert a["location"] == pytest.approx(b["location"], abs=1e-2)
            assert a["rotation_y"] == pytest.approx(b["rotation_y"], abs=1e-3)

        # by identity: near-equal scores may swap places between the two runtimes
        assert assert_same_detections(eager, onnx, score_tol=1e-4, box_tol=0.05, compare=same_3d) >= 50
    sample = source.samples[0]
    pred = onnx_predictor(path)(read_image(sample.path), meta={"calib": sample.calib})
    assert pred.rows.shape == (task.K, 17)


def test_cli_eval_prints_the_kitti_table_and_writes_results(shared_data, tmp_path, capsys):
    pytest.importorskip("centernet.evaluation.kitti")
    metrics, results = tmp_path / "m.json", tmp_path / "results"
    assert main(["eval", "--oracle", "--data", str(shared_data / "kitti_mini"), "--workers", "0",
                 "--json", str(metrics), "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "KITTI AP, 11 recall points" in out and "Pedestrian" in out
    assert "kitti_3d_moderate" in json.loads(metrics.read_text())
    assert sorted(p.name for p in results.glob("0*")) == ["000000.txt", "000001.txt", "000002.txt"]
    first = (results / "000000.txt").read_text().split()
    assert first[0] == "Pedestrian" and len(first) == 16  # KITTI result line: 15 fields and the score


def test_cli_predict_with_calib(shared_data, tmp_path, capsys):
    mini = shared_data / "kitti_mini" / "training"
    source = open_source(str(shared_data / "kitti_mini"), task="ddd")
    cfg, model, _ = tiny_model(source)
    save_checkpoint(tmp_path / "ddd.pth", cfg, model)
    image = mini / "image_2" / "000000.png"
    assert main(["predict", str(tmp_path / "ddd.pth"), str(image), "--out", str(tmp_path / "p"), "--score", "0",
                 "--calib", str(mini / "calib" / "000000.txt")]) == 0
    detections = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert detections and {"location", "dimensions", "rotation_y", "alpha"} <= set(detections[0])
    drawn = read_image(tmp_path / "p" / "000000_pred.jpg")
    assert drawn.shape[1] > read_image(image).shape[1]  # the bird's-eye view beside the image
    assert main(["predict", str(tmp_path / "ddd.pth"), str(image), "--out", str(tmp_path / "q")]) == 2
    assert "--calib" in capsys.readouterr().err
