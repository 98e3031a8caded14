"""Official model-zoo layout: name mapping, strict loading, legacy files, ImageNet backbones (SPEC 8)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from centernet import load_official_checkpoint, load_pretrained_backbone
from centernet.models import build_model
from centernet.models.backbones.dla import DLA
from centernet.models.backbones.resnet import ResNet
from centernet.weights.fit import CheckpointMismatchError
from centernet.weights.official import to_official_state_dict
from centernet.weights.read import read_state as read_checkpoint

HEADS = {"hm": 80, "wh": 2, "reg": 2}
LEGACY_FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "checkpoints" / \
    "legacy_official_format_mbv2.pth"

# Tensor counts of the released files (SPEC 8) and of the other layouts.
OFFICIAL_TENSORS = {"resdcn_18": 177, "dla_34": 400, "res_18": 150, "hourglass": 984}
# (name, shape) facts of the original networks
KNOWN_TENSORS = {
    "resdcn_18": {
        "module.conv1.weight": (64, 3, 7, 7),
        "module.deconv_layers.0.conv_offset_mask.weight": (27, 512, 3, 3),
        "module.deconv_layers.3.weight": (256, 256, 4, 4),
        "module.hm.0.weight": (64, 64, 3, 3),
        "module.hm.2.weight": (80, 64, 1, 1),
    },
    "dla_34": {
        "module.base.base_layer.0.weight": (16, 3, 7, 7),
        "module.base.level3.tree2.root.conv.weight": (128, 448, 1, 1),  # 3 x 128 children + the 64-ch input
        "module.base.level5.root.conv.weight": (512, 1280, 1, 1),
        "module.base.fc.weight": (1000, 512, 1, 1),
        "module.dla_up.ida_0.proj_1.conv.conv_offset_mask.weight": (27, 512, 3, 3),
        "module.dla_up.ida_2.node_3.actf.0.running_var": (64,),
        "module.ida_up.up_2.weight": (64, 1, 8, 8),
        "module.hm.0.weight": (256, 64, 3, 3),
        "module.wh.2.bias": (2,),
    },
    "hourglass": {
        "module.pre.0.conv.weight": (128, 3, 7, 7),
        "module.pre.1.skip.0.weight": (256, 128, 1, 1),
        "module.kps.1.low2.low2.low2.low2.low2.3.conv2.weight": (512, 512, 3, 3),
        "module.inters_.0.1.running_mean": (256,),
        "module.cnvs_.0.0.weight": (256, 256, 1, 1),
        "module.hm.0.0.conv.weight": (256, 256, 3, 3),
        "module.hm.1.1.weight": (80, 256, 1, 1),
        "module.reg.1.0.conv.bias": (256,),
    },
}


def _randomised(arch: str, heads: dict[str, int] = HEADS, seed: int = 0) -> nn.Module:
    """A model with random weights and BN statistics (so a lost tensor would change the outputs)."""
    torch.manual_seed(seed)
    model = build_model(arch, heads)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith(("running_mean", "conv_offset_mask.weight", "conv_offset_mask.bias")):
                t.normal_(std=0.01 if "offset" in name else 0.1)
    return model.eval()


@pytest.mark.parametrize("arch", sorted(OFFICIAL_TENSORS))
def test_official_layout_counts_and_names(arch: str) -> None:
    with torch.device("meta"):
        model = build_model(arch, HEADS)
    official = to_official_state_dict(model)
    assert len(official) == OFFICIAL_TENSORS[arch]
    assert all(k.startswith("module.") for k in official)
    for name, shape in KNOWN_TENSORS.get(arch, {}).items():
        assert tuple(official[name].shape) == shape, name


@pytest.mark.parametrize("arch", ["resdcn_18", "dla_34"])
def test_round_trip_is_bit_identical(arch: str, tmp_path: Path) -> None:
    source = _randomised(arch, seed=1)
    path = tmp_path / "model_last.pth"
    torch.save({"epoch": 7, "state_dict": to_official_state_dict(source)}, path)
    target = build_model(arch, HEADS).eval()
    report = load_official_checkpoint(target, path)
    assert report.ok and report.epoch == 7
    assert len(report.loaded) == len(source.state_dict())
    assert report.ignored == (["base.fc.weight", "base.fc.bias"] if arch == "dla_34" else [])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = source(x)[0], target(x)[0]
    for k in HEADS:
        assert torch.equal(expected[k], got[k]), k


def test_bare_state_dict_without_prefix_or_unused_classifier_loads() -> None:
    source = _randomised("dla_34", seed=2)
    bare = {k.removeprefix("module."): v for k, v in to_official_state_dict(source).items()
            if ".fc." not in k and not k.endswith("num_batches_tracked")}  # as an old-PyTorch file
    target = build_model("dla_34", HEADS)
    report = load_official_checkpoint(target, bare)
    assert report.ok and report.epoch is None and not report.ignored
    assert torch.equal(target.neck.ida_up.node_2.conv.weight, source.neck.ida_up.node_2.conv.weight)


def test_other_heads_are_reported_mis_shaped() -> None:
    official = to_official_state_dict(_randomised("resdcn_18"))
    target = build_model("resdcn_18", {"hm": 20, "wh": 2, "reg": 2})
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_checkpoint(target, official)
    message = str(err.value)
    assert "2 mis-shaped" in message and "hm.2.weight: file [80, 64, 1, 1] vs model [20, 64, 1, 1]" in message
    report = load_official_checkpoint(target, official, strict=False)  # everything but the hm output layer
    assert [k for k, _, _ in report.mismatched] == ["hm.2.weight", "hm.2.bias"]
    assert len(report.loaded) == OFFICIAL_TENSORS["resdcn_18"] - 2


def test_a_checkpoint_of_another_architecture_is_refused() -> None:
    with torch.device("meta"):
        official = to_official_state_dict(build_model("resdcn_18", HEADS))
    with pytest.raises(CheckpointMismatchError, match="missing from the file: base.base_layer.0.weight"):
        load_official_checkpoint(build_model("dla_34", HEADS), official)


@pytest.fixture
def legacy_file() -> Path:
    if not LEGACY_FILE.is_file():
        pytest.skip(f"{LEGACY_FILE} not present")
    return LEGACY_FILE


def test_legacy_file_is_read(legacy_file: Path) -> None:
    state, epoch = read_checkpoint(legacy_file)
    assert epoch == 35
    assert len(state) == 66 and not any(k.startswith("module.") for k in state)
    assert tuple(state["features.0.0.weight"].shape) == (32, 3, 3, 3)


def test_legacy_file_does_not_fit_resdcn18(legacy_file: Path) -> None:
    model = build_model("resdcn_18", HEADS)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_checkpoint(model, legacy_file)
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert "missing from the file: conv1.weight [64, 3, 7, 7]" in message
    assert "unexpected in the file: features.0.0.weight [32, 3, 3, 3]" in message
    assert "... and" in message and len(message) < 4000  # listings are truncated


# ------------------------------------------------------------------------------------- ImageNet backbones
def _imagenet_file(backbone: nn.Module, classifier: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A synthetic ImageNet checkpoint: the backbone's tensors (as an old file, without
    num_batches_tracked) plus a classifier."""
    torch.manual_seed(3)
    state = {k: torch.randn_like(v.float()) for k, v in backbone.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    return {**state, **classifier}


def test_pretrained_torchvision_resnet18() -> None:
    file = _imagenet_file(ResNet(18), {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)})
    model = build_model("resdcn_18", HEADS)
    report = load_pretrained_backbone(model, {"module." + k: v for k, v in file.items()})
    assert report.ignored == ["fc.weight", "fc.bias"]
    assert not report.missing and not report.unexpected and not report.mismatched
    assert torch.equal(model.backbone.layer4[1].conv2.weight, file["layer4.1.conv2.weight"])


def test_pretrained_dla34_original_and_timm_style() -> None:
    fc = {"fc.weight": torch.randn(1000, 512, 1, 1), "fc.bias": torch.randn(1000)}
    original = _imagenet_file(DLA(34), fc)
    model = build_model("dla_34", HEADS)
    report = load_pretrained_backbone(model, original)
    assert report.ok and report.ignored == ["fc.weight", "fc.bias"]
    assert torch.equal(model.backbone.level5.root.conv.weight, original["level5.root.conv.weight"])
    # timm drops the never-used projections of the two-level trees: reported missing, not an error
    timm = {k: v for k, v in original.items() if not k.startswith(("level3.project", "level4.project"))}
    report = load_pretrained_backbone(build_model("dla_34", HEADS), {"state_dict": timm})
    assert sorted(k for k, _ in report.missing) == sorted(
        k for k in original if k.startswith(("level3.project", "level4.project")))


def test_pretrained_with_nothing_matching_is_an_error() -> None:
    with pytest.raises(CheckpointMismatchError, match="no tensor"):
        load_pretrained_backbone(build_model("res_18", HEADS), {"features.0.weight": torch.zeros(3)})
