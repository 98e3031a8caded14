"""The sampling half of DCNv2 as gathers over channels-last rows, with a hand-written backward.

Layout. The input [B, C, H, W] is copied once into a zero-padded channels-last table
[B*Hp*Wp*G, C/G] (``Hp = H + 2 * PAD``; row = (image, padded pixel, deformable group)). Sample ``n`` (output
position, group, tap, in that order) reads the 2x2 block of rows whose top-left is ``key[n]``, weighted by
bilinear weight x mask (``corner_weights``, [N, 4]). A top-left clamped into [-PAD, H] x [-PAD, W] keeps the
four corners inside the table, and a sample that had to be clamped lies a whole pixel outside the image, so
every corner it reads is padding: out-of-image corners contribute zero, to values and to gradients, as in
DCNv2.

Eager mode runs :class:`DeformConv2dFunction`: ``embedding_bag`` gathers the four corners of every sample, and
one matmul applies all k x k taps, a few MB of columns at a time. Its backward is written by hand and also
goes chunk by chunk (the columns are recomputed, never kept):
- weight / bias: ``grad_out^T @ columns`` and a sum;
- input: the column gradient (``grad_out @ weight``) is scattered back to the rows: the chunk's samples are
  sorted by top-left row, each row's samples summed as one bag per corner (``embedding_bag``), and the four
  corner sums added at their row offsets;
- offsets / mask: the four corner dot products <column gradient, corner row> (a sampled dense-dense matmul)
  are the gradients of the corner weights, taken back through the bilinear form.
While tracing for ONNX, :func:`gather_columns` builds the same columns with standard ops (Gather, then a
batched MatMul for the weighted sum) over the same table.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

PAD = 2  # zero border of the table: enough for the 2x2 block of any clamped top-left corner
CHUNK_BYTES = 1 << 21  # column (gradient) bytes worked through at a time: they stay in cache
MIN_CHUNK = 512  # ... but at least this many output positions, for an efficient matmul
RADIX_KEYS = 32768  # from this many int64 keys torch's CPU sort is a radix sort (GRAIN_SIZE)
RADIX_CHUNK_BYTES = 10 << 20  # ... worth chunks of up to this many column bytes (64 channels: 8.4 MB)


class SamplingPlan(NamedTuple):
    """Where the N = B * Ho * Wo * G * k*k samples read, in table rows; flat [N] tensors."""

    key: Tensor  # long: table row of each sample's top-left corner
    frac_y: Tensor  # fractional parts of the sampling position (they carry the offset gradient)
    frac_x: Tensor
    mask: Tensor  # modulation, already in (0, 1)
    col_step: int  # table rows from a pixel to its right neighbour (= G)
    row_step: int | Tensor  # ... and to the pixel below (= Wp * G; a traced scalar while exporting)


def padded_rows(x: Tensor, groups: int) -> Tensor:
    """x [B, C, H, W] -> zero-padded channels-last table [B * Hp * Wp * G, C/G]."""
    b, c, h, w = x.shape
    if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
        return F.pad(x, (PAD, PAD, PAD, PAD)).permute(0, 2, 3, 1).reshape(-1, c // groups)
    table = x.new_empty(b, h + 2 * PAD, w + 2 * PAD, c)  # one copy, whatever the memory format of x
    table[:, :PAD].zero_()
    table[:, PAD + h:].zero_()
    table[:, PAD:PAD + h, :PAD].zero_()
    table[:, PAD:PAD + h, PAD + w:].zero_()
    table[:, PAD:PAD + h, PAD:PAD + w] = x.permute(0, 2, 3, 1)
    return table.view(-1, c // groups)


def sampling_plan(
    offset: Tensor, mask: Tensor, size: tuple, kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], groups: int,
) -> SamplingPlan:
    """``offset`` [B, 2*G*k*k, Ho, Wo] ((dy, dx) per tap), ``mask`` [B, G*k*k, Ho, Wo], input ``size`` (H, W).

    Sample order: output position, group, tap. The element-wise work runs on [B, Ho, Wo, G*k*k, 2] (y, x)
    tensors, a handful of passes (read as views where the offsets and mask are channels-last)."""
    b, _, ho, wo = offset.shape
    h, w = size
    kh, kw = kernel
    taps = groups * kh * kw
    like = dict(device=offset.device, dtype=offset.dtype)
    tap_y = (torch.arange(kh, **like) * dilation[0]).repeat_interleave(kw).repeat(groups)  # tap t = i * kw + j
    tap_x = (torch.arange(kw, **like) * dilation[1]).repeat(kh * groups)
    grid_y = (torch.arange(ho, **like) * stride[0] - padding[0]).view(-1, 1, 1) + tap_y  # [Ho, 1, G*kk]
    grid_x = (torch.arange(wo, **like) * stride[1] - padding[1]).view(-1, 1) + tap_x  # [Wo, G*kk]
    grid = torch.stack(torch.broadcast_tensors(grid_y, grid_x), -1)  # [Ho, Wo, G*kk, 2] the regular taps
    pos = offset.permute(0, 2, 3, 1).unflatten(-1, (taps, 2)) + grid  # [B, Ho, Wo, G*kk, 2] in input pixels
    top_left = pos.detach().floor()
    frac = (pos - top_left).reshape(-1, 2)  # [N, 2] (fy, fx): they carry the offset gradient
    # a NaN position (a diverged network) reads padding instead of an undefined row; its value stays NaN
    top_left = torch.nan_to_num(top_left, nan=-PAD)
    # clamped so that the 2x2 block stays in the table (exact in floating point: < Hp * Wp)
    wp = w + 2 * PAD
    corner = torch.add(top_left[..., 1].clamp(-PAD, w), top_left[..., 0].clamp(-PAD, h), alpha=wp)  # y * Wp + x
    image = torch.arange(b, device=offset.device).view(-1, 1) * ((h + 2 * PAD) * wp) + (PAD * wp + PAD)
    key = corner.long().reshape(b, -1) + image  # [B, Ho*Wo*G*kk] padded rows
    if groups > 1:
        key = key.view(b, -1, groups, kh * kw) * groups + torch.arange(groups, device=offset.device).view(-1, 1)
    m = mask.permute(0, 2, 3, 1).reshape(-1)
    return SamplingPlan(key.reshape(-1), frac[:, 0], frac[:, 1], m, groups, wp * groups)


def corner_rows(plan: SamplingPlan) -> Tensor:
    """[N, 4] table rows of the corners: top-left, top-right, bottom-left, bottom-right."""
    steps = torch.stack([torch.as_tensor(s) for s in _steps(plan.col_step, plan.row_step)]).to(plan.key)
    return plan.key.unsqueeze(1) + steps


def _steps(col_step, row_step) -> list:
    return [0, col_step, row_step, row_step + col_step]


def corner_weights(frac_y: Tensor, frac_x: Tensor, mask: Tensor) -> Tensor:
    """[N, 4] bilinear weight x mask of the corners, in :func:`corner_rows` order."""
    bottom = mask * frac_y  # the two rows' weights, mask folded in
    top = mask - bottom
    top_right, bottom_right = top * frac_x, bottom * frac_x
    return torch.stack([top - top_right, top_right, bottom - bottom_right, bottom_right], 1)


def gather_columns(table: Tensor, plan: SamplingPlan) -> Tensor:
    """Columns [N, C/G] with standard ops only (the ONNX graph): one Gather of the four corners."""
    corners = table[corner_rows(plan)]  # [N, 4, C/G]
    weights = corner_weights(plan.frac_y, plan.frac_x, plan.mask).unsqueeze(1)  # [N, 1, 4]
    return (weights @ corners).squeeze(1)  # a batched MatMul: onnxruntime's fastest weighted sum here


def _corner_dots(rows: Tensor, grad: Tensor, table: Tensor) -> Tensor:
    """[n, 4]: <grad[i], table[rows[i, j]]>, a sampled matmul (no gathered copy of the corners)."""
    n = rows.shape[0]
    crow = torch.arange(0, 4 * n + 1, 4, device=rows.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(crow, rows.reshape(-1), grad.new_zeros(4 * n), (n, table.shape[0]),
                                          check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, grad, table.t(), beta=0.0).values().view(n, 4)


def _scatter_corners(out: Tensor, key: Tensor, weight: Tensor, grad: Tensor, steps: list) -> None:
    """out[key[i] + steps[j]] += weight[i, j] * grad[i]: samples sorted by top-left row, one bag per row."""
    n = key.shape[0]
    low, high = int(key.min()), int(key.max())
    if high - low < 2 * n:  # usual case: the chunk's samples land on a compact band of rows
        span = high - low + 1
        order = torch.sort(key - low).indices
        counts = torch.bincount(key - low, minlength=span)
        rows = None
    else:  # far-flung offsets: bags only for the rows hit
        ordered, order = torch.sort(key)
        rows, counts = torch.unique_consecutive(ordered, return_counts=True)
        span = rows.shape[0]
    starts = counts.cumsum(0) - counts
    weights = weight.t()[:, order]  # [4, n]: each corner's weights in row order, one gather
    for j, step in enumerate(steps):
        bags = F.embedding_bag(order, grad, starts, per_sample_weights=weights[j], mode="sum")  # [span, C]
        if rows is None:
            out[low + step:low + step + span] += bags
        else:
            out.index_add_(0, rows + step, bags)


class Geometry(NamedTuple):
    """The static arguments of the convolution."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


class DeformConv2dFunction(torch.autograd.Function):
    """Eager DCNv2 after the offset conv: x [B, C, H, W], offset, mask, wmat [O, G*k*k*C/G] (columns' order),
    bias -> [B, O, Ho, Wo] in channels-last memory. Only the table, the corner rows and their weights are kept
    for the backward, which recomputes the columns chunk by chunk (no [B*P, k*k*C] tensor ever exists)."""

    @staticmethod
    def forward(ctx, x: Tensor, offset: Tensor, mask: Tensor, wmat: Tensor, bias: Tensor | None,
                geometry: Geometry) -> Tensor:
        b, c, h, w = x.shape
        ho, wo = offset.shape[-2:]
        plan = sampling_plan(offset, mask, (h, w), *geometry)
        table = padded_rows(x.detach(), geometry.groups)  # [B*Hp*Wp*G, C/G]
        rows = corner_rows(plan)  # [N, 4]
        weight = corner_weights(plan.frac_y, plan.frac_x, plan.mask).to(table.dtype)  # positions may be finer
        wmat = wmat.detach()
        out = table.new_empty(b * ho * wo, wmat.shape[0])
        for s, e, columns in _chunks(table, rows, weight, wmat.shape[1]):
            if bias is None:
                torch.mm(columns, wmat.t(), out=out[s:e])
            else:
                torch.addmm(bias.detach(), columns, wmat.t(), out=out[s:e])
        ctx.save_for_backward(table, rows, weight, plan.frac_y, plan.frac_x, plan.mask, wmat)
        ctx.shape, ctx.has_bias = (b, c, h, w, ho, wo), bias is not None
        ctx.steps = _steps(plan.col_step, plan.row_step)
        return out.view(b, ho, wo, -1).permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        table, rows, weight, frac_y, frac_x, mask, wmat = ctx.saved_tensors
        need_x, need_offset, need_mask, need_w, need_b = ctx.needs_input_grad[:5]
        b, c, h, w, ho, wo = ctx.shape
        low = table.dtype  # bf16 / fp16 under autocast: the gradients are summed in fp32
        compute = torch.promote_types(low, torch.float32)
        table, weight, wmat = table.to(compute), weight.to(compute), wmat.to(compute)
        grad_out = grad_output.to(compute).permute(0, 2, 3, 1).reshape(b * ho * wo, -1)  # [B*P, O]
        per = wmat.shape[1] // table.shape[1]  # samples per output position
        g_w = torch.zeros_like(wmat) if need_w else None
        g_table = torch.zeros_like(table) if need_x else None
        dots = weight.new_empty(weight.shape) if need_offset or need_mask else None  # [N, 4]
        for s, e, columns in _chunks(table, rows, weight, wmat.shape[1], need_w):
            go = grad_out[s:e]
            if need_w:
                g_w.addmm_(go.t(), columns)
            if dots is None and g_table is None:
                continue
            grad_cols = (go @ wmat).view(-1, table.shape[1])  # [n, C/G]
            ns, ne = s * per, e * per
            if dots is not None:
                dots[ns:ne] = _corner_dots(rows[ns:ne], grad_cols, table)
            if g_table is not None:
                _scatter_corners(g_table, rows[ns:ne, 0], weight[ns:ne], grad_cols, ctx.steps)
        g_x = g_offset = g_mask = None
        if need_x:
            g_x = g_table.view(b, h + 2 * PAD, w + 2 * PAD, c)[:, PAD:PAD + h, PAD:PAD + w].permute(0, 3, 1, 2).to(low)
        if dots is not None:  # chain rule through corner_weights
            d_tl, d_tr, d_bl, d_br = dots.unbind(1)  # d loss / d corner weight
            d_top = torch.lerp(d_tl, d_tr, frac_x)  # d loss / d top row weight (m (1 - fy))
            d_bottom = torch.lerp(d_bl, d_br, frac_x)
            if need_offset:
                g_dy = mask * (d_bottom - d_top)
                g_dx = mask * torch.lerp(d_tr - d_tl, d_br - d_bl, frac_y)
                g_offset = torch.stack([g_dy, g_dx], 1).view(b, ho, wo, -1).permute(0, 3, 1, 2)  # (dy, dx) per tap
            if need_mask:
                g_mask = torch.lerp(d_top, d_bottom, frac_y).view(b, ho, wo, -1).permute(0, 3, 1, 2)
        g_b = grad_out.sum(0).to(low) if need_b and ctx.has_bias else None
        return g_x, g_offset, g_mask, None if g_w is None else g_w.to(low), g_b, None


def _chunks(table: Tensor, rows: Tensor, weight: Tensor, width: int, columns: bool = True):
    """(start, end, columns [end - start, width]) over the output positions, a few MB of columns at a time."""
    per = width // table.shape[1]
    positions = rows.shape[0] // per
    step = _chunk(width, table)
    for s in range(0, positions, step):
        e = min(positions, s + step)
        cols = None
        if columns:
            cols = F.embedding_bag(rows[s * per:e * per], table, per_sample_weights=weight[s * per:e * per],
                                   mode="sum").view(e - s, width)
        yield s, e, cols


def _chunk(width: int, table: Tensor) -> int:
    """Output positions per chunk: about CHUNK_BYTES of columns, or up to RADIX_CHUNK_BYTES where that lets the
    backward sort RADIX_KEYS samples at once (layers of up to 64 channels a group: torch's CPU sort is twice as
    fast per key from there; wider chunks cost more in cache misses than they save, measured here)."""
    row_bytes = width * table.element_size()
    step = max(MIN_CHUNK, CHUNK_BYTES // row_bytes)
    radix = -(-RADIX_KEYS * table.shape[1] // width)  # positions holding RADIX_KEYS samples
    return radix if step < radix and radix * row_bytes <= RADIX_CHUNK_BYTES else step
