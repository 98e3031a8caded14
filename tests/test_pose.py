"""multi_pose: targets, the encode -> decode round trip, flip merge, joint snapping, loss masks, export."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.data import CocoDetection
from centernet.data.pipeline import TrainDataset, collate
from centernet.data.sample import DetectionSource, Sample
from centernet.data.synthetic_pose import make_synthetic_pose_dataset
from centernet.engine.evaluator import EvalSettings, evaluate
from centernet.engine.inference import detections
from centernet.tasks import TASKS, MultiPoseTask, build_task
from centernet.tasks.pose import (
    COCO_FLIP_PAIRS, JOINT_COLUMN, JOINT_SCORE_COLUMN, NUM_JOINTS, ROW_SIZE, decode_multi_pose, mirror_hps,
    mirror_joint_maps,
)


class ListSource(DetectionSource):
    def __init__(self, samples):
        self.samples, self.class_names, self.cat_ids = samples, ["person"], [1]


def person(x1, y1, x2, y2, rng, vis=2.0):
    """A box and 17 joints spread inside it."""
    pts = np.stack([rng.uniform(x1 + 1, x2 - 1, NUM_JOINTS), rng.uniform(y1 + 1, y2 - 1, NUM_JOINTS)], axis=1)
    return [x1, y1, x2, y2], np.concatenate([pts, np.full((NUM_JOINTS, 1), vis)], axis=1)


@pytest.fixture()
def source(tmp_path: Path) -> ListSource:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((240, 320, 3), np.uint8))
    rng = np.random.default_rng(0)
    (b0, k0), (b1, k1), (b2, k2) = person(20, 30, 120, 220, rng), person(150, 20, 300, 230, rng), person(
        200, 100, 240, 160, rng, vis=0)
    k0[3, 2] = 0  # unlabelled
    k0[4, 2] = 1  # labelled, occluded
    k1[5, :2] = [-30, 50]  # labelled but outside the image
    sample = Sample(1, tmp_path / "a.png", 320, 240, np.array([b0, b1, b2], np.float32), np.zeros(3, np.int64),
                    keypoints=np.array([k0, k1, k2], np.float32))
    return ListSource([sample])


def test_registered_heads_and_layout():
    task = build_task("multi_pose", 1)
    assert TASKS.get("multi_pose") is MultiPoseTask and task.iou_types == ("keypoints", "bbox")
    assert task.head_channels() == {"hm": 1, "wh": 2, "hps": 34, "reg": 2, "hm_hp": 17, "hp_offset": 2}
    assert task.weights == {"hm": 1, "wh": 0.1, "reg": 1, "hps": 1, "hm_hp": 1, "hp_offset": 1}
    assert task.point_columns == (0, 1, 2, 3, *range(6, 40)) and (JOINT_SCORE_COLUMN, ROW_SIZE) == (40, 57)
    with pytest.raises(ValueError, match="one class"):
        MultiPoseTask(num_classes=2)
    with pytest.raises(ValueError, match="empty_person"):
        MultiPoseTask(empty_person="skip")


def test_targets_mask_unlabelled_and_outside_joints(source):
    task = MultiPoseTask()
    out = TrainDataset(source, task, input_size=(256, 256), augment=False)[0]
    valid = out["hp_mask"].reshape(task.max_objects, NUM_JOINTS)
    assert valid[0].sum() == 16 and valid[0, 3] == 0 and valid[0, 4] == 1  # v=0 out, v=1 in
    assert valid[1].sum() == 16 and valid[1, 5] == 0  # outside the map
    assert valid[2].sum() == 0 and valid[3:].sum() == 0  # no labelled joint; unused slots
    np.testing.assert_array_equal(out["hps_mask"].reshape(-1, NUM_JOINTS, 2)[..., 0], valid)
    assert (out["hps"][out["hps_mask"] == 0] == 0).all()
    assert out["reg_mask"][:3].tolist() == [1, 1, 1] and (out["hm"] == 1).sum() == 3  # "box" mode keeps all
    assert out["hm_hp"].shape == (NUM_JOINTS, 64, 64) and (out["hm_hp"] == 1).sum() <= 32
    peaks = out["hm_hp"].reshape(NUM_JOINTS, -1)[np.arange(NUM_JOINTS)[None].repeat(task.max_objects, 0).ravel(),
                                                  out["hp_ind"]]
    assert (peaks[out["hp_mask"] > 0] == 1).all()  # each labelled joint is a peak of its channel
    original = TrainDataset(source, MultiPoseTask(empty_person="original"), (256, 256), augment=False)[0]
    assert original["reg_mask"][:3].tolist() == [1, 1, 0] and (original["hm"] == 1).sum() == 3


def test_bad_keypoints_are_clear_errors(source):
    task = MultiPoseTask()
    sample = source.samples[0]
    with pytest.raises(ValueError, match="keypoints=True"):
        task.encode(Sample(1, sample.path, 10, 10, sample.boxes, sample.labels), 64, 64)
    bad = Sample(1, sample.path, 10, 10, sample.boxes, sample.labels, keypoints=sample.keypoints[:, :5])
    with pytest.raises(ValueError, match=r"\[3, 17, 3\]"):
        task.encode(bad, 64, 64)
    nan = sample.keypoints.copy()
    nan[0, 0, :2] = np.nan  # a non-finite joint is masked, not an error
    out = task.encode(Sample(1, sample.path, 320, 240, sample.boxes / 4, sample.labels, keypoints=nan), 80, 60)
    assert out["hp_mask"][0] == 0 and np.isfinite(out["hps"]).all()


def test_encode_decode_round_trip(source):
    task = MultiPoseTask()
    batch = collate([TrainDataset(source, task, input_size=(256, 256), augment=False)[0]])
    rows = detections(task, task.oracle_maps(batch), batch)[0]
    assert rows.shape == (task.K, ROW_SIZE)
    found = rows[rows[:, 4] == 1]
    found = found[found[:, 0].argsort()]
    sample = source.samples[0]
    torch.testing.assert_close(found[:, :4], torch.from_numpy(sample.boxes), atol=1e-3, rtol=0)
    joints = found[:, JOINT_COLUMN:JOINT_SCORE_COLUMN].reshape(3, NUM_JOINTS, 2)
    labelled = torch.from_numpy(sample.keypoints[..., 2] > 0)
    labelled[1, 5] = False  # outside the image: not a target
    torch.testing.assert_close(joints[labelled], torch.from_numpy(sample.keypoints[..., :2])[labelled],
                               atol=1e-3, rtol=0)
    assert (found[:, JOINT_SCORE_COLUMN:][labelled] == 1).all()  # joint confidence: its heatmap peak
    results = task.to_results(rows.numpy(), {"image_id": 1}, [1])
    assert len(results) == task.K and len(results[0]["keypoints"]) == 3 * NUM_JOINTS
    assert results[0]["category_id"] == 1 and len(results[0]["bbox"]) == 4
    drawn = task.draw(np.zeros((240, 320, 3), np.uint8), rows.numpy(), ["person"], 0.5)
    assert drawn.shape == (240, 320, 3) and drawn.any()


def test_oracle_keypoint_ap_on_synthetic_figures(tmp_path):
    paths = make_synthetic_pose_dataset(tmp_path, num_train=6, num_val=0, seed=3)
    again = make_synthetic_pose_dataset(tmp_path / "again", num_train=6, num_val=0, seed=3)
    assert paths["train_ann"].read_bytes() == again["train_ann"].read_bytes()
    assert (paths["train_images"] / "000001.png").read_bytes() == (again["train_images"] / "000001.png").read_bytes()
    src = CocoDetection(paths["train_ann"], paths["train_images"], keypoints=True)
    vis = np.concatenate([s.keypoints[..., 2].ravel() for s in src.samples])
    assert {0, 2} <= set(vis.tolist()) and len(src.keypoint_names) == NUM_JOINTS
    metrics = evaluate(None, MultiPoseTask(), src, EvalSettings(input_size=(128, 128)), progress=False).metrics
    assert metrics["AP"] > 0.9 and metrics["bbox_AP"] > 0.9


def random_maps(b: int, h: int = 16, w: int = 20, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    heads = MultiPoseTask().head_channels()
    maps = {name: torch.randn(b, c, h, w, generator=g) * 3 for name, c in heads.items()}
    maps["hm"], maps["hm_hp"] = torch.rand(b, 1, h, w, generator=g), torch.rand(b, NUM_JOINTS, h, w, generator=g)
    maps["wh"] = maps["wh"].abs() * 3
    return maps


def mirror_rows(rows: torch.Tensor, w: int) -> torch.Tensor:
    """Rows of a mirrored map (x -> w - 1 - x), joints swapped left/right."""
    out = rows.clone()
    out[..., 0], out[..., 2] = w - 1 - rows[..., 2], w - 1 - rows[..., 0]
    joints = rows[..., JOINT_COLUMN:JOINT_SCORE_COLUMN].reshape(*rows.shape[:-1], NUM_JOINTS, 2).clone()
    conf = rows[..., JOINT_SCORE_COLUMN:].clone()
    joints[..., 0] = w - 1 - joints[..., 0]
    for a, b in COCO_FLIP_PAIRS:
        joints[..., [a, b], :] = joints[..., [b, a], :]
        conf[..., [a, b]] = conf[..., [b, a]]
    out[..., JOINT_COLUMN:JOINT_SCORE_COLUMN] = joints.flatten(-2)
    out[..., JOINT_SCORE_COLUMN:] = conf
    return out


def test_flip_merge_is_mirror_symmetric():
    """Outputs for (image, mirror) and for (mirror, image) merge into mirrored maps and mirrored people."""
    task = MultiPoseTask()
    maps = random_maps(2)
    swapped = {k: v.flip(0) for k, v in maps.items()}
    a, b = task.merge_flip(maps), task.merge_flip(swapped)
    torch.testing.assert_close(b["hm"], a["hm"].flip(3), atol=0, rtol=0)
    torch.testing.assert_close(b["wh"], a["wh"].flip(3), atol=0, rtol=0)
    torch.testing.assert_close(b["hps"], mirror_hps(a["hps"]), atol=0, rtol=0)
    torch.testing.assert_close(b["hm_hp"], mirror_joint_maps(a["hm_hp"]), atol=0, rtol=0)
    torch.testing.assert_close(mirror_hps(mirror_hps(a["hps"])), a["hps"], atol=0, rtol=0)
    for merged in (a, b):  # the offsets come from the unflipped image only; zero them to compare people
        merged["reg"], merged["hp_offset"] = torch.zeros_like(merged["reg"]), torch.zeros_like(merged["hp_offset"])
    rows_a, rows_b = task.decode(a)[0], task.decode(b)[0]
    expected = mirror_rows(rows_a, a["hm"].shape[3])
    peaks = rows_a[:, 4] > 0  # the zero-score rows are ties, in a different order
    assert peaks.sum() > 10
    torch.testing.assert_close(rows_b[peaks, :JOINT_SCORE_COLUMN], expected[peaks, :JOINT_SCORE_COLUMN],
                               atol=1e-5, rtol=0)
    # Confidence is read at the joint's pixel, floor(x): mirror-exact for the snapped (integer) joints.
    xs = rows_b[peaks, JOINT_COLUMN:JOINT_SCORE_COLUMN:2]
    snapped = xs == xs.round()
    assert snapped.any() and not snapped.all()
    conf_b, conf_expected = rows_b[peaks, JOINT_SCORE_COLUMN:], expected[peaks, JOINT_SCORE_COLUMN:]
    torch.testing.assert_close(conf_b[snapped], conf_expected[snapped])


def snap_case(joint_xy, peak_xy, peak_score=0.5, extra_peak=None):
    """One person at (10, 10) with box 8 x 12 -> [6, 4, 14, 16]; joint 0 regressed to ``joint_xy``."""
    h, w = 24, 24
    hm, wh, reg = torch.zeros(1, 1, h, w), torch.zeros(1, 2, h, w), torch.zeros(1, 2, h, w)
    hps, hm_hp, hp_offset = torch.zeros(1, 34, h, w), torch.zeros(1, NUM_JOINTS, h, w), torch.zeros(1, 2, h, w)
    hm[0, 0, 10, 10] = 0.9
    wh[0, :, 10, 10] = torch.tensor([8.0, 12.0])
    hps[0, 0::2, 10, 10], hps[0, 1::2, 10, 10] = joint_xy[0] - 10, joint_xy[1] - 10
    for xy, s in [(peak_xy, peak_score)] + ([extra_peak] if extra_peak else []):
        hm_hp[0, 0, xy[1], xy[0]] = s
    row = decode_multi_pose(hm, wh, reg, hps, hm_hp, hp_offset, K=5)[0, 0]
    assert row[4].item() == pytest.approx(0.9)
    torch.testing.assert_close(row[:4], torch.tensor([6.0, 4.0, 14.0, 16.0]))
    return row[JOINT_COLUMN:JOINT_COLUMN + 2].tolist(), row[JOINT_SCORE_COLUMN].item()


def test_decode_snaps_to_joint_heatmap_peaks():
    assert snap_case((10, 6), (11, 7)) == ([11, 7], 0.5)  # inside the box, 1.4 < 0.3 * 12: snapped
    assert snap_case((14, 7), (14, 10)) == ([14, 10], 0.5)  # on the box edge, 3 < 3.6: snapped
    assert snap_case((10, 6), (11, 7), peak_score=0.1)[0] == [10, 6]  # not above 0.1
    assert snap_case((13, 6), (15, 6))[0] == [13, 6]  # outside the box (x 15 > 14)
    assert snap_case((10, 6), (10, 10))[0] == [10, 6]  # inside, but 4 > 0.3 * max(8, 12)
    # The nearest peak decides (as the original): a nearer one outside the box blocks a farther one inside.
    assert snap_case((13, 6), (15, 6), extra_peak=((11, 7), 0.5))[0] == [13, 6]
    assert snap_case((13, 6), (12, 6), extra_peak=((15, 6), 0.5))[0] == [12, 6]
    joint, conf = snap_case((10, 6), (20, 20))  # not snapped: confidence = joint heatmap at (10, 6)
    assert joint == [10, 6] and conf == 0


def test_loss_finite_and_unlabelled_joints_contribute_nothing(source):
    task = MultiPoseTask()
    batch = collate([TrainDataset(source, task, input_size=(128, 128), augment=False)[0]])
    g = torch.Generator().manual_seed(1)
    outputs = [{name: torch.randn(1, c, 32, 32, generator=g) for name, c in task.head_channels().items()}]
    loss, terms = task.loss(outputs, batch)
    assert torch.isfinite(loss) and set(terms) == set(task.weights)
    masked = batch["hps_mask"] == 0
    changed = dict(batch, hps=torch.where(masked, torch.full_like(batch["hps"], 1e3), batch["hps"]),
                   hp_offset=torch.where(batch["hp_mask"].unsqueeze(2) == 0, torch.full_like(batch["hp_offset"], 1e3),
                                         batch["hp_offset"]))
    torch.testing.assert_close(task.loss(outputs, changed)[0], loss, atol=0, rtol=0)
    # Prediction at the centre of the person without labels, on its joint channels: no effect either.
    ind = batch["ind"][0, 2].item()
    moved = [{k: v.clone() for k, v in outputs[0].items()}]
    moved[0]["hps"].view(1, 34, -1)[0, :, ind] += 100
    torch.testing.assert_close(task.loss(moved, batch)[1]["hps"], terms["hps"], atol=0, rtol=0)
    empty = dict(batch, hps_mask=torch.zeros_like(batch["hps_mask"]), hp_mask=torch.zeros_like(batch["hp_mask"]))
    _, none = task.loss(outputs, empty)
    assert none["hps"] == 0 and none["hp_offset"] == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_decode_exports_to_onnx(tmp_path):
    """Fixed K, no data-dependent shapes: the decoder traces into ONNX and runs the same in onnxruntime."""
    pytest.importorskip("onnx")

    class Decoder(torch.nn.Module):
        def __init__(self, task):
            super().__init__()
            self.task = task
            self.names = list(task.heads())

        def forward(self, *maps):
            return self.task.decode(self.task.activate(dict(zip(self.names, maps))))

    task = MultiPoseTask(max_detections=10)
    maps = random_maps(1, 16, 16)
    inputs = tuple(maps[name] for name in task.heads())
    path = tmp_path / "pose_decode.onnx"
    try:
        torch.onnx.export(Decoder(task), inputs, str(path), dynamo=False, opset_version=17)
    except (ImportError, ModuleNotFoundError) as exc:  # exporter backends missing in this environment
        pytest.skip(f"onnx exporter unavailable: {exc}")
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path))
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
    np.testing.assert_allclose(got, Decoder(task)(*inputs).numpy(), atol=1e-4)


def test_official_checkpoint_round_trip_with_pose_heads():
    official = pytest.importorskip("centernet.weights.official")
    if not all(hasattr(official, f) for f in ("load_official_checkpoint", "to_official_state_dict")):
        pytest.skip("official checkpoint functions absent")
    from centernet.models import build_model

    heads = MultiPoseTask().heads()
    torch.manual_seed(0)
    model = build_model("dla_34", heads)
    state = official.to_official_state_dict(model)
    assert {"module.hps.0.weight", "module.hm_hp.2.bias", "module.hp_offset.2.weight"} <= set(state)
    assert state["module.hps.2.weight"].shape[0] == 34 and state["module.hm_hp.2.weight"].shape[0] == 17
    fresh = build_model("dla_34", heads)
    report = official.load_official_checkpoint(fresh, {"epoch": 140, "state_dict": state})
    assert report.ok and report.epoch == 140
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_merge_flip_undoes_the_pipeline_flip():
    """Targets of a mirrored sample (data.pipeline.flip_sample), merged with the sample's own as a flip test
    merges network outputs, give the sample's targets back: the pipeline and the decoder agree on mirrors."""
    from centernet.data.pipeline import flip_sample

    rng = np.random.default_rng(5)
    w, h = 40, 32
    kps = np.concatenate([rng.integers(2, 30, (2, NUM_JOINTS, 2)), np.full((2, NUM_JOINTS, 1), 2)], axis=2)
    sample = Sample(1, Path("x.png"), w, h, np.array([[2, 3, 20, 30], [18, 1, 38, 29]], np.float32),
                    np.zeros(2, np.int64), keypoints=kps.astype(np.float32))
    task = MultiPoseTask()
    batch = collate([task.encode(sample, w, h), task.encode(flip_sample(sample, task.flip_pairs), w, h)])
    maps = task.oracle_maps(batch)
    merged = task.merge_flip(maps)
    for name in ("hm", "wh", "hps", "hm_hp"):
        torch.testing.assert_close(merged[name], maps[name][:1], atol=1e-6, rtol=0)
