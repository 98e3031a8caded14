"""Monocular 3D core: rotation bins, targets, losses, decoding, lifting to 3D and KITTI result files."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from centernet.data.kitti import KittiDetection, read_label_file
from centernet.data.pipeline import collate, warp_sample
from centernet.data.synthetic_kitti import make_synthetic_kitti
from centernet.ops.decode import gather_feat
from centernet.ops.transforms import get_affine_transform, to_image_coords
from centernet.tasks.ddd_core import (
    COLUMNS, IGNORE_PEAK, POINT_COLUMNS, ROW_2D, ROW_3D, activate_ddd, ddd_heads, ddd_losses, ddd_postprocess,
    decode_alpha, decode_ddd, encode_ddd, encode_rotation, oracle_ddd_maps, rows_to_kitti, write_kitti_results,
)

KITTI_INPUT = (1280, 384)
DOWN = 4


def angle_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi)


@pytest.fixture(scope="module")
def kitti(shared_data) -> KittiDetection:
    return KittiDetection(shared_data / "kitti_mini")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> KittiDetection:
    paths = make_synthetic_kitti(tmp_path_factory.mktemp("synk"), num_train=6, num_val=0, size=(320, 96), seed=5)
    return KittiDetection(paths["root"], split="train")


def test_rotation_bins_round_trip():
    alpha = np.linspace(-np.pi, np.pi, 2001)
    rotbin, rotres = encode_rotation(alpha)
    assert rotbin.sum(axis=1).min() == 1  # every angle is in at least one bin
    # SPEC 6 bins: 1 covers alpha < pi/6 or > 5pi/6, 2 covers alpha > -pi/6 or < -5pi/6
    assert rotbin[np.searchsorted(alpha, 0.0)].tolist() == [1, 1]
    assert rotbin[np.abs(alpha + np.pi / 2).argmin()].tolist() == [1, 0]
    assert rotbin[np.abs(alpha - np.pi / 2).argmin()].tolist() == [0, 1]
    for prefer in (0, 1):  # either bin of an angle in both decodes it
        logits = torch.from_numpy(rotbin).float() * 5
        logits[:, 1 - prefer] -= 1
        res = torch.from_numpy(rotres).double()
        rot = torch.stack([-logits[:, 0], logits[:, 0], res[:, 0].sin(), res[:, 0].cos(),
                           -logits[:, 1], logits[:, 1], res[:, 1].sin(), res[:, 1].cos()], 1).double()
        decoded = decode_alpha(rot[None])[0].numpy()
        assert decoded.min() >= -np.pi and decoded.max() < np.pi
        assert angle_diff(decoded, alpha).max() < 1e-5


def _round_trip(sample, center: str, input_size=KITTI_INPUT):
    """Test geometry warp -> encode -> oracle maps -> decode -> image pixels -> 3D, rows of score 1."""
    out_w, out_h = input_size[0] // DOWN, input_size[1] // DOWN
    c = np.array([sample.width / 2, sample.height / 2], np.float32)
    s = float(max(sample.width, sample.height))
    trans = get_affine_transform(c, s, 0, (out_w, out_h))
    trans_inv = torch.from_numpy(get_affine_transform(c, s, 0, (out_w, out_h), inv=True)[None]).float()
    targets = encode_ddd(warp_sample(sample, trans, out_w, out_h), out_w, out_h, 3, 64, center=center)
    maps = oracle_ddd_maps(collate([targets]))
    rows = decode_ddd(maps["hm"], maps["dep"], maps["rot"], maps["dim"], maps["wh"], maps["reg"], K=100)
    assert rows.shape == (1, 100, ROW_2D)
    rows = to_image_coords(rows, trans_inv, POINT_COLUMNS)
    out = ddd_postprocess(rows, torch.from_numpy(sample.calib[None]))[0].numpy()
    assert out.shape == (100, ROW_3D)
    return out[out[:, COLUMNS["score"]] == 1.0]


def _match(rows, sample, k):
    """The decoded row of object ``k`` (its class, nearest 2D box)."""
    cost = np.abs(rows[:, :4] - sample.boxes[k]).sum(1) + 1e6 * (rows[:, COLUMNS["class"]] != sample.labels[k])
    return rows[cost.argmin()]


def _check(rows, sample, keep, loc_tol):
    """Location within ``loc_tol`` m, dims / alpha exact, rot_y as the keypoint's viewing ray gives it;
    returns the largest location error."""
    c = COLUMNS
    worst = 0.0
    for k in np.flatnonzero(keep):
        row = _match(rows, sample, k)
        np.testing.assert_allclose(row[[c["h"], c["w"], c["l"]]], sample.extra["dim"][k], atol=1e-5)
        assert angle_diff(row[c["alpha"]], sample.extra["alpha"][k]) < 1e-5
        err = np.abs(row[[c["x"], c["y"], c["z"]]] - sample.extra["loc"][k]).max()
        assert err < loc_tol
        worst = max(worst, err)
        ray = np.arctan2(row[c["cx"]] - sample.calib[0, 2], sample.calib[0, 0])
        assert angle_diff(row[c["rot_y"]], sample.extra["alpha"][k] + ray) < 1e-4
        assert angle_diff(row[c["rot_y"]], sample.extra["rot_y"][k]) < 0.1
    return worst


def test_round_trip_on_kitti_projected_centre_is_exact(kitti):
    for sample in kitti.samples:
        rows = _round_trip(sample, "projected")
        keep = ~sample.ignore
        assert len(rows) == keep.sum()
        # 5 mm: the original's unprojection treats the depth as z + P2[2, 3] (P2[2, 3] = 2.7 to 5 mm)
        _check(rows, sample, keep, loc_tol=0.006)
        for k in np.flatnonzero(keep):  # rot_y vs the label: 2-decimal rounding + camera 2's 6 cm offset
            assert angle_diff(_match(rows, sample, k)[COLUMNS["rot_y"]], sample.extra["rot_y"][k]) < 0.015


def test_round_trip_on_kitti_box_centre_loses_a_few_cm(kitti):
    worst = max(_check(_round_trip(s, "box"), s, ~s.ignore, loc_tol=0.08) for s in kitti.samples)
    assert worst > 0.02  # the 2D box centre is not the projected 3D centre: a known encoding loss


def test_round_trip_on_synthetic_frames(synthetic):
    checked = 0
    for sample in synthetic.samples:
        rows = _round_trip(sample, "projected", input_size=(320, 96))
        keep = ~sample.ignore & (sample.keypoints[:, 0, 2] > 0)  # 3D centre inside the image
        _check(rows, sample, keep, loc_tol=0.006)
        checked += keep.sum()
    assert checked >= 6


def test_ignore_regions_and_slots(kitti):
    busy = kitti.samples[1]  # Truck (Car channel), Car, Cyclist, 4 DontCare
    out_w, out_h = KITTI_INPUT[0] // DOWN, KITTI_INPUT[1] // DOWN
    c = np.array([busy.width / 2, busy.height / 2], np.float32)
    warped = warp_sample(busy, get_affine_transform(c, float(busy.width), 0, (out_w, out_h)), out_w, out_h)
    t = encode_ddd(warped, out_w, out_h, 3, 8)
    assert t["reg_mask"].tolist() == [1, 1] + [0] * 6 and (t["rot_mask"] == t["reg_mask"]).all()
    assert t["dep"][:2, 0].tolist() == pytest.approx([58.49, 45.84])  # Car then Cyclist: ignore rows take no slot
    centres = ((warped.boxes[:, :2] + warped.boxes[:, 2:]) / 2).astype(int)
    truck, dont_care = centres[0], centres[3]
    assert t["hm"][0, truck[1], truck[0]] == pytest.approx(IGNORE_PEAK)
    assert t["hm"][1:, truck[1], truck[0]].max() < 0.5  # the Truck is ignored on the Car channel only
    assert t["hm"][:, dont_care[1], dont_care[0]].tolist() == pytest.approx([IGNORE_PEAK] * 3)
    assert (t["hm"] == 1).sum() == 2


def _batch(samples, max_objects=16, out=(80, 24)):
    items = []
    for s in samples:
        c = np.array([s.width / 2, s.height / 2], np.float32)
        trans = get_affine_transform(c, float(max(s.width, s.height)), 0, out)
        items.append(encode_ddd(warp_sample(s, trans, *out), *out, 3, max_objects))
    return collate(items)


def _outputs(batch_size, seed=0, out=(80, 24)):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch_size, n, out[1], out[0], generator=g) for name, n in ddd_heads(3).items()}


def test_losses_finite_and_padding_free(synthetic):
    batch = _batch(synthetic.samples[:2])
    outputs = _outputs(2)
    terms = ddd_losses(outputs, batch)
    assert set(terms) == {"hm", "dep", "rot", "dim", "wh", "reg"}
    assert all(torch.isfinite(v) and v > 0 for v in terms.values())
    # more padded slots, and garbage in them, change nothing
    wide = _batch(synthetic.samples[:2], max_objects=40)
    for name in ("ind", "dep", "dim", "wh", "reg", "rotres"):
        wide[name][wide["reg_mask"] == 0] = 7
    wide["rotbin"][wide["reg_mask"] == 0] = 1
    for name, value in ddd_losses(outputs, wide).items():
        assert value.item() == pytest.approx(terms[name].item(), rel=1e-6), name
    # batch of 1, and an image with no object
    one = _batch(synthetic.samples[:1])
    assert all(torch.isfinite(v) for v in ddd_losses(_outputs(1), one).values())
    empty = {k: torch.zeros_like(v) for k, v in one.items()}
    terms = ddd_losses(_outputs(1), empty)
    assert terms["hm"] > 0 and all(terms[k] == 0 for k in ("dep", "rot", "dim", "wh", "reg"))


def test_losses_are_means_over_objects_and_vanish_at_the_truth(synthetic):
    batch = _batch(synthetic.samples[:3])
    mask = batch["reg_mask"] > 0
    zeros = {name: torch.zeros_like(v) for name, v in _outputs(3).items()}
    terms = ddd_losses(zeros, batch)
    assert terms["dim"].item() == pytest.approx(batch["dim"][mask].abs().mean().item(), rel=1e-4)
    assert terms["dep"].item() == pytest.approx((batch["dep"][mask] - 1).abs().mean().item(), rel=1e-4)  # d(0) = 1
    # raw maps that decode to the oracle give (nearly) zero regression and rotation losses
    oracle = oracle_ddd_maps(batch)
    raw = dict(oracle)
    raw["dep"] = torch.logit((1 / (oracle["dep"] + 1) - 1e-6).clamp(1e-6, 1 - 1e-6).double()).float()
    assert torch.allclose(activate_ddd(raw)["dep"], oracle["dep"], atol=1e-3)
    terms = ddd_losses(raw, batch)
    assert all(terms[k] < 1e-3 for k in ("dep", "rot", "dim", "wh", "reg")), terms


def _two_objects(slots: int = 50, augmented: float = 0.0, seed: int = 0):
    """A batch of one image with 2 objects in ``slots`` slots, and random raw head maps (8 x 6 map)."""
    g = torch.Generator().manual_seed(seed)
    h, w = 6, 8
    t = {"hm": torch.zeros(1, 3, h, w), "ind": torch.zeros(1, slots, dtype=torch.long),
         "reg_mask": torch.zeros(1, slots), "dep": torch.zeros(1, slots, 1), "dim": torch.zeros(1, slots, 3),
         "wh": torch.zeros(1, slots, 2), "reg": torch.zeros(1, slots, 2),
         "rotbin": torch.zeros(1, slots, 2, dtype=torch.long), "rotres": torch.zeros(1, slots, 2),
         "augmented": torch.tensor([augmented])}
    t["hm"][0, 1, 2, 3] = t["hm"][0, 0, 4, 6] = 1
    t["ind"][0, :2] = torch.tensor([2 * w + 3, 4 * w + 6])
    t["reg_mask"][0, :2] = 1
    t["dep"][0, :2, 0] = torch.tensor([12.0, 30.0])
    t["dim"][0, :2] = torch.tensor([[1.5, 1.6, 3.9], [1.7, 0.6, 0.8]])
    t["wh"][0, :2] = torch.tensor([[4.0, 3.0], [1.5, 2.5]])
    t["reg"][0, :2] = torch.tensor([[0.25, 0.5], [0.75, 0.125]])
    t["rotbin"][0, :2] = torch.tensor([[1, 0], [1, 1]])
    t["rotres"][0, :2] = torch.tensor([[0.3, 0.0], [1.2, -1.9]])
    t["rot_mask"] = t["reg_mask"].clone()
    outputs = {name: torch.randn(1, n, h, w, generator=g) for name, n in ddd_heads(3).items()}
    return outputs, t


def test_original_loss_norm_divides_by_every_slot_and_skips_augmented_depth_and_size():
    """loss_norm="original" (the original code's ddd losses): with 2 objects in 50 slots the L1 terms are 2 / 50
    of the per-object means; depth and dims vanish on an augmented image (wh and reg stay); the bin
    cross-entropy also averages over the 48 empty slots, each adding log 2 (zeroed logits, bin 0)."""
    outputs, batch = _two_objects()
    ours, original = ddd_losses(outputs, batch), ddd_losses(outputs, batch, "original")
    for name in ("dep", "dim", "wh", "reg"):
        # ours divides by the masked elements + 1e-4, hence the tolerance
        assert original[name].item() == pytest.approx(ours[name].item() * 2 / 50, rel=1e-4), name
    assert original["hm"] == ours["hm"]
    rot = gather_feat(outputs["rot"], batch["ind"])[0, :2]  # [2, 8] the objects' logits
    residual = ours["rot"].item()
    for b, first in enumerate((0, 4)):
        ce = torch.nn.functional.cross_entropy(rot[:, first:first + 2], batch["rotbin"][0, :2, b], reduction="none")
        residual -= ce.mean().item()  # ours: a mean over the 2 objects
    expected = residual + sum(
        (torch.nn.functional.cross_entropy(rot[:, f:f + 2], batch["rotbin"][0, :2, b], reduction="sum").item()
         + 48 * math.log(2)) / 50 for b, f in enumerate((0, 4)))
    assert original["rot"].item() == pytest.approx(expected, rel=1e-5)
    augmented = ddd_losses(outputs, {**batch, "augmented": torch.tensor([1.0])}, "original")
    assert augmented["dep"] == 0 and augmented["dim"] == 0
    for name in ("hm", "rot", "wh", "reg"):
        assert augmented[name] == original[name], name
    # the default ignores the flag and the padding: more slots change nothing
    assert ddd_losses(outputs, {**batch, "augmented": torch.tensor([1.0])})["dep"] == ours["dep"]
    wide_outputs, wide = _two_objects(slots=80)
    assert ddd_losses(wide_outputs, wide)["dim"].item() == pytest.approx(ours["dim"].item(), rel=1e-6)
    assert ddd_losses(wide_outputs, wide, "original")["dim"].item() == pytest.approx(
        ours["dim"].item() * 2 / 80, rel=1e-4)
    with pytest.raises(ValueError, match="loss_norm"):
        ddd_losses(outputs, batch, "slots")


def test_loss_norm_option_reaches_the_task_and_halves_the_augmentation(synthetic):
    """task.options.loss_norm="original" is the task's loss and makes half the training images unaugmented
    (the original's aug_ddd 0.5) unless data.augment_prob is set; items say which were augmented."""
    from centernet.app.builders import task_from_config
    from centernet.data.pipeline import TrainDataset
    from centernet.engine.trainer import train_dataset
    from centernet.presets import get_preset
    from centernet.tasks import build_task

    cfg = get_preset("ddd_cpu_small")
    assert task_from_config(cfg).loss_norm == "objects" and task_from_config(cfg).augment_prob == 1.0
    cfg.task.options = {"loss_norm": "original"}
    task = task_from_config(cfg)
    assert task.loss_norm == "original" and task.augment_prob == 0.5
    with pytest.raises(ValueError, match="loss_norm"):
        build_task("ddd", 3, loss_norm="slots")
    assert train_dataset(cfg, synthetic, task).augment_prob == 0.5
    cfg.data.augment_prob = 1.0  # an explicit value wins
    assert train_dataset(cfg, synthetic, task).augment_prob == 1.0
    ds = TrainDataset(synthetic, task, (320, 96), scale_jitter=0.3, shift_jitter=0.1, flip_prob=0.0,
                      color=False, random_crop=False)
    plain = TrainDataset(synthetic, task, (320, 96), augment=False)
    flags = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            flags.append(float(item["augmented"]))
            if not item["augmented"]:  # the test geometry, exactly
                np.testing.assert_array_equal(item["input"], plain[i]["input"])
                np.testing.assert_array_equal(item["ind"], plain[i]["ind"])
    assert 0 < sum(flags) < len(flags)
    batch = collate([ds[i] for i in range(len(ds))])
    outputs = _outputs(len(ds), out=(80, 24))
    assert task.loss([outputs], batch)[1]["dep"] == ddd_losses(outputs, batch, "original")["dep"]
    assert all(float(TrainDataset(synthetic, build_task("ddd", 3), (320, 96))[i]["augmented"]) == 1.0
               for i in range(3))  # the default: every training image augmented


def test_decode_layout_on_a_hand_built_map():
    h, w = 6, 8
    maps = {"hm": torch.zeros(1, 3, h, w), "dep": torch.zeros(1, 1, h, w), "rot": torch.zeros(1, 8, h, w),
            "dim": torch.zeros(1, 3, h, w), "wh": torch.zeros(1, 2, h, w), "reg": torch.zeros(1, 2, h, w)}
    maps["hm"][0, 1, 2, 3] = 0.9
    maps["hm"][0, 1, 2, 4] = 0.8  # suppressed neighbour
    maps["dep"][0, 0, 2, 3] = 12.5
    maps["dim"][0, :, 2, 3] = torch.tensor([1.5, 1.6, 3.9])
    maps["wh"][0, :, 2, 3] = torch.tensor([4.0, 2.0])
    maps["reg"][0, :, 2, 3] = torch.tensor([0.25, 0.25])
    maps["rot"][0, [1, 2, 3], 2, 3] = torch.tensor([3.0, math.sin(0.3), math.cos(0.3)])  # bin 1, residual 0.3
    row = decode_ddd(**maps, K=5)[0, 0]
    expected = [1.25, 1.25, 5.25, 3.25, 0.9, 1, 3.25, 2.25, 12.5, 1.5, 1.6, 3.9, 0.3 - math.pi / 2]
    np.testing.assert_allclose(row.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_postprocess_follows_the_original_unprojection():
    g = torch.Generator().manual_seed(1)
    rows = torch.rand(2, 5, ROW_2D, generator=g) * 100
    rows[..., COLUMNS["depth"]] = 5 + rows[..., COLUMNS["depth"]] / 3
    rows[..., COLUMNS["alpha"]] = torch.linspace(-3.1, 3.1, 10).reshape(2, 5)
    p = torch.tensor([[700.0, 0, 600, 45], [0, 700, 180, -0.3], [0, 0, 1, 0.005]]).expand(2, 3, 4).clone()
    p[1, 0, 2] = 300
    out = ddd_postprocess(rows, p)
    for b in range(2):
        for k in range(5):  # the original's unproject_2d_to_3d, written out in numpy
            P, r = p[b].double().numpy(), rows[b, k].double().numpy()
            u, v, d, h, alpha = r[6], r[7], r[8], r[9], r[12]
            z = d - P[2, 3]
            x = (u * d - P[0, 3] - P[0, 2] * z) / P[0, 0]
            y = (v * d - P[1, 3] - P[1, 2] * z) / P[1, 1] + h / 2
            np.testing.assert_allclose(out[b, k, 13:16].numpy(), [x, y, z], rtol=1e-5, atol=1e-4)
            ry = out[b, k, 16].item()
            assert -np.pi <= ry < np.pi and angle_diff(ry, alpha + np.arctan2(u - P[0, 2], P[0, 0])) < 1e-5


def test_kitti_result_lines_read_back(tmp_path):
    row = np.zeros(ROW_3D, np.float32)
    c = COLUMNS
    for name, value in dict(x1=10.123, y1=20, x2=50, y2=60.5, score=0.87654, **{"class": 2}, h=1.7, w=0.6, l=1.8,
                            alpha=-1.234, x=2.5, y=1.6, z=22.25, rot_y=-1.1).items():
        row[c[name]] = value
    low = row.copy()
    low[c["score"]] = 0.1
    lines = rows_to_kitti(np.stack([row, low]), ["Car", "Pedestrian", "Cyclist"], score_thresh=0.2)
    assert len(lines) == 1 and lines[0].startswith("Cyclist 0.00 0 -1.23 10.12 20.00 50.00 60.50 1.70")
    path = write_kitti_results(tmp_path / "res", 7, lines)
    assert path.name == "000007.txt"
    (obj,) = read_label_file(path)
    assert obj.type == "Cyclist" and obj.score == pytest.approx(0.8765)
    assert obj.loc == pytest.approx((2.5, 1.6, 22.25), abs=0.006) and obj.rot_y == pytest.approx(-1.1)
    assert write_kitti_results(tmp_path / "res", 8, []).read_text() == ""


def test_decode_and_lift_export_to_onnx(tmp_path, synthetic):
    ort = pytest.importorskip("onnxruntime")

    class Lift(torch.nn.Module):
        def forward(self, hm, dep, rot, dim, wh, reg, calib):
            maps = activate_ddd({"hm": hm, "dep": dep, "rot": rot, "dim": dim, "wh": wh, "reg": reg})
            return ddd_postprocess(decode_ddd(**maps, K=20), calib)

    inputs = {**_outputs(1, seed=3), "calib": torch.from_numpy(synthetic.samples[0].calib[None])}
    path = tmp_path / "lift.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic and the legacy exporter
        torch.onnx.export(Lift(), tuple(inputs.values()), str(path), input_names=list(inputs), opset_version=17,
                          dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    np.testing.assert_allclose(got, Lift()(*inputs.values()).numpy(), rtol=1e-4, atol=1e-4)
