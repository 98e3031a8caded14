"""CornerNet targets, losses, decoding and post-processing (SPEC 2, 3, 7)."""
from __future__ import annotations

import math
import warnings
from itertools import permutations

import numpy as np
import pytest
import torch
from torch import nn

from centernet.ops.heatmap import gaussian_radius
from centernet.ops.losses import focal_loss
from centernet.tasks.cornernet_decode import cornernet_oracle_maps, cornernet_postprocess, decode_cornernet
from centernet.tasks.cornernet_losses import ae_loss, corner_terms, offset_loss
from centernet.tasks.cornernet_targets import corner_radii, encode_corners

# Several objects of two classes on a 40x32 map: touching boxes (0 | 1, sharing the edge x = 12.5),
# diagonally adjacent top-left corners of one class (0, 2), a box reaching the map's last pixel (3)
BOXES = np.array([
    [2.25, 3.5, 12.5, 15.75],
    [12.5, 3.5, 20.0, 9.0],
    [3.75, 4.25, 30.5, 28.125],
    [31.0, 20.0, 39.0, 31.0],
    [6.0, 18.0, 11.5, 26.0],
], dtype=np.float32)
LABELS = np.array([0, 0, 0, 1, 1])
OUT_W, OUT_H, CLASSES, MAX_OBJECTS = 40, 32, 2, 8


def _encode(boxes=BOXES, labels=LABELS, ignore=None, **kw) -> dict[str, np.ndarray]:
    ignore = np.zeros(len(boxes), bool) if ignore is None else ignore
    return encode_corners(boxes, labels, ignore, OUT_W, OUT_H, CLASSES, MAX_OBJECTS, **kw)


def _batch(*targets: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}


# ---------------------------------------------------------------------------------------------- targets
def test_corner_targets_of_one_box() -> None:
    t = encode_corners(np.array([[4.25, 5.5, 14.0, 15.75]]), np.array([1]), np.array([False]), 20, 18, 3, 4)
    assert t["tl_heat"].shape == (3, 18, 20) and t["tl_regr"].shape == (4, 2)
    assert t["tl_ind"][0] == 5 * 20 + 4 and t["br_ind"][0] == 15 * 20 + 14
    np.testing.assert_array_equal(t["tl_regr"][0], [0.25, 0.5])
    np.testing.assert_array_equal(t["br_regr"][0], [0.0, 0.75])
    np.testing.assert_array_equal(t["tag_mask"], [1, 0, 0, 0])
    assert t["tl_heat"][1, 5, 4] == 1 and t["br_heat"][1, 15, 14] == 1
    assert t["tl_heat"][[0, 2]].max() == 0 and t["br_heat"][[0, 2]].max() == 0
    # 9.75 x 10.25 -> ceil 10 x 11 -> corrected radius at 0.3 is 2.44 -> 2: the r=2 kernel (SPEC 2)
    assert int(gaussian_radius(11, 10, 0.3, "cornernet")) == 2
    np.testing.assert_allclose(t["tl_heat"][1, 5, 5], 0.486752, atol=1e-6)
    np.testing.assert_allclose(t["tl_heat"][1, 6, 5], 0.236928, atol=1e-6)
    np.testing.assert_allclose(t["br_heat"][1, 13, 14], 0.056135, atol=1e-6)
    assert t["tl_heat"][1, 5, 7] == 0  # outside the radius


@pytest.mark.parametrize("penalty,expected_nonzero", [("none", 1), ("fixed", 9), ("object", 25)])
def test_penalty_ablation(penalty: str, expected_nonzero: int) -> None:
    # a 10x10 box far from the borders; "fixed" with radius 1 is the 3x3 kernel, "object" the 5x5 r=2 one
    t = encode_corners(np.array([[10.0, 10.0, 20.0, 20.0]]), np.array([0]), np.array([False]), 32, 32, 1, 2,
                       penalty=penalty, fixed_radius=1)
    assert np.count_nonzero(t["tl_heat"]) == expected_nonzero
    assert np.count_nonzero(t["br_heat"]) == expected_nonzero
    assert t["tl_heat"][0, 10, 10] == 1
    if penalty == "fixed":
        np.testing.assert_allclose(t["tl_heat"][0, 10, 11], 0.135335, atol=1e-6)


def test_object_radius_follows_the_box_size() -> None:
    w, h = np.array([1.0, 9.5, 50.0]), np.array([1.0, 9.5, 100.0])
    radii = corner_radii(w, h)
    expected = [max(0, int(gaussian_radius(math.ceil(b), math.ceil(a), 0.3, "cornernet"))) for a, b in zip(w, h)]
    np.testing.assert_array_equal(radii, expected)
    assert radii.tolist() == [0, 2, 14]  # SPEC 2 values at 0.3: (1,1) 0.23, (10,10) 2.26, (50,100) 14.45
    np.testing.assert_array_equal(corner_radii(w, h, "fixed", 3), [3, 3, 3])
    np.testing.assert_array_equal(corner_radii(w, h, "none"), [0, 0, 0])
    with pytest.raises(ValueError, match="penalty"):
        corner_radii(w, h, "gaussian")  # type: ignore[arg-type]


def test_clipping_dropping_and_bad_input() -> None:
    boxes = np.array([[-3.0, 2.0, 8.0, 50.0], [5.0, 5.0, 5.0, 9.0], [1.0, 1.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]])
    t = encode_corners(boxes, np.array([0, 0, 0, 0]), np.array([False, False, True, False]), 10, 12, 1, 3)
    np.testing.assert_array_equal(t["tag_mask"], [1, 0, 0])  # zero width, ignored, past max_objects
    assert t["tl_ind"][0] == 2 * 10 + 0 and t["br_ind"][0] == 11 * 10 + 8  # clipped to the map
    assert np.count_nonzero(t["tl_heat"] == 1) == 1 and np.count_nonzero(t["br_heat"] == 1) == 1
    with pytest.raises(ValueError, match="labels"):
        encode_corners(boxes[:1], np.array([3]), np.array([False]), 10, 12, 2, 3)
    empty = encode_corners(np.zeros((0, 4)), np.zeros(0, int), np.zeros(0, bool), 10, 12, 2, 3)
    assert empty["tl_heat"].max() == 0 and empty["tag_mask"].sum() == 0


# ----------------------------------------------------------------------------------------------- losses
def test_ae_loss_hand_example() -> None:
    # e = (0.5, 1.25): pull = ((0.25 + 0.25) + (0.0625 + 0.0625)) / 2; push: both ordered pairs relu(1 - 0.75)
    tl, br = torch.tensor([[0.0, 1.0, 7.0]]), torch.tensor([[1.0, 1.5, -3.0]])
    pull, push = ae_loss(tl, br, torch.tensor([[1.0, 1.0, 0.0]]))
    assert pull.item() == pytest.approx(0.3125)
    assert push.item() == pytest.approx(0.25)


def _loop_ae(tl: torch.Tensor, br: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Pooled pull and push, one object and one pair at a time."""
    pull, objects, push, pairs = 0.0, 0, 0.0, 0
    for b in range(tl.shape[0]):
        idx = [m for m in range(tl.shape[1]) if mask[b, m] > 0]
        e = {m: (tl[b, m].item() + br[b, m].item()) / 2 for m in idx}
        for m in idx:
            pull += (tl[b, m].item() - e[m]) ** 2 + (br[b, m].item() - e[m]) ** 2
            objects += 1
        for i, j in permutations(idx, 2):
            push += max(0.0, 1 - abs(e[i] - e[j]))
            pairs += 1
    return pull / max(objects, 1), push / max(pairs, 1)


def test_ae_loss_pools_over_the_batch_and_never_across_images() -> None:
    g = torch.Generator().manual_seed(0)
    tl, br = torch.rand(3, 5, generator=g), torch.rand(3, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 0, 1, 0, 1]])
    pull, push = ae_loss(tl, br, mask)
    exp_pull, exp_push = _loop_ae(tl, br, mask)
    assert pull.item() == pytest.approx(exp_pull, rel=1e-5)
    assert push.item() == pytest.approx(exp_push, rel=1e-5)
    # the one-object image adds its pull but no push pair, whatever its embedding
    tl2 = tl.clone()
    tl2[1, 0] = tl[0, 0]
    br2 = br.clone()
    br2[1, 0] = br[0, 0]
    assert ae_loss(tl2, br2, mask)[1].item() == pytest.approx(push.item(), rel=1e-6)
    for kind in (torch.bool, torch.uint8, torch.float32):  # any mask type
        got = ae_loss(tl, br, mask.to(kind))
        assert got[0].item() == pytest.approx(pull.item()) and got[1].item() == pytest.approx(push.item())


def test_ae_loss_one_object_batch_of_one_and_empty() -> None:
    pull, push = ae_loss(torch.tensor([[0.2, 9.0]]), torch.tensor([[0.6, 9.0]]), torch.tensor([[1.0, 0.0]]))
    assert pull.item() == pytest.approx(0.08) and push.item() == 0  # (0.2^2 + 0.2^2), no pair
    tl = torch.zeros(2, 4, requires_grad=True)
    br = torch.zeros(2, 4, requires_grad=True)
    pull, push = ae_loss(tl, br, torch.zeros(2, 4))
    assert pull.item() == 0 and push.item() == 0
    (pull + push).backward()
    assert torch.isfinite(tl.grad).all() and tl.grad.abs().sum() == 0


def test_ae_loss_gradient_is_finite_with_equal_embeddings() -> None:
    tl = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)  # identical embeddings: |e_i - e_j| = 0
    br = torch.tensor([[0.5, 0.5, 0.1]], requires_grad=True)
    pull, push = ae_loss(tl, br, torch.ones(1, 3))
    assert push.item() == pytest.approx((2 * 1 + 4 * 0.8) / 6)  # e = (0.5, 0.5, 0.3)
    (pull + push).backward()
    assert torch.isfinite(tl.grad).all() and torch.isfinite(br.grad).all()
    assert br.grad[0, 2] != 0


def _formula_focal(p: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """SPEC 3 / the original's _neg_loss normalisation, written with boolean indexing."""
    pos, neg = gt == 1, gt < 1
    pos_loss = (torch.log(p[pos]) * (1 - p[pos]) ** 2).sum()
    neg_loss = (torch.log(1 - p[neg]) * p[neg] ** 2 * (1 - gt[neg]) ** 4).sum()
    return -neg_loss if pos.sum() == 0 else -(pos_loss + neg_loss) / pos.sum()


@pytest.mark.parametrize("with_positives", [True, False])
def test_focal_loss_has_cornernets_normalisation(with_positives: bool) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 6, 5, generator=g)
    gt = torch.rand(2, 3, 6, 5, generator=g) * 0.9
    if with_positives:
        gt[0, 1, 2, 3] = gt[1, 2, 0, 0] = gt[1, 0, 5, 4] = 1
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    torch.testing.assert_close(focal_loss(logits, gt), _formula_focal(p, gt))


def test_offset_loss_is_smooth_l1_per_object() -> None:
    pred = torch.zeros(1, 2, 4, 4)
    pred[0, :, 1, 2] = torch.tensor([0.5, 2.0])  # at index 6
    target = torch.tensor([[[0.0, 0.0], [0.3, 0.3]]])
    loss = offset_loss(pred, torch.tensor([[6, 0]]), torch.tensor([[1.0, 0.0]]), target)
    assert loss.item() == pytest.approx((0.5 * 0.5**2 + (2.0 - 0.5)) / (1 + 1e-4))
    assert offset_loss(pred, torch.tensor([[6, 0]]), torch.zeros(1, 2), target).item() == 0


def test_corner_terms_vanish_on_perfect_embeddings_and_offsets() -> None:
    batch = _batch(_encode(), _encode(BOXES[:1], LABELS[:1]))
    maps = cornernet_oracle_maps(batch)
    heat_logits = torch.randn(2, 2, CLASSES, OUT_H, OUT_W)
    output = {**maps, "tl_heat": heat_logits[0], "br_heat": heat_logits[1]}
    terms = corner_terms(output, batch)
    assert set(terms) == {"heat", "pull", "push", "regr"}
    assert terms["pull"].item() == 0 and terms["push"].item() == 0 and terms["regr"].item() == 0
    assert terms["heat"].item() > 0
    output["tl_tag"] = output["tl_tag"] * 0.3  # tags of different objects now closer than 1: pushed, and pulled
    terms = corner_terms(output, batch)
    assert terms["pull"].item() > 0 and terms["push"].item() > 0


# ----------------------------------------------------------------------------------------------- decode
def _maps(c: int = 2, h: int = 12, w: int = 14) -> dict[str, torch.Tensor]:
    return {"tl_heat": torch.zeros(1, c, h, w), "br_heat": torch.zeros(1, c, h, w), "tl_tag": torch.zeros(1, 1, h, w),
            "br_tag": torch.zeros(1, 1, h, w), "tl_regr": torch.zeros(1, 2, h, w), "br_regr": torch.zeros(1, 2, h, w)}


def _decode(maps: dict[str, torch.Tensor], **kw) -> torch.Tensor:
    return decode_cornernet(maps["tl_heat"], maps["br_heat"], maps["tl_tag"], maps["br_tag"], maps["tl_regr"],
                            maps["br_regr"], **kw)


def test_decode_hand_example() -> None:
    m = _maps()
    m["tl_heat"][0, 1, 3, 2] = 0.9  # top-left corner of class 1 at (x=2, y=3)
    m["tl_heat"][0, 1, 3, 3] = 0.8  # a weaker neighbour: suppressed by the 3x3 peak test
    m["br_heat"][0, 1, 9, 8] = 0.7
    m["tl_regr"][0, :, 3, 2] = torch.tensor([0.25, 0.5])
    m["br_regr"][0, :, 9, 8] = torch.tensor([0.125, 0.75])
    m["tl_tag"][0, 0, 3, 2], m["br_tag"][0, 0, 9, 8] = 0.2, 0.65  # 0.45 apart: one object
    rows = _decode(m, K=10, num_dets=20)
    assert rows.shape == (1, 20, 6)
    torch.testing.assert_close(rows[0, 0], torch.tensor([2.25, 3.5, 8.125, 9.75, 0.8, 1.0]))
    assert (rows[0, 1:, 4] < 0.8).all()
    assert not ((rows[0, :, 0] == 3) & (rows[0, :, 4] > 0.4)).any()  # nothing from the suppressed neighbour
    # K * K < num_dets: as many rows as pairs
    assert _decode(m, K=3, num_dets=1000).shape == (1, 9, 6)
    # without offset heads the corners sit on the integer positions
    plain = decode_cornernet(m["tl_heat"], m["br_heat"], m["tl_tag"], m["br_tag"], None, None, K=10, num_dets=20)
    torch.testing.assert_close(plain[0, 0], torch.tensor([2.0, 3.0, 8.0, 9.0, 0.8, 1.0]))


def _pair(breaker: str | None) -> dict[str, torch.Tensor]:
    """One top-left corner (x=5, y=4) and one bottom-right corner (x=9, y=6), class 0, tags 0 and 0.5 (still
    one object), both scoring 0.9; ``breaker`` spoils one condition of a valid pair."""
    m = _maps(c=2)
    br_y, br_x = {"left": (6, 4), "above": (3, 9)}.get(breaker or "", (6, 9))
    m["tl_heat"][0, 0, 4, 5] = 0.9
    m["br_heat"][0, 1 if breaker == "class" else 0, br_y, br_x] = 0.9
    m["br_tag"][0, 0, br_y, br_x] = 0.51 if breaker == "tag" else 0.5
    return m


@pytest.mark.parametrize("breaker", ["class", "tag", "left", "above"])
def test_decode_rejects_invalid_pairs(breaker: str) -> None:
    valid = _decode(_pair(None), K=4, num_dets=16)
    torch.testing.assert_close(valid[0, 0], torch.tensor([5.0, 4.0, 9.0, 6.0, 0.9, 0.0]))
    rows = _decode(_pair(breaker), K=4, num_dets=16)
    assert (rows[0, :, 4] <= 0.45 + 1e-6).all()  # at most a real corner with a zero-score one
    assert (rows[0, :, 4] == -1).sum() > (valid[0, :, 4] == -1).sum()


def test_decode_degenerate_box_is_valid() -> None:
    m = _maps()
    m["tl_heat"][0, 0, 5, 5] = m["br_heat"][0, 0, 5, 5] = 0.6  # br == tl: not "left of" nor "above"
    torch.testing.assert_close(_decode(m, K=2, num_dets=4)[0, 0], torch.tensor([5.0, 5.0, 5.0, 5.0, 0.6, 0.0]))


def test_round_trip_encode_oracle_decode() -> None:
    targets = [_encode(), _encode(BOXES[[4, 1]], LABELS[[4, 1]])]
    batch = _batch(*targets)
    rows = _decode(cornernet_oracle_maps(batch), K=100, num_dets=1000)  # [2, 1000, 6]
    for i, (boxes, labels) in enumerate([(BOXES, LABELS), (BOXES[[4, 1]], LABELS[[4, 1]])]):
        found = rows[i][rows[i, :, 4] == 1]  # both corners exact peaks of one object
        got = sorted(tuple(r) for r in found[:, [0, 1, 2, 3, 5]].tolist())
        expected = sorted(tuple(b) + (float(c),) for b, c in zip(boxes.tolist(), labels))
        assert got == expected  # exactly, in output pixels
        assert (rows[i, :, 4][rows[i, :, 4] != 1] <= 0).all()  # no pair with any real corner but the true ones


def test_decode_exports_to_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")

    class Decoder(nn.Module):
        def forward(self, tl_heat, br_heat, tl_tag, br_tag, tl_regr, br_regr):
            return decode_cornernet(tl_heat, br_heat, tl_tag, br_tag, tl_regr, br_regr, K=20, num_dets=50)

    g = torch.Generator().manual_seed(3)
    b, c, h, w = 2, 3, 16, 12
    inputs = (torch.rand(b, c, h, w, generator=g), torch.rand(b, c, h, w, generator=g),
              torch.rand(b, 1, h, w, generator=g), torch.rand(b, 1, h, w, generator=g),
              torch.rand(b, 2, h, w, generator=g), torch.rand(b, 2, h, w, generator=g))
    names = ["tl_heat", "br_heat", "tl_tag", "br_tag", "tl_regr", "br_regr"]
    path = tmp_path / "decode.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Decoder(), inputs, str(path), input_names=names, output_names=["rows"], opset_version=17,
                          dynamic_axes={n: {0: "batch"} for n in names}, dynamo=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
    expected = Decoder()(*inputs).numpy()
    assert got.shape == expected.shape == (b, 50, 6)
    valid = expected[..., 4] > -1  # the -1 tail is a tie whose order may differ
    assert valid.sum() > 20
    np.testing.assert_array_equal(got[..., 4] > -1, valid)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------ postprocess
def test_postprocess_soft_nms_per_class() -> None:
    rows = torch.tensor([[
        [0.0, 0.0, 9.0, 9.0, 0.9, 2.0],
        [0.0, 0.0, 9.0, 4.0, 0.8, 2.0],  # IoU 0.5 with the first (integer-pixel areas 100 and 50)
        [0.0, 0.0, 9.0, 4.0, 0.7, 1.0],  # another class: untouched
        [1.0, 1.0, 5.0, 5.0, -1.0, 2.0],  # an invalid pair
    ]])
    out = cornernet_postprocess(rows, K=100)
    assert len(out) == 1 and out[0].shape == (3, 6)
    scores = out[0][:, 4].tolist()
    assert scores[0] == pytest.approx(0.9) and scores[1] == pytest.approx(0.7)
    assert scores[2] == pytest.approx(0.8 * math.exp(-0.25 / 0.5), rel=1e-5)
    assert cornernet_postprocess(rows, K=2)[0].shape == (2, 6)
