"""Corner pooling: both formulations against a naive loop, gradients, the CornerNet branch, ONNX export."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from centernet.models.layers.corner_pool import CornerPool, CornerPoolModule, corner_pool

DIRECTIONS = ("top", "bottom", "left", "right")
# Official names and shapes of one corner branch (the original's ``pool`` class) for dim 256
ORIGINAL_BRANCH = {
    "p1_conv1.conv.weight": (128, 256, 3, 3), "p1_conv1.bn.weight": (128,), "p1_conv1.bn.running_var": (128,),
    "p2_conv1.conv.weight": (128, 256, 3, 3), "p2_conv1.bn.bias": (128,),
    "p_conv1.weight": (256, 128, 3, 3), "p_bn1.weight": (256,), "p_bn1.running_mean": (256,),
    "conv1.weight": (256, 256, 1, 1), "bn1.bias": (256,),
    "conv2.conv.weight": (256, 256, 3, 3), "conv2.bn.weight": (256,), "conv2.bn.num_batches_tracked": (),
}


def naive_pool(x: torch.Tensor, direction: str) -> torch.Tensor:
    """The definition, one output pixel at a time."""
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for y in range(h):
        for xx in range(w):
            if direction == "top":
                window = x[:, :, y:, xx]
            elif direction == "bottom":
                window = x[:, :, : y + 1, xx]
            elif direction == "left":
                window = x[:, :, y, xx:]
            else:
                window = x[:, :, y, : xx + 1]
            out[:, :, y, xx] = window.max(dim=2).values
    return out


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", ["auto", "cummax", "scan", "doubling"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 1, 9), (1, 1, 16, 1), (1, 2, 13, 11)])
def test_pool_matches_the_definition(direction: str, method: str, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(hash((direction, shape)) % 1000))
    expected = naive_pool(x, direction)
    assert torch.equal(corner_pool(x, direction, method), expected)
    assert torch.equal(CornerPool(direction, method)(x), expected)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_doubling_with_a_larger_span_is_unchanged(direction: str) -> None:
    # an exported graph runs the rounds of EXPORT_SPAN on small maps: the extra rounds must be no-ops
    x = torch.randn(1, 2, 6, 5)
    assert torch.equal(corner_pool(x, direction, "doubling", span=4096), naive_pool(x, direction))


def test_top_pool_example() -> None:
    column = torch.tensor([1.0, 3.0, 0.0, 2.0, -1.0]).reshape(1, 1, 5, 1)
    assert corner_pool(column, "top").flatten().tolist() == [3.0, 3.0, 2.0, 2.0, -1.0]
    assert corner_pool(column, "bottom").flatten().tolist() == [1.0, 3.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", ["cummax", "scan", "doubling"])
def test_gradient_matches_the_naive_pool(direction: str, method: str) -> None:
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)  # continuous values: no ties
    weight = torch.randn_like(x)
    leaf_a, leaf_b = x.clone().requires_grad_(), x.clone().requires_grad_()
    (corner_pool(leaf_a, direction, method) * weight).sum().backward()
    (naive_pool(leaf_b, direction) * weight).sum().backward()
    torch.testing.assert_close(leaf_a.grad, leaf_b.grad)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", ["cummax", "scan"])
def test_gradcheck(direction: str, method: str) -> None:
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: corner_pool(t, direction, method), (x,))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_scan_gradient_with_ties_goes_to_one_of_them(direction: str) -> None:
    # ReLU'd features tie at 0 (and may tie at a max): each output's gradient lands on exactly one input of
    # its window that holds the max (so the total is conserved, and only pixels equal to their own pooled
    # value, i.e. maxima of some window, receive any)
    x = torch.tensor([[0.0, 2.0, 2.0, 0.0], [1.0, 0.0, 1.0, 3.0]]).reshape(1, 1, 2, 4)
    if direction in ("top", "bottom"):
        x = x.transpose(2, 3).contiguous()
    leaf = x.clone().requires_grad_()
    corner_pool(leaf, direction, "scan").sum().backward()
    assert leaf.grad.sum().item() == x.numel()
    assert (leaf.grad[x != naive_pool(x, direction)] == 0).all()


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="direction"):
        corner_pool(torch.zeros(1, 1, 2, 2), "up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        corner_pool(torch.zeros(1, 1, 2, 2), "top", "loop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="B, C, H, W"):
        corner_pool(torch.zeros(2, 2), "top")
    with pytest.raises(ValueError, match="two directions"):
        CornerPoolModule(8, ("top",))  # type: ignore[arg-type]


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so a mis-wired layer changes the output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif t.is_floating_point():
                t.normal_(std=0.2)
    return module.eval()


def test_branch_names_are_the_originals() -> None:
    with torch.device("meta"):
        branch = CornerPoolModule(256)
    shapes = {k: tuple(v.shape) for k, v in branch.state_dict().items()}
    for name, shape in ORIGINAL_BRANCH.items():
        assert shapes[name] == shape, name
    roots = {k.split(".")[0] for k in shapes}
    assert roots == {"p1_conv1", "p2_conv1", "p_conv1", "p_bn1", "conv1", "bn1", "conv2"}
    assert len(shapes) == 30  # 3 conv-BN-ReLU x 6 + 2 convs + 2 BNs x 5


@pytest.mark.parametrize("directions", [("top", "left"), ("bottom", "right")])
def test_branch_forward_is_the_documented_composition(directions: tuple[str, str]) -> None:
    branch = _randomise(CornerPoolModule(6, directions, pool_channels=4))  # type: ignore[arg-type]
    x = torch.randn(2, 6, 7, 5)

    def cbr(block, t):  # conv-BN-ReLU by hand
        return F.relu(block.bn(block.conv(t)))

    p1 = naive_pool(cbr(branch.p1_conv1, x), directions[0])
    p2 = naive_pool(cbr(branch.p2_conv1, x), directions[1])
    merged = F.relu(branch.p_bn1(branch.p_conv1(p1 + p2)) + branch.bn1(branch.conv1(x)))
    with torch.no_grad():
        torch.testing.assert_close(branch(x), cbr(branch.conv2, merged))
        assert branch(x).shape == x.shape


def test_branch_exports_to_onnx_and_matches_eager(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = nn.Sequential(_randomise(CornerPoolModule(6, ("top", "left"), pool_channels=4)),
                          _randomise(CornerPoolModule(6, ("bottom", "right"), pool_channels=4), seed=1)).eval()
    path = tmp_path / "corner.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model, (torch.randn(1, 6, 8, 8),), str(path), input_names=["x"], output_names=["y"],
                          opset_version=17, dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {node.domain for node in proto.graph.node} <= {"", "ai.onnx"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 6, 8, 8), (2, 6, 21, 37), (1, 6, 3, 2)]:  # the traced size, larger and smaller ones
        x = torch.randn(shape)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
