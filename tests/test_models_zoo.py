"""The architecture zoo: parameter counts, shapes, training passes and numeric properties (SPEC 8)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from centernet.models import ARCHS, DEFAULT_HEAD_CONV, INPUT_MULTIPLE, build_model
from centernet.models.backbones.dla import DLA
from centernet.models.backbones.hourglass import Hourglass
from centernet.models.layers.deform_conv import ModulatedDeformConv2d
from centernet.tasks import TASKS

HEADS = {"hm": 80, "wh": 2, "reg": 2}
# SPEC 8: parameter counts with 80 classes, in millions (rounded to 0.01M)
PAPER_PARAMS_M = {"res_18": 15.82, "resdcn_18": 14.44, "resdcn_101": 49.67, "dla_34": 19.68, "hourglass": 191.28}


def count_params(arch: str, heads=HEADS) -> int:
    """The original's parameter count: every weight and bias, including the DLA projections it never uses
    (kept here as buffers: see test_dla_keeps_the_original_unused_projections_as_state_not_parameters)."""
    with torch.device("meta"):  # no memory, no init cost
        model = build_model(arch, heads)
    return sum(v.numel() for k, v in model.state_dict().items() if k.endswith((".weight", ".bias")))


@pytest.mark.parametrize("arch, millions", [("dla_34", 20.11), ("hourglass", 194.81)])
def test_pose_parameter_counts_in_the_readme(arch: str, millions: float) -> None:
    """The README's multi_pose row: the person class with its 17 keypoints' heads."""
    heads = TASKS.get("multi_pose")(num_classes=1).head_channels()
    assert round(count_params(arch, heads) / 1e6, 2) == millions


@pytest.mark.parametrize("arch", [a for a in ARCHS.names() if a in PAPER_PARAMS_M])
def test_parameter_counts_match_the_paper(arch: str) -> None:
    assert round(count_params(arch) / 1e6, 2) == PAPER_PARAMS_M[arch]


def test_every_paper_architecture_is_registered() -> None:
    assert set(PAPER_PARAMS_M) <= set(ARCHS.names())
    assert DEFAULT_HEAD_CONV["dla_34"] == 256 and DEFAULT_HEAD_CONV["hourglass"] == 256


def test_dla_backbone_levels() -> None:
    backbone = DLA(34)
    assert backbone.channels == [16, 32, 64, 128, 256, 512]
    assert backbone.strides == [1, 2, 4, 8, 16, 32]
    feats = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 64 // s) for c, s in zip(backbone.channels,
                                                                                       backbone.strides)]


@pytest.mark.parametrize("arch", ["res_18", "resdcn_18", "dla_34", "dla_tiny_conv"])
def test_forward_backward_small_input(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, HEADS)
    assert model.down_ratio == 4
    out = model(torch.randn(2, 3, 64, 64))
    assert len(out) == 1
    assert {k: tuple(v.shape) for k, v in out[0].items()} == {k: (2, n, 16, 16) for k, n in HEADS.items()}
    sum(v.float().pow(2).mean() for v in out[0].values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch, task", [(a, "ctdet") for a in ARCHS.names()] + [("cornernet", "cornernet")])
def test_one_step_gives_every_trainable_parameter_a_gradient(arch: str, task: str) -> None:
    """DistributedDataParallel stops at the second step when a parameter never gets a gradient (the original
    DLA's unused projections did): every registered architecture, every stack's every head, and CornerNet's
    corner branches."""
    torch.manual_seed(0)
    model = build_model(arch, TASKS.get(task)(num_classes=2).heads())
    side = max(64, INPUT_MULTIPLE[arch])
    outputs = model(torch.randn(2, 3, side, side))  # batch norm needs 2 values at Hourglass's 1x1 bottom
    sum(v.float().pow(2).mean() for stack in outputs for v in stack.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and [n for n, p in trainable if p.grad is None] == []


def test_dla_keeps_the_original_unused_projections_as_state_not_parameters() -> None:
    model = build_model("dla_34", HEADS)
    state = model.state_dict()
    for level in ("level3", "level4"):  # trees of two levels whose sub-trees project their own input
        assert f"backbone.{level}.project.0.weight" in state and f"backbone.{level}.project.1.running_var" in state
        assert not [n for n, _ in model.named_parameters() if n.startswith(f"backbone.{level}.project.")]


@pytest.fixture(scope="module")
def hourglass() -> nn.Module:
    torch.manual_seed(0)
    return build_model("hourglass", HEADS)


def test_hourglass_shapes_and_stacks(hourglass: nn.Module) -> None:
    assert isinstance(hourglass.backbone, Hourglass)
    assert hourglass.backbone.strides == [4, 4] and hourglass.backbone.channels == [256, 256]
    assert hourglass.backbone.input_multiple == 128
    size = hourglass.backbone.input_multiple  # the smallest input the 5 nested halvings allow
    hourglass.train()
    # batch 2: in training the 1x1 bottom of a 128 input needs more than one value per BN channel
    outs = hourglass(torch.randn(2, 3, size, size))
    assert len(outs) == 2  # intermediate supervision: both stacks' heads
    for out in outs:
        assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, n, size // 4, size // 4)
                                                               for k, n in HEADS.items()}
    sum(v.pow(2).mean() for out in outs for v in out.values()).backward()
    assert all(p.grad is not None for p in hourglass.parameters())
    hourglass.eval()
    with torch.no_grad():
        outs = hourglass(torch.randn(1, 3, size, size))
    assert len(outs) == 1 and outs[0]["hm"].shape == (1, 80, size // 4, size // 4)


def _as_plain_conv(dcn: ModulatedDeformConv2d) -> nn.Conv2d:
    """The conv a DCN equals when its offsets are zero and its masks all sigmoid(0) = 1/2."""
    conv = nn.Conv2d(dcn.weight.shape[1], dcn.weight.shape[0], dcn.kernel_size, dcn.stride, dcn.padding,
                     dcn.dilation)
    conv.weight.data.copy_(dcn.weight.data / 2)
    conv.bias.data.copy_(dcn.bias.data)
    return conv


def test_dla_neck_with_zero_offsets_equals_plain_convs() -> None:
    """With zero offset/mask predictors every DCN node is a conv with half the weights, so swapping
    each for that conv must leave the whole network's output unchanged."""
    torch.manual_seed(1)
    model = build_model("dla_34", HEADS).eval()
    dcns = [(name, m) for name, m in model.named_modules() if isinstance(m, ModulatedDeformConv2d)]
    assert len(dcns) == 2 * (1 + 2 + 3) + 2 * 2  # DLA-up's IDAs merge 1, 2, 3 maps; the last IDA 2
    for _, m in dcns:
        nn.init.zeros_(m.conv_offset_mask.weight)
        nn.init.zeros_(m.conv_offset_mask.bias)
        nn.init.normal_(m.bias, std=0.1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        deformable = model(x)[0]
        for name, m in dcns:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, _as_plain_conv(m))
        plain = model(x)[0]
    for k in HEADS:
        torch.testing.assert_close(deformable[k], plain[k], rtol=1e-4, atol=1e-4)


def test_dla_tiny_conv_is_dla_tiny_with_plain_convs_in_the_neck() -> None:
    """The demo's model: dla_tiny's modules and shapes, each neck DCN a 3x3 conv of the same weight shape."""
    dcn, conv = (build_model(arch, HEADS).state_dict() for arch in ("dla_tiny", "dla_tiny_conv"))
    offsets = {k for k in dcn if ".conv_offset_mask." in k}
    assert len(offsets) == 2 * 16  # weight and bias of each of the 16 DCNs
    assert {k: v.shape for k, v in dcn.items() if k not in offsets} == {k: v.shape for k, v in conv.items()}
    assert not any(isinstance(m, ModulatedDeformConv2d) for m in build_model("dla_tiny_conv", HEADS).modules())


def test_dcn_matches_conv_at_zero_offsets_with_known_numbers() -> None:
    """Hand-checkable: a 3x3 DCN of all-ones weights on an all-ones 3x3 image, zero offsets, masks 1/2:
    the centre sees 9 taps (9 / 2 = 4.5), edges 6 (3.0), corners 4 (2.0)."""
    dcn = ModulatedDeformConv2d(1, 1, 3, padding=1)
    nn.init.ones_(dcn.weight)
    out = dcn(torch.ones(1, 1, 3, 3))[0, 0]
    expected = torch.tensor([[2.0, 3.0, 2.0], [3.0, 4.5, 3.0], [2.0, 3.0, 2.0]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, F.conv2d(torch.ones(1, 1, 3, 3), dcn.weight / 2, padding=1)[0, 0])


def _fill_deterministic(model: nn.Module) -> None:
    """Seed-free weights: sin waves scaled by 1/sqrt(fan-in), identity-ish BN statistics."""
    with torch.no_grad():
        for i, (name, t) in enumerate(model.state_dict().items()):
            if name.endswith("num_batches_tracked"):
                continue
            wave = torch.sin(torch.arange(t.numel(), dtype=torch.float64) * 0.37 + i).view(t.shape)
            if name.endswith("running_var"):
                wave = 1 + wave.abs()
            elif t.dim() > 1:
                wave = wave / math.sqrt(t[0].numel())
            t.copy_(wave.to(t.dtype))


# Recorded from this implementation (torch 2.x, CPU, float32) with the test below: _fill_deterministic
# weights, eval mode, input sin(arange(3 * 64 * 64) * 0.01).view(1, 3, 64, 64); values are
# (hm mean, wh[0, :, 5, 7], reg abs-sum). A guard against silent changes of the network's computation.
REFERENCE = {
    "resdcn_18": (0.0523362, [1.8932467, 2.2877660], 925.0503),
    "dla_34": (0.0590993, [1.9190358, -0.1930089], 1142.1360),
}


@pytest.mark.parametrize("arch", sorted(REFERENCE))
def test_recorded_reference_outputs(arch: str) -> None:
    model = build_model(arch, HEADS).eval()
    _fill_deterministic(model)
    x = torch.sin(torch.arange(3 * 64 * 64, dtype=torch.float64) * 0.01).view(1, 3, 64, 64).float()
    with torch.no_grad():
        out = model(x)[0]
    got = (out["hm"].mean().item(), out["wh"][0, :, 5, 7].tolist(), out["reg"].abs().sum().item())
    hm_mean, wh, reg_sum = REFERENCE[arch]
    assert got[0] == pytest.approx(hm_mean, rel=1e-4)
    assert got[1] == pytest.approx(wh, rel=1e-4)
    assert got[2] == pytest.approx(reg_sum, rel=1e-4)


def test_cornernet_is_hourglass_under_its_own_name() -> None:
    """One network, two names: "cornernet" (its preset's and checkpoints') builds the "hourglass" arch."""
    assert "cornernet" in ARCHS and "cornernet" not in ARCHS.names() and ARCHS.canonical("cornernet") == "hourglass"
    assert ARCHS.get("cornernet") is ARCHS.get("hourglass")
    assert (DEFAULT_HEAD_CONV["cornernet"], INPUT_MULTIPLE["cornernet"]) == (256, 128)
    with torch.device("meta"):
        model = build_model("cornernet", HEADS)
    assert model.arch == "cornernet" and count_params("cornernet") == count_params("hourglass")
