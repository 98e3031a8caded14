import math

import pytest
import torch

from centernet.ops.decode import decode_ctdet, gather_feat, peaks, topk
from centernet.ops.losses import focal_loss, reg_l1_loss
from centernet.models.heads import prior_bias


def logit(p):
    return math.log(p / (1 - p))


def test_focal_loss_spec_example():
    gt = torch.tensor([[0, .5, 0], [.5, 1, .5], [0, .5, 0]]).view(1, 1, 3, 3)
    logits = torch.full((1, 1, 3, 3), logit(0.1))
    logits[0, 0, 1, 1] = logit(0.8)
    assert focal_loss(logits, gt).item() == pytest.approx(0.0134036, abs=1e-6)


def test_focal_loss_without_positives_is_the_negative_sum():
    gt = torch.zeros(1, 1, 2, 2)
    logits = torch.full((1, 1, 2, 2), logit(0.5))
    expected = -4 * math.log(0.5) * 0.25
    assert focal_loss(logits, gt).item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_clamps_extreme_logits():
    gt = torch.zeros(1, 1, 2, 2)
    gt[0, 0, 0, 0] = 1
    loss = focal_loss(torch.full((1, 1, 2, 2), 100.0), gt)
    assert torch.isfinite(loss) and loss.item() > 0


def test_reg_l1_spec_example_and_mask():
    pred = torch.zeros(1, 2, 4, 4)
    pred[0, :, 1, 2] = torch.tensor([3.0, 5.0])
    ind = torch.tensor([[1 * 4 + 2, 0]])
    target = torch.tensor([[[4.0, 7.0], [100.0, 100.0]]])
    mask = torch.tensor([[1.0, 0.0]])  # the second object is masked out
    assert reg_l1_loss(pred, ind, mask, target).item() == pytest.approx(1.49993, abs=1e-5)


def test_prior_bias():
    assert prior_bias(0.1) == pytest.approx(-2.1972246, abs=1e-6)
    assert torch.sigmoid(torch.tensor(prior_bias(0.1))).item() == pytest.approx(0.1)


def test_decode_spec_example():
    heat = torch.zeros(1, 1, 6, 8)
    heat[0, 0, 2, 3] = 0.9
    heat[0, 0, 2, 4] = 0.8  # neighbour: suppressed by the 3x3 max
    wh = torch.zeros(1, 2, 6, 8)
    wh[0, :, 2, 3] = torch.tensor([4.0, 2.0])
    reg = torch.full((1, 2, 6, 8), 0.25)
    dets = decode_ctdet(heat, wh, reg, K=5)
    assert dets.shape == (1, 5, 6)
    torch.testing.assert_close(dets[0, 0], torch.tensor([1.25, 1.25, 5.25, 3.25, 0.9, 0.0]))
    assert (dets[0, 1:, 4] == 0).all()
    no_reg = decode_ctdet(heat, wh, None, K=1)
    torch.testing.assert_close(no_reg[0, 0, :4], torch.tensor([1.5, 1.5, 5.5, 3.5]))


def test_peaks_keep_ties_and_topk_over_classes():
    heat = torch.zeros(1, 2, 4, 4)
    heat[0, 0, 1, 1] = heat[0, 0, 1, 2] = 0.5  # equal neighbours both survive
    heat[0, 1, 3, 0] = 0.7
    kept = peaks(heat)
    assert kept[0, 0, 1, 1] == 0.5 and kept[0, 0, 1, 2] == 0.5
    score, inds, classes, ys, xs = topk(kept, K=3)
    assert score[0].tolist() == pytest.approx([0.7, 0.5, 0.5])
    assert classes[0, 0] == 1 and ys[0, 0] == 3 and xs[0, 0] == 0 and inds[0, 0] == 12


def test_gather_feat():
    feat = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    ind = torch.tensor([[0, 7], [19, 3]])
    out = gather_feat(feat, ind)
    assert out.shape == (2, 2, 3)
    assert out[0, 1].tolist() == [feat[0, c, 1, 2].item() for c in range(3)]
    assert out[1, 0].tolist() == [feat[1, c, 3, 4].item() for c in range(3)]


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("grad", [False, True])  # in place into the max-pool's output, or out of place
def test_peaks_equal_the_max_pool_definition(kernel, channels_last, grad):
    """The NMS keeps exactly what the original's max-pool NMS keeps, whatever the memory format of the maps."""
    torch.manual_seed(0)
    heat = torch.rand(2, 5, 17, 23).round(decimals=1)  # coarse values: many ties across neighbours
    heat[0, 1, 4, 4] = float("nan")  # the original's product keeps a NaN (a diverged network) visible
    if channels_last:
        heat = heat.contiguous(memory_format=torch.channels_last)
    hmax = torch.nn.functional.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    expected = heat * (hmax == heat).float()
    got = peaks(heat.requires_grad_(grad), kernel)
    assert torch.equal(got.detach().nan_to_num(-1), expected.nan_to_num(-1))
    assert 0 < int((got > 0).sum()) < heat.numel()
