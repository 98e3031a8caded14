"""Run reports on real data: coco_mini val ground truth against a perturbed copy of itself as detections."""
from __future__ import annotations

import contextlib
import csv
import io
import sys
import types

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from centernet.engine import reports
from centernet.evaluation.coco import evaluate_coco, evaluate_coco_per_class


@pytest.fixture(scope="module")
def coco_val(shared_data):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(shared_data / "coco_mini" / "annotations" / "instances_val2017.json"))


def _perturbed(gt: COCO, seed: int = 0) -> list[dict]:
    """Each object found with probability 0.8, its box jittered by up to 15 %, 10 % of them with a wrong
    class, plus one low-score false positive per image."""
    rng = np.random.default_rng(seed)
    cats = sorted(gt.getCatIds())
    out = []
    for ann in gt.loadAnns(gt.getAnnIds(iscrowd=False)):
        if rng.random() > 0.8:
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.uniform(-0.15, 0.15, 4) * [w, h, w, h]
        cat = int(rng.choice(cats)) if rng.random() < 0.1 else ann["category_id"]
        out.append({"image_id": ann["image_id"], "category_id": cat, "score": float(rng.uniform(0.3, 1)),
                    "bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 1), max(h + jitter[3], 1)]})
    for img in gt.loadImgs(gt.getImgIds()):
        out.append({"image_id": img["id"], "category_id": int(rng.choice(cats)), "score": 0.2,
                    "bbox": [0.0, 0.0, img["width"] / 3, img["height"] / 3]})
    return out


def _per_image(gt: COCO, results: list[dict]) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """Detections [K, 6] and ground truth [G, 5] rows per image, class indices 0..C-1."""
    index = {c: i for i, c in enumerate(sorted(gt.getCatIds()))}
    ids = sorted(gt.getImgIds())
    dets, truth = [], []
    for img in ids:
        rows = [[*r["bbox"][:2], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3], r["score"],
                 index[r["category_id"]]] for r in results if r["image_id"] == img]
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[img], iscrowd=False))
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3],
                  index[a["category_id"]]] for a in anns]
        dets.append(np.array(rows).reshape(-1, 6))
        truth.append(np.array(boxes).reshape(-1, 5))
    return ids, dets, truth


@pytest.fixture(scope="module")
def evaluated(coco_val):
    results = _perturbed(coco_val)
    return (results, *evaluate_coco_per_class(coco_val, results))


def test_per_class_pr_matches_cocoeval(coco_val, evaluated):
    results, metrics, pr = evaluated
    with contextlib.redirect_stdout(io.StringIO()):  # the reference: pycocotools run directly
        ev = COCOeval(coco_val, coco_val.loadRes(results), "bbox")
        ev.params.imgIds = sorted(coco_val.getImgIds())
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert list(metrics.values()) == ev.stats.tolist()  # evaluate_coco's numbers, unchanged
    assert 0.3 < metrics["AP50"] < 0.95  # perturbed: neither perfect nor broken
    assert np.nanmean(pr.ap) == pytest.approx(metrics["AP"], abs=1e-9)
    assert np.nanmean(pr.ap50) == pytest.approx(metrics["AP50"], abs=1e-9)
    assert len(pr.names) == 80 and pr.names[0] == "person" and pr.recall.shape == (101,)
    curves = pr.curves()
    assert set(curves) == {n for n, g in zip(pr.names, pr.num_gt) if g > 0}
    assert all(np.isfinite(p).all() and p.shape == (101,) for _, p in curves.values())
    names = [n for n in pr.names if n in curves]
    table = reports.per_class_ap_table({n: a for n, a in zip(pr.names, pr.ap) if n in curves},
                                       {n: a for n, a in zip(pr.names, pr.ap50) if n in curves},
                                       {n: int(g) for n, g in zip(pr.names, pr.num_gt)})
    lines = table.splitlines()
    assert len(lines) == len(names) + 2 and lines[1].split()[0] == names[0]
    assert lines[-1].split() == ["mean", f"{metrics['AP']:.3f}", f"{metrics['AP50']:.3f}"]


def test_no_detections_gives_zero_curves(coco_val):
    metrics, pr = evaluate_coco_per_class(coco_val, [])
    assert metrics == evaluate_coco(coco_val, []) and metrics["AP"] == 0.0 and np.nanmax(pr.ap) == 0.0
    assert set(pr.curves()) == {n for n, g in zip(pr.names, pr.num_gt) if g > 0}


def test_confusion_matrix_and_report_files(coco_val, evaluated, tmp_path):
    results, _, pr = evaluated
    _, dets, truth = _per_image(coco_val, results)
    score = 0.25
    m = reports.confusion_matrix(dets, truth, num_classes=80, score=score)
    gt_per_class = np.bincount(np.concatenate([t[:, 4] for t in truth]).astype(int), minlength=80)
    kept = np.concatenate([d[d[:, 4] >= score, 5] for d in dets]).astype(int)
    assert (m[:, :80].sum(axis=0) == gt_per_class).all()  # every object: matched once or missed
    assert (m[:80, :].sum(axis=1) == np.bincount(kept, minlength=80)).all()  # every kept detection once
    assert m[80, 80] == 0 and np.trace(m[:80, :80]) > 0.5 * gt_per_class.sum()
    as_detections = [np.hstack([t[:, :4], np.ones((len(t), 1)), t[:, 4:]]) for t in truth]
    exact = reports.confusion_matrix(as_detections, truth, num_classes=80)
    assert (np.diag(exact)[:80] == gt_per_class).all() and exact.sum() == gt_per_class.sum()
    written = reports.write_evaluation_reports(tmp_path, pr, m)
    assert [p.name for p in written] == [reports.PR_CURVES_PNG, reports.AP_TABLE_TXT, reports.CONFUSION_PNG]
    assert all(cv2.imread(str(p)) is not None for p in written if p.suffix == ".png")
    table = (tmp_path / reports.AP_TABLE_TXT).read_text().splitlines()
    assert len(table) == 2 + int((pr.num_gt > 0).sum()) and table[-1].startswith("mean")


def test_confusion_matrix_by_hand():
    truth = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 1], [50, 50, 60, 60, 1]])]
    dets = [np.array([[0, 0, 10, 10, 0.9, 0],  # right
                      [0, 0, 10, 11, 0.8, 2],  # duplicate of the first: background
                      [20, 20, 30, 30, 0.7, 0],  # wrong class
                      [50, 50, 60, 60, 0.1, 1]])]  # below the score threshold: object missed
    m = reports.confusion_matrix(dets, truth, num_classes=3, score=0.25)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = expected[2, 3] = expected[0, 1] = expected[3, 1] = 1
    assert (m == expected).all()
    assert (reports.confusion_matrix([np.zeros((0, 6))], [np.zeros((0, 5))], 3) == 0).all()


def test_mosaic_on_real_images(coco_val, shared_data, tmp_path):
    ids, dets, truth = _per_image(coco_val, _perturbed(coco_val))
    images = [cv2.imread(str(shared_data / "coco_mini" / "val2017" / coco_val.imgs[i]["file_name"]))
              for i in ids[:3]]
    names = [c["name"] for c in coco_val.loadCats(sorted(coco_val.getCatIds()))]
    path = reports.validation_mosaic(images, dets[:3], truth[:3], names, tmp_path / "val.jpg", tile_height=200)
    mosaic = cv2.imread(str(path))
    assert mosaic.shape[0] == 2 * (200 + reports.CAPTION_HEIGHT)  # 3 pairs, 2 per row


def test_results_csv_and_plot(tmp_path):
    history = [{"epoch": e, "lr": 1.25e-4 * 0.1 ** (e > 2), "loss": 3.0 / e, "hm_loss": 2.0 / e,
                "wh_loss": 0.5 / e, "images_per_s": 40.0} for e in range(1, 5)]
    for record in history[1::2]:
        record.update(val_AP=0.1 * record["epoch"], val_AP50=0.2 * record["epoch"], val_AR100=0.3)
    path = reports.write_results_csv(history, tmp_path / "results.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "lr", "loss", "hm_loss", "wh_loss", "images_per_s", "val_AP", "val_AP50",
                             "val_AR100"]
    assert rows[0]["val_AP"] == "" and float(rows[1]["val_AP"]) == pytest.approx(0.2)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert reports.result_panels(history) == [("loss", ["loss"]), ("hm_loss", ["hm_loss"]),
                                              ("wh_loss", ["wh_loss"]), ("validation", ["val_AP", "val_AP50"]),
                                              ("lr", ["lr"])]
    csv_path, png = reports.write_epoch_reports(history, tmp_path / "run")
    assert csv_path.read_text() == path.read_text() and cv2.imread(str(png)) is not None


def test_tensorboard_logger(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # not installed
    off = reports.TensorBoardLogger(tmp_path)
    assert not off.enabled
    off.log_scalars({"loss": 1.0}, 1), off.log_image("x", np.zeros((4, 4, 3), np.uint8), 1), off.close()

    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def add_image(self, tag, image, step, dataformats):
            calls.append((tag, image.shape, dataformats))

        def flush(self):
            pass

        def close(self):
            calls.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    with reports.TensorBoardLogger(tmp_path) as on:
        assert on.enabled
        on.log_scalars({"epoch": 3, "loss": 1.5, "val_AP": 0.25, "val_APs": float("nan"), "note": "x"}, 3)
        on.log_image("val/mosaic", np.zeros((4, 6, 3), np.uint8), 3)
    assert calls == [("dir", str(tmp_path)), ("train/loss", 1.5, 3), ("val/AP", 0.25, 3),
                     ("val/mosaic", (4, 6, 3), "HWC"), "closed"]


def test_run_reports_redraw_results_png_at_most_every_interval_and_at_the_end(tmp_path, monkeypatch):
    from centernet.engine import reports as run_reports

    clock = [1000.0]
    monkeypatch.setattr(run_reports.time, "monotonic", lambda: clock[0])
    plots = []
    real = reports.plot_results
    monkeypatch.setattr(reports, "plot_results", lambda history, path, **kw: plots.append(len(history)) or
                        real(history, path, **kw))
    runs = run_reports.RunReports(tmp_path, ["a"])
    history = []
    for epoch, (seconds, final) in enumerate([(5, False), (5, False), (5, True), (5, False), (40, False),
                                              (5, False), (5, True)], 1):
        clock[0] += seconds
        history.append({"epoch": epoch, "lr": 1e-3, "loss": 1.0 / epoch})
        runs.epoch(history, ["loss"], final=final)
        rows = list(csv.DictReader(open(tmp_path / "results.csv")))
        assert len(rows) == epoch  # the csv after every epoch
    # the first epoch, a validation (3), 30 s after the last plot (5), the end (7)
    assert plots == [1, 3, 5, 7]
    assert cv2.imread(str(tmp_path / "results.png")) is not None


def test_precision_recall_f1_against_confidence_by_hand():
    """Two objects; detections at 0.9 (hit), 0.6 (miss) and 0.4 (hit): kept from 0.5 on, precision and recall
    are 1/2; from 0.3 on, 2/3 and 1 (F1 0.8); above 0.9 nothing is kept."""
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 7, "name": "a"}],
                  "annotations": [{"id": i + 1, "image_id": 1, "category_id": 7, "bbox": box, "area": 400,
                                   "iscrowd": 0} for i, box in enumerate(([10, 10, 20, 20], [60, 60, 20, 20]))]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    dets = [{"image_id": 1, "category_id": 7, "score": s, "bbox": b}
            for s, b in ((0.9, [10, 10, 20, 20]), (0.6, [40, 10, 20, 20]), (0.4, [61, 60, 20, 20]))]
    _, per_class = evaluate_coco_per_class(gt, dets)
    precision, recall, f1 = per_class.confidence_curves(np.array([0.3, 0.5, 0.95]))
    np.testing.assert_allclose(precision[0], [2 / 3, 1 / 2, 0])
    np.testing.assert_allclose(recall[0], [1, 1 / 2, 0])
    np.testing.assert_allclose(f1[0], [0.8, 0.5, 0])


def test_mosaic_has_no_empty_tiles():
    samples = [types.SimpleNamespace(image_id=i) for i in range(5)]
    truth = {0: np.zeros((0, 5)), 1: np.ones((2, 5)), 2: np.ones((1, 5)), 3: np.ones((1, 5)), 4: np.zeros((0, 5))}
    picks = reports.mosaic_picks(samples, truth, 3)  # three wanted: two fill the row, images with objects first
    assert [s.image_id for s in picks] == [1, 2]
    assert [s.image_id for s in reports.mosaic_picks(samples[:1], truth, 4)] == [0]  # one image stands alone
    assert len(reports.mosaic_picks(samples, truth, 4)) == 4
