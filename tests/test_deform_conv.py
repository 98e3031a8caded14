import pytest
import torch
import torch.nn.functional as F

from centernet.models.layers.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 4)])
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
    out = modulated_deform_conv2d(x, off, torch.full((1, 1, 4, 4), 0.5), w, None, 1, 0, 1, 1)
    assert out[0, 0, 1, 1].item() == pytest.approx(0.5 * (5 + 6) / 2)
    assert out[0, 0, 1, 3].item() == pytest.approx(0.5 * 7 / 2)


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


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 4)])
def test_all_samplers_agree_in_values_and_gradients(stride, padding, dilation, groups):
    torch.manual_seed(1)
    x = torch.randn(2, 8, 9, 11)
    w = torch.randn(5, 8, 3, 3)
    ho = (9 + 2 * padding - dilation * 2 - 1) // stride + 1
    wo = (11 + 2 * padding - dilation * 2 - 1) // stride + 1
    off = torch.randn(2, 2 * groups * 9, ho, wo) * 3  # many samples fall outside the image
    mask = torch.rand(2, groups * 9, ho, wo)
    grads = []
    for sampler in ("bags", "grid", "mosaic"):
        leaves = [t.clone().requires_grad_() for t in (x, off, mask, w)]
        out = modulated_deform_conv2d(*leaves[:3], leaves[3], None, stride, padding, dilation, groups, sampler=sampler)
        out.square().sum().backward()
        grads.append((out.detach(), [t.grad for t in leaves]))
    (out_b, g_b), *others = grads
    for out_o, g_o in others:
        torch.testing.assert_close(out_o, out_b, atol=1e-4, rtol=1e-4)
        for a, b in zip(g_o, g_b):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_bags_sampler_runs_under_autocast():
    layer = ModulatedDeformConv2d(64, 8)  # 64 channels per group: the bags sampler in eager mode
    with torch.no_grad():
        layer.conv_offset_mask.weight.normal_(0, 0.05)
        x = torch.randn(1, 64, 6, 7)
        ref = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the bag weights come out bf16, the rows fp32
            out = layer(x)
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
