import pytest
import torch
import torch.nn.functional as F

from centernet.models.layers import deform_sampling
from centernet.models.layers.deform_conv import (
    ModulatedDeformConv2d, modulated_deform_conv2d, modulated_deform_conv2d_reference,
)

GEOMETRIES = [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 4)]  # stride, padding, dilation, deformable groups


def random_case(stride, padding, dilation, groups, size=(9, 11), channels=8, out=5, spread=3.0, dtype=torch.float32):
    """x, offset, mask, weight, bias with many samples outside the image (offsets ~ spread pixels)."""
    h, w = size
    ho = (h + 2 * padding - dilation * 2 - 1) // stride + 1
    wo = (w + 2 * padding - dilation * 2 - 1) // stride + 1
    return (torch.randn(2, channels, h, w, dtype=dtype), torch.randn(2, 2 * groups * 9, ho, wo, dtype=dtype) * spread,
            torch.rand(2, groups * 9, ho, wo, dtype=dtype), torch.randn(out, channels, 3, 3, dtype=dtype),
            torch.randn(out, dtype=dtype))


def values_and_grads(fn, tensors, *args):
    leaves = [t.clone().requires_grad_() for t in tensors]
    out = fn(*leaves, *args)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)  # a non-uniform output gradient
    (out * probe).sum().backward()
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("stride,padding,dilation,groups", GEOMETRIES)
def test_zero_offsets_unit_mask_is_plain_conv(stride, padding, dilation, groups):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 8, 9, 11), torch.randn(5, 8, 3, 3), torch.randn(5)
    ref = F.conv2d(x, w, b, stride, padding, dilation)
    ho, wo = ref.shape[-2:]
    out = modulated_deform_conv2d(x, torch.zeros(2, 2 * groups * 9, ho, wo), torch.ones(2, groups * 9, ho, wo),
                                  w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_integer_offsets_equal_shifted_conv():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 4, 9, 11), torch.randn(3, 4, 3, 3), torch.randn(3)
    off = torch.zeros(2, 18, 9, 11)
    off[:, 0::2], off[:, 1::2] = 1, -1  # every tap samples one row down, one column left
    out = modulated_deform_conv2d(x, off, torch.ones(2, 9, 9, 11), w, b, 1, 1, 1, 1)
    # tap (i, j) at (y, x) reads x[y + i, x + j - 2]: a valid conv of x padded 2 left and 2 below
    ref = F.conv2d(F.pad(x, (2, 0, 0, 2)), w, b)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_fractional_offset_is_bilinear_and_mask_scales():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    w = torch.ones(1, 1, 1, 1)
    off = torch.zeros(1, 2, 4, 4)
    off[:, 1] = 0.5  # half a pixel right: average of the two neighbours; zero beyond the border
    off[0, 0, 0, 0] = -0.25  # a quarter pixel above the image: three quarters of row 0, a quarter of zeros
    out = modulated_deform_conv2d(x, off, torch.full((1, 1, 4, 4), 0.5), w, None, 1, 0, 1, 1)
    assert out[0, 0, 1, 1].item() == pytest.approx(0.5 * (5 + 6) / 2)
    assert out[0, 0, 1, 3].item() == pytest.approx(0.5 * 7 / 2)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.5 * 0.75 * (0 + 1) / 2)


def test_module_starts_as_half_masked_conv_and_has_gradients():
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(4, 6, 3, padding=1)
    assert [n for n, _ in layer.named_parameters()] == [
        "weight", "bias", "conv_offset_mask.weight", "conv_offset_mask.bias"]
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    out = layer(x)
    torch.testing.assert_close(out, 0.5 * F.conv2d(x, layer.weight, None, 1, 1) + layer.bias.view(1, -1, 1, 1))
    out.square().sum().backward()
    assert x.grad is not None and layer.conv_offset_mask.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("stride,padding,dilation,groups", GEOMETRIES)
def test_values_and_all_gradients_match_the_grid_sample_reference(stride, padding, dilation, groups):
    torch.manual_seed(1)
    case = random_case(stride, padding, dilation, groups)
    args = (stride, padding, dilation, groups)
    out, grads = values_and_grads(modulated_deform_conv2d, case, *args)
    ref, ref_grads = values_and_grads(modulated_deform_conv2d_reference, case, *args)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    for name, g, r in zip(("input", "offset", "mask", "weight", "bias"), grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-3, rtol=1e-3, msg=lambda m: f"{name}: {m}")
    with torch.no_grad():  # the inference path (no tensors kept for a backward) gives the same values
        torch.testing.assert_close(modulated_deform_conv2d(*case, *args), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("groups,fast", [(1, False), (2, True)])
def test_gradcheck_float64(groups, fast):
    torch.manual_seed(2)
    x, off, mask, w, b = random_case(1, 1, 1, groups, size=(3, 4), channels=2 * groups, out=2, spread=1.5,
                                     dtype=torch.float64)
    leaves = [t[:1].detach().requires_grad_() for t in (x, off, mask)] + [w.requires_grad_(), b.requires_grad_()]
    assert torch.autograd.gradcheck(lambda *t: modulated_deform_conv2d(*t, 1, 1, 1, groups), leaves, fast_mode=fast)


@pytest.mark.parametrize("spread", [0.5, 40.0])  # a compact band of rows per chunk / rows all over the table
def test_chunked_backward_matches_reference(monkeypatch, spread):
    """Chunks of 8 output positions: the backward's chunking and both scatter paths."""
    monkeypatch.setattr(deform_sampling, "CHUNK_BYTES", 1)
    monkeypatch.setattr(deform_sampling, "MIN_CHUNK", 8)
    torch.manual_seed(3)
    case = random_case(1, 1, 1, 1, size=(6, 7), channels=16, out=4, spread=spread)
    out, grads = values_and_grads(modulated_deform_conv2d, case, 1, 1, 1, 1)
    ref, ref_grads = values_and_grads(modulated_deform_conv2d_reference, case, 1, 1, 1, 1)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-3, rtol=1e-3)


def test_output_is_channels_last_and_input_layout_does_not_matter():
    torch.manual_seed(4)
    layer = ModulatedDeformConv2d(8, 6, 3, padding=1)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.3)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        out = layer(x)
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), out)


class HeadMaps(torch.nn.Module):
    """A detector's last-stack maps as a tuple (what torch.onnx.export takes)."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x):
        out = self.model(x)[-1]
        return tuple(out[n] for n in self.names)


def test_onnx_export_gathers_rows_and_matches_eager(tmp_path):
    """resdcn_18_tiny exported (opset 17): the DCNs sample with Gather, no GridSample, and onnxruntime gives
    the eager outputs."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from centernet.models import build_model

    torch.manual_seed(0)
    names = ["hm", "wh", "reg"]
    model = build_model("resdcn_18_tiny", {"hm": 3, "wh": 2, "reg": 2})
    with torch.no_grad():  # non-trivial offsets and masks
        for name, p in model.named_parameters():
            if "conv_offset_mask" in name:
                p.normal_(0, 0.05)
    maps = HeadMaps(model, names).eval()  # (export restores the wrapper's mode onto the model)
    x = torch.randn(2, 3, 96, 128)
    path = tmp_path / "dcn.onnx"
    with torch.no_grad():
        torch.onnx.export(maps, (x,), str(path), input_names=["input"], output_names=names, opset_version=17,
                          dynamo=False)
        ref = maps(x)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "GridSample" not in ops and "Gather" in ops
    outputs = ort.InferenceSession(str(path)).run(names, {"input": x.numpy()})
    for got, want in zip(outputs, ref):
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)


def test_nan_offsets_read_padding_instead_of_crashing():
    """A diverged network's NaN offsets must not index outside the table (it crashed the gather)."""
    from centernet.models.layers.deform_conv import modulated_deform_conv2d

    x = torch.randn(1, 4, 6, 6)
    offset = torch.zeros(1, 18, 6, 6)
    offset[0, :, 2, 3] = float("nan")
    mask = torch.full((1, 9, 6, 6), 0.5)
    weight = torch.randn(3, 4, 3, 3)
    out = modulated_deform_conv2d(x, offset, mask, weight, None, 1, 1, 1, 1)
    assert out.shape == (1, 3, 6, 6)
    assert torch.isnan(out[0, :, 2, 3]).all() and torch.isfinite(out[0, :, 0, 0]).all()


def test_autocast_bf16_runs_in_bf16_places_samples_in_fp32_and_has_fp32_gradients():
    """Under autocast (AMP on CUDA, --precision) the layer computes in the autocast dtype; the offsets keep
    fp32 (a bf16 position is off by up to half a pixel at 128) and gradients reach fp32 parameters."""
    torch.manual_seed(4)
    layer = ModulatedDeformConv2d(8, 6)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.5)
    x = torch.randn(2, 8, 12, 140)  # wide: sampled x positions above 128
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x)
    low.float().square().sum().backward()
    with torch.no_grad():
        full = layer(x)
    assert low.dtype == torch.bfloat16
    assert (low.float() - full).abs().max() < 0.05 * full.abs().max()  # bf16 rounding, not misplaced samples
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert layer.conv_offset_mask.weight.grad.abs().sum() > 0
