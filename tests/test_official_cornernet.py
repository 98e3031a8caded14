"""The original CornerNet's checkpoint names against ours, and CornerNet's size (SPEC 8: 201.04M)."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from centernet.models import build_model
from centernet.models.backbones.hourglass import HG104_DEPTH, HG104_DIMS, HG104_MODULES, Hourglass
from centernet.models.heads import Heads
from centernet.models.layers.corner_pool import CornerPoolModule
from centernet.tasks.cornernet import cornernet_heads
from centernet.weights.official import official_name
from centernet.weights.official_cornernet import (
    cornernet_key_map,
    cornernet_official_key,
    from_cornernet_official,
    to_cornernet_official,
)

Shapes = dict[str, tuple[int, ...]]


# -- the original's names, derived from its module structure (kp.py, kp_utils.py, utils.py, CornerNet.py) --
def _bn(out: Shapes, name: str, c: int, tracked: bool) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        out[f"{name}.{p}"] = (c,)
    if tracked:
        out[f"{name}.num_batches_tracked"] = ()


def _convolution(out: Shapes, name: str, k: int, cin: int, cout: int, tracked: bool, with_bn: bool = True) -> None:
    out[f"{name}.conv.weight"] = (cout, cin, k, k)
    if with_bn:
        _bn(out, f"{name}.bn", cout, tracked)
    else:
        out[f"{name}.conv.bias"] = (cout,)


def _residual(out: Shapes, name: str, cin: int, cout: int, stride: int, tracked: bool) -> None:
    out[f"{name}.conv1.weight"] = (cout, cin, 3, 3)
    _bn(out, f"{name}.bn1", cout, tracked)
    out[f"{name}.conv2.weight"] = (cout, cout, 3, 3)
    _bn(out, f"{name}.bn2", cout, tracked)
    if stride != 1 or cin != cout:
        out[f"{name}.skip.0.weight"] = (cout, cin, 1, 1)
        _bn(out, f"{name}.skip.1", cout, tracked)


def _kp_module(out: Shapes, name: str, n: int, dims: list[int], mods: list[int], tracked: bool) -> None:
    curr, nxt, cm = dims[0], dims[1], mods[0]
    for i in range(cm):  # up1: make_layer
        _residual(out, f"{name}.up1.{i}", curr, curr, 1, tracked)
    for i in range(cm):  # low1: CornerNet's make_hg_layer, the stride-2 residual first
        _residual(out, f"{name}.low1.{i}", curr if i == 0 else nxt, nxt, 2 if i == 0 else 1, tracked)
    if n > 1:
        _kp_module(out, f"{name}.low2", n - 1, dims[1:], mods[1:], tracked)
    else:
        for i in range(mods[1]):
            _residual(out, f"{name}.low2.{i}", nxt, nxt, 1, tracked)
    for i in range(cm):  # low3: make_layer_revr, the widening residual last
        _residual(out, f"{name}.low3.{i}", nxt, curr if i == cm - 1 else nxt, 1, tracked)


def original_cornernet(num_classes: int = 80, n: int = HG104_DEPTH, dims: list[int] = HG104_DIMS,
                       mods: list[int] = HG104_MODULES, nstack: int = 2, cnv_dim: int = 256,
                       tracked: bool = True) -> Shapes:
    """Every tensor of the original ``kp`` model as CornerNet builds it, ``module.``-prefixed."""
    out: Shapes = {}
    curr = dims[0]
    _convolution(out, "pre.0", 7, 3, 128, tracked)
    _residual(out, "pre.1", 128, curr, 2, tracked)
    for s in range(nstack):
        _kp_module(out, f"kps.{s}", n, dims, mods, tracked)
        _convolution(out, f"cnvs.{s}", 3, curr, cnv_dim, tracked)
        for corner in ("tl", "br"):  # the ``pool`` class
            p = f"{corner}_cnvs.{s}"
            _convolution(out, f"{p}.p1_conv1", 3, cnv_dim, 128, tracked)
            _convolution(out, f"{p}.p2_conv1", 3, cnv_dim, 128, tracked)
            out[f"{p}.p_conv1.weight"] = (cnv_dim, 128, 3, 3)
            _bn(out, f"{p}.p_bn1", cnv_dim, tracked)
            out[f"{p}.conv1.weight"] = (cnv_dim, cnv_dim, 1, 1)
            _bn(out, f"{p}.bn1", cnv_dim, tracked)
            _convolution(out, f"{p}.conv2", 3, cnv_dim, cnv_dim, tracked)
        for head, n_out in (("heats", num_classes), ("tags", 1), ("regrs", 2)):  # make_kp_layer
            for corner in ("tl", "br"):
                _convolution(out, f"{corner}_{head}.{s}.0", 3, cnv_dim, curr, tracked, with_bn=False)
                out[f"{corner}_{head}.{s}.1.weight"] = (n_out, curr, 1, 1)
                out[f"{corner}_{head}.{s}.1.bias"] = (n_out,)
        if s < nstack - 1:
            _residual(out, f"inters.{s}", curr, curr, 1, tracked)
            out[f"inters_.{s}.0.weight"] = (curr, curr, 1, 1)
            _bn(out, f"inters_.{s}.1", curr, tracked)
            out[f"cnvs_.{s}.0.weight"] = (curr, cnv_dim, 1, 1)
            _bn(out, f"cnvs_.{s}.1", curr, tracked)
    return {f"module.{k}": v for k, v in out.items()}


# -- a CornerNet composed of the project's pieces, laid out as the lead's model will be --------------------
class CornerNetLike(nn.Module):
    def __init__(self, num_classes: int = 80, depth: int = HG104_DEPTH, dims: list[int] | None = None,
                 modules: list[int] | None = None, cnv_dim: int = 256) -> None:
        super().__init__()
        self.backbone = Hourglass(2, depth, dims, modules, cnv_dim)
        self.branches = nn.ModuleList(
            nn.ModuleDict({"tl": CornerPoolModule(cnv_dim, ("top", "left")),
                           "br": CornerPoolModule(cnv_dim, ("bottom", "right"))}) for _ in range(2))
        head_conv = (dims or HG104_DIMS)[0]  # the original's curr_dim
        self.heads = nn.ModuleList(Heads(cnv_dim, cornernet_heads(num_classes), head_conv) for _ in range(2))

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        outs = []
        for feature, branches, heads in zip(self.backbone(x), self.branches, self.heads):
            corners = {name: branch(feature) for name, branch in branches.items()}
            outs.append({name: head(corners[name[:2]]) for name, head in heads.items()})
        return outs


def test_cornernet_size_is_201_04m() -> None:
    with torch.device("meta"):
        model = CornerNetLike()
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 2) == 201.04  # SPEC 8
    assert params == 201_035_212


@pytest.mark.parametrize("tracked", [True, False])
def test_original_names_map_one_to_one(tracked: bool) -> None:
    official = original_cornernet(tracked=tracked)
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in CornerNetLike().state_dict().items()}
    if not tracked:  # files of PyTorch 0.4.0 (the original's) have no num_batches_tracked
        ours = {k: v for k, v in ours.items() if not k.endswith("num_batches_tracked")}
    mapped = {cornernet_key_map(k): v for k, v in official.items()}
    assert None not in mapped and len(mapped) == len(official)
    assert mapped == ours
    assert {cornernet_official_key(k): v for k, v in ours.items()} == official
    assert len(original_cornernet()) == 1128  # 960 backbone + 2 stacks x (2 branches x 30 + 6 heads x 4)


def test_backbone_names_agree_with_the_centernet_hourglass_mapping() -> None:
    with torch.device("meta"):
        hourglass = build_model("hourglass", {"hm": 80, "wh": 2, "reg": 2})
    backbone_keys = [k for k in hourglass.state_dict() if k.startswith("backbone.")]
    assert len(backbone_keys) == 960
    for key in backbone_keys:
        name = "module." + official_name(hourglass, key)
        assert cornernet_official_key(key) == name and cornernet_key_map(name) == key


def test_a_small_official_state_loads_exactly() -> None:
    dims, mods = [16, 16, 24], [1, 1, 2]
    model = CornerNetLike(num_classes=3, depth=2, dims=dims, modules=mods, cnv_dim=16).eval()
    g = torch.Generator().manual_seed(0)
    official = {k: (torch.randint(0, 9, s, generator=g) if k.endswith("num_batches_tracked")
                    else torch.rand(s, generator=g) + 0.5)
                for k, s in original_cornernet(3, 2, dims, mods, cnv_dim=16).items()}
    model.load_state_dict(from_cornernet_official(official), strict=True)
    state = model.state_dict()
    for name, value in official.items():
        assert torch.equal(state[cornernet_key_map(name)], value), name
    assert to_cornernet_official(state).keys() == official.keys()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert outs[1]["tl_heat"].shape == (1, 3, 16, 16) and outs[1]["br_regr"].shape == (1, 2, 16, 16)


def test_foreign_names_are_refused() -> None:
    for name in ("module.hm.0.0.conv.weight", "module.tl_heats.0.2.weight", "module.tl_cnvs.x.conv1.weight",
                 "tl_cnvs", "module.ct_heats.0.1.bias"):
        assert cornernet_key_map(name) is None, name
    for key in ("heads.0.hm.0.weight", "branches.0.ct.conv1.weight", "neck.x", "backbone.fc.weight"):
        assert cornernet_official_key(key) is None, key
    with pytest.raises(ValueError, match="module.hm.0.0.conv.weight"):
        from_cornernet_official({"module.hm.0.0.conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="neck.x"):
        to_cornernet_official({"neck.x": torch.zeros(1)})


def test_the_cornernet_architecture_is_the_originals_tensor_for_tensor() -> None:
    """``cornernet`` built through the task registry's head declarations has exactly the original's tensors."""
    import centernet

    with torch.device("meta"):
        model = centernet.build_model("cornernet", cornernet_heads(80))
    ours = {cornernet_official_key(k): tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == original_cornernet()
