"""One-call check of the CUDA path: AMP training of every task, DCN and corner pooling against CPU references,
ONNX export from CUDA weights, evaluation on CUDA and forward timings. Prints a table; exit code 1 when a
check fails (2 when CUDA is absent and --device cpu was not given).

    python benchmarks/gpu_check.py                       # the whole check on cuda (sized for < 5 min on one GPU)
    python benchmarks/gpu_check.py --quick --json gpu_check.json
    python benchmarks/gpu_check.py --device cpu --quick  # the same checks on the CPU, small: tests the script

Rows (a failure in one row never stops the others; the row says FAIL with the exception's first line):

* ``env``: the device, torch / CUDA / cuDNN versions, one matmul against the CPU.
* ``train/<task>`` for ctdet, multi_pose, ddd, cornernet: the real :class:`~centernet.engine.trainer.Trainer`
  (``fit``: AMP on CUDA, the GradScaler, checkpoints) on the project's synthetic data without augmentation, a few
  epochs of a few steps over the same images; ok when every epoch's loss is finite and not every step was
  skipped (by the GradScaler or as non-finite); whether the loss falls is shown.
  Paper architectures at small sizes, or the small CPU architectures with ``--quick`` / ``--device cpu``.
* ``dcn/fp32``, ``dcn/fp16``, ``dcn/bf16``: :class:`ModulatedDeformConv2d` forward and backward on the device
  (plain, then under autocast) against the ``grid_sample`` reference in float64 on the CPU, offsets of a few
  pixels; errors are max |a - ref| / max |ref| per tensor (output, then the worst gradient). fp32 runs with TF32
  off (a TF32 offset conv moves the sampling positions by more than the fp32 tolerance).
* ``corner_pool``: the four directions on the device against the CPU (the eager path and the ONNX "doubling"
  formulation), values and gradients, fp32 and fp16 inputs; exact equality expected.
* ``onnx/<task>``: a small model with non-trivial DCN offsets on the device, copied to the CPU, exported, run in
  onnxruntime and compared with the device's fp32 output (skipped when onnx / onnxruntime are missing).
* ``eval/*``: the oracle (ground truth through the decode on the device) on ../shared/data/coco_mini val for
  ctdet and cornernet, and a small untrained model through the evaluator in reduced precision (skipped when
  the data is absent).
* ``time/<arch>``: res_18, resdcn_18, dla_34, hourglass forward at 512x512 batch 1, fp32 (cuDNN's default TF32)
  and AMP (fp16 autocast), the median of 20 after 5 warm-up runs, synchronised. On a CPU: 64x64 (Hourglass
  128x128), bf16 autocast (where the project refuses it, no AMX, only to run the path, and not the Hourglass).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))  # this tree's package, as the other benchmarks (PYTHONPATH=src)

TASKS = ("ctdet", "multi_pose", "ddd", "cornernet")
TIMED_ARCHS = ("res_18", "resdcn_18", "dla_34", "hourglass")


class Skip(Exception):
    """A check that cannot run here (missing package or data): a ``skip`` row with the reason."""


@dataclass
class Row:
    check: str
    result: str  # ok, FAIL, skip
    numbers: str
    seconds: float


@dataclass
class Profile:
    """Sizes of one run: the paper architectures on CUDA, the small ones with --quick or on the CPU."""

    device: str
    quick: bool
    train: dict[str, dict[str, Any]]  # task -> arch, size (w, h), batch, epochs, steps per epoch
    dcn: tuple[int, int, int]  # channels, height, width (batch 2)
    pool: tuple[int, int, int, int]
    onnx_size: int
    eval_size: int
    eval_images: int
    time_size: int
    time_runs: int
    time_warmup: int


def make_profile(device: str, quick: bool) -> Profile:
    cuda = device.startswith("cuda")
    small = {"ctdet": "resdcn_18_tiny", "multi_pose": "dla_tiny", "ddd": "resdcn_18_tiny",
             "cornernet": "hourglass_tiny"}
    paper = {"ctdet": "resdcn_18", "multi_pose": "dla_34", "ddd": "dla_34", "cornernet": "cornernet"}
    if cuda and not quick:
        archs, side, batch, epochs, steps = paper, 256, 8, 3, 2
    elif cuda:
        archs, side, batch, epochs, steps = small, 128, 4, 3, 2
    elif not quick:
        archs, side, batch, epochs, steps = paper, 128, 2, 2, 1
    else:
        archs, side, batch, epochs, steps = small, 64, 2, 3, 1
    train = {}
    for task in TASKS:
        size, b, e = (side, side), batch, epochs
        if task == "ddd":  # KITTI's aspect ratio
            size = (640, 192) if side >= 256 else (320, 96)
        if task == "cornernet" and archs[task] == "cornernet":
            # Hourglass-104 takes multiples of 128; at 128 its innermost maps are 1x1, and batch norm over 2 such
            # values gives gradients of 1e19 at initialisation (every step skipped as non-finite). 201M
            # parameters: 2.4 GB per checkpoint with Adam's state, so one epoch less.
            size, b, e = (256, 256), min(batch, 4), max(2, epochs - 1)
        train[task] = {"arch": archs[task], "size": size, "batch": b, "epochs": e, "steps": steps}
    return Profile(device=device, quick=quick, train=train,
                   dcn=(64, 40, 48) if cuda else (16, 14, 18),
                   pool=(2, 64, 96, 80) if cuda else (2, 8, 23, 19),
                   onnx_size=128 if cuda else 64,
                   eval_size=512, eval_images=16 if cuda else 4,
                   time_size=512 if cuda else 64,
                   time_runs=(8 if quick else 20) if cuda else 2, time_warmup=(3 if quick else 5) if cuda else 1)


# -- helpers ------------------------------------------------------------------------------------------------
def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def no_tf32():
    """fp32 really fp32 on CUDA (cuDNN convolutions use TF32 by default)."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def rel_err(a, ref) -> float:
    """max |a - ref| / max |ref| (both moved to float64 on the CPU)."""
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    if a.shape != ref.shape:
        raise ValueError(f"shape {tuple(a.shape)} != reference {tuple(ref.shape)}")
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def free(device) -> None:
    import gc

    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def calibrate_batch_norm(model, x) -> None:
    """Batch-norm running statistics from one forward of ``x`` (as a trained model has them), then eval mode:
    an untrained deep network with unit statistics can overflow fp16 where a trained one does not."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def amp_dtype_for(device: str):
    """The AMP dtype timed and evaluated here: fp16 on CUDA (what train.amp uses); on a CPU bf16 where the
    project grants it (AMX), else Skip with the project's reason."""
    import torch

    from centernet.engine.precision import resolve_precision

    if device.startswith("cuda"):
        return torch.float16
    try:
        return resolve_precision("bf16", device)
    except ValueError as e:
        raise Skip(str(e)) from None


# -- checks -------------------------------------------------------------------------------------------------
def check_env(p: Profile, work: Path) -> tuple[bool, str]:
    import torch

    a = torch.randn(256, 256, dtype=torch.float64)
    with no_tf32():
        on_device = (a.float().to(p.device) @ a.float().to(p.device)).cpu()
    err = rel_err(on_device, a @ a)
    parts = [f"torch {torch.__version__}"]
    if p.device.startswith("cuda"):
        d = torch.device(p.device)
        cap = torch.cuda.get_device_capability(d)
        parts += [torch.cuda.get_device_name(d), f"sm_{cap[0]}{cap[1]}", f"CUDA {torch.version.cuda}",
                  f"cuDNN {torch.backends.cudnn.version()}", f"bf16 {torch.cuda.is_bf16_supported()}",
                  f"{torch.cuda.get_device_properties(d).total_memory / 2**30:.0f} GiB"]
    else:
        parts += [platform.processor() or platform.machine(), f"{torch.get_num_threads()} threads"]
    parts.append(f"matmul err {err:.1e}")
    return err < 1e-5, ", ".join(parts)


def _train_source(task: str, size: tuple[int, int], count: int, root: Path):
    from centernet.app.builders import open_source

    if task in ("ctdet", "cornernet"):
        from centernet.data import make_synthetic_dataset

        paths = make_synthetic_dataset(root, num_train=count, num_val=0, image_size=size, num_classes=3, seed=0)
        return open_source(str(paths["train_ann"]), task=task)
    if task == "multi_pose":
        from centernet.data.synthetic_pose import make_synthetic_pose_dataset

        paths = make_synthetic_pose_dataset(root, num_train=count, num_val=0, image_size=size, seed=0)
        return open_source(str(paths["train_ann"]), task=task)
    from centernet.data.synthetic_kitti import make_synthetic_kitti

    paths = make_synthetic_kitti(root, num_train=count, num_val=0, size=size, seed=0, depth_range=(5.0, 30.0))
    return open_source(str(paths["train_split"]), task=task)


PRESET = {"ctdet": "ctdet_cpu_small", "multi_pose": "multi_pose_cpu_small", "ddd": "ddd_cpu_small",
          "cornernet": "cornernet_cpu_small"}


def check_train(task_name: str, p: Profile, work: Path) -> tuple[bool, str]:
    """A few epochs of the real Trainer (fit) over the same few images, AMP on CUDA."""
    import torch

    from centernet.app.builders import model_from_config, set_classes, task_from_config
    from centernet.engine.trainer import Trainer
    from centernet.presets import get_preset

    spec = p.train[task_name]
    images = spec["batch"] * spec["steps"]
    source = _train_source(task_name, spec["size"], images, work / task_name / "data")
    cfg = get_preset(PRESET[task_name])
    cfg.model.arch, cfg.model.pretrained = spec["arch"], None
    d = cfg.data
    d.input_size, d.num_workers, d.verify = tuple(spec["size"]), 0, False
    d.random_crop, d.scale_jitter, d.shift_jitter, d.flip_prob, d.color_aug = False, 0.0, 0.0, 0.0, False
    set_classes(cfg, source)
    t = cfg.train
    t.epochs, t.batch_size, t.lr, t.lr_steps = spec["epochs"], spec["batch"], 1e-3, (10**6,)
    t.max_steps_per_epoch, t.val_interval, t.seed, t.patience = None, 0, 0, 0
    t.device, t.amp, t.out_dir = p.device, True, str(work / task_name / "run")
    t.flops, t.reports, t.log_every = False, False, 0
    task = task_from_config(cfg)
    torch.manual_seed(0)
    model = model_from_config(cfg, task)
    cuda = p.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(p.device)
    trainer = Trainer(cfg, model, task, source, None, progress=False)
    if trainer.amp != cuda:
        return False, f"trainer.amp is {trainer.amp} on {p.device} (expected {cuda})"
    with warnings.catch_warnings():  # a first step skipped by the GradScaler makes torch warn about the schedule
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        summary = trainer.fit()
    # an epoch whose every step was skipped (non-finite loss or gradient) has no loss in its record
    losses = [float(r.get("loss", math.nan)) for r in summary["history"]]
    skipped = sum(int(r.get("skipped_steps", 0)) for r in summary["history"])
    finite = len(losses) == spec["epochs"] and all(math.isfinite(v) for v in losses)
    falling = finite and losses[-1] < losses[0]
    steps = spec["epochs"] * spec["steps"]
    w, h = spec["size"]
    parts = [f"{spec['arch']} {w}x{h} b{spec['batch']} {spec['epochs']}x{spec['steps']} steps",
             "amp fp16" if trainer.amp else "fp32 (no amp on cpu)",
             "loss " + " -> ".join(f"{v:.3g}" for v in losses)
             + (" (falling)" if falling else " (not falling)" if finite else " (NOT FINITE)")]
    scaler_skips = 0
    if trainer.amp:  # the GradScaler halves its scale (from 2**16) at every step it skips for inf / NaN gradients
        scale = trainer.scaler.get_scale()
        scaler_skips = round(math.log2(2.0**16 / scale)) if scale > 0 else steps
        parts.append(f"scale {scale:g} ({scaler_skips} of {steps} steps skipped by the GradScaler)")
        parts.append(f"peak {torch.cuda.max_memory_allocated(p.device) / 2**30:.2f} GiB")
    if skipped:
        parts.append(f"{skipped} of {steps} steps skipped as non-finite")
    if skipped + scaler_skips >= steps:
        finite = False
        parts.append("NO STEP APPLIED")
    if not (Path(t.out_dir) / "last.pth").is_file():
        return False, "; ".join(parts) + "; no last.pth written"
    del trainer, model
    free(p.device)
    return finite, "; ".join(parts)


DCN_GEOMETRIES = ((1, 1, 1, 1), (2, 2, 2, 2))  # stride, padding, dilation, deformable groups
DCN_TOLERANCE = {"fp32": (1e-4, 1e-4), "fp16": (5e-3, 5e-3), "bf16": (3e-2, 3e-2)}  # (output, gradients)


def _dcn_case(p: Profile, precision: str, geometry: tuple[int, int, int, int]) -> tuple[float, float]:
    """(output error, worst gradient error) of one layer against the float64 grid_sample reference."""
    import torch

    from centernet.models.layers.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d_reference

    stride, padding, dilation, groups = geometry
    channels, h, w = p.dcn
    torch.manual_seed(sum(geometry))
    layer = ModulatedDeformConv2d(channels, channels, 3, stride, padding, dilation, groups)
    with torch.no_grad():  # offsets of a few pixels, masks spread over (0, 1)
        fan_in = layer.conv_offset_mask.weight[0].numel()
        layer.conv_offset_mask.weight.normal_(0, 2 / math.sqrt(fan_in))
        layer.conv_offset_mask.bias.normal_(0, 0.5)
        layer.bias.normal_(0, 0.1)
    x = torch.randn(2, channels, h, w, dtype=torch.float64)
    ref_layer = copy.deepcopy(layer).double()
    # the device, fp32 or under autocast; its offset conv's output is kept for the reference
    layer = layer.to(p.device)
    captured = []
    hook = layer.conv_offset_mask.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    xd = x.float().to(p.device).requires_grad_()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    kind = torch.device(p.device).type
    try:
        with no_tf32() if dtype is None else torch.autocast(kind, dtype=dtype):
            out = layer(xd)
    finally:
        hook.remove()
    if dtype is not None and out.dtype != dtype:
        raise AssertionError(f"under autocast {precision} the layer returned {out.dtype}")
    probe = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
    (out.float() * probe.float().to(p.device)).sum().backward()
    sync(p.device)
    grads = [xd.grad, layer.weight.grad, layer.bias.grad, layer.conv_offset_mask.weight.grad,
             layer.conv_offset_mask.bias.grad]
    if any(g is None for g in grads):
        raise AssertionError("a gradient is missing")
    # the reference: float64 on the CPU through grid_sample, sampling where the device sampled (the offset conv's
    # output as the device computed it, gradients through the float64 offset conv): a sample moved across a
    # pixel edge by a rounded offset changes its offset gradient by O(1), which would say nothing about the DCN.
    # fp16 / bf16 offsets put many samples exactly on a pixel edge, where the bilinear form has no derivative:
    # the implementation (floor) takes the one towards larger coordinates, and so does the reference, sampling
    # 1e-9 px past the edge.
    xr = x.clone().requires_grad_()
    raw = ref_layer.conv_offset_mask(xr)
    n_off = 2 * groups * 9
    device_raw = captured[0].double().cpu()
    device_raw[:, :n_off] += 1e-9
    raw = raw + (device_raw - raw).detach()
    ref = modulated_deform_conv2d_reference(xr, raw[:, :n_off], torch.sigmoid(raw[:, n_off:]), ref_layer.weight,
                                            ref_layer.bias, stride, padding, dilation, groups)
    (ref * probe).sum().backward()
    ref_grads = [xr.grad, ref_layer.weight.grad, ref_layer.bias.grad, ref_layer.conv_offset_mask.weight.grad,
                 ref_layer.conv_offset_mask.bias.grad]
    return rel_err(out.float(), ref), max(rel_err(g.float(), r) for g, r in zip(grads, ref_grads))


def check_dcn(precision: str, p: Profile, work: Path) -> tuple[bool, str]:
    import torch

    if precision == "bf16" and p.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU does not support bf16")
    out_tol, grad_tol = DCN_TOLERANCE[precision]
    worst_out = worst_grad = 0.0
    for geometry in DCN_GEOMETRIES:
        e_out, e_grad = _dcn_case(p, precision, geometry)
        worst_out, worst_grad = max(worst_out, e_out), max(worst_grad, e_grad)
    c, h, w = p.dcn
    ok = worst_out <= out_tol and worst_grad <= grad_tol
    return ok, (f"2x{c}x{h}x{w}, {len(DCN_GEOMETRIES)} geometries; err out {worst_out:.1e} (tol {out_tol:.0e}), "
                f"grad {worst_grad:.1e} (tol {grad_tol:.0e}) vs float64 cpu")


def check_corner_pool(p: Profile, work: Path) -> tuple[bool, str]:
    import torch

    from centernet.models.layers.corner_pool import corner_pool

    torch.manual_seed(0)
    x = torch.randn(p.pool)
    probe = torch.randn(p.pool)
    bad = []

    def run(t, device, direction, method):
        leaf = t.to(device).requires_grad_()
        out = corner_pool(leaf, direction, method)
        (out.float() * probe.to(device)).sum().backward()
        return out.detach().float().cpu(), leaf.grad.float().cpu()

    for direction in ("top", "bottom", "left", "right"):
        on_device = run(x, p.device, direction, "auto")
        for method in ("auto", "doubling"):
            ref = run(x, "cpu", direction, method)
            if not (torch.equal(on_device[0], ref[0]) and torch.equal(on_device[1], ref[1])):
                bad.append(f"{direction}/{method}")
        half = x.half()  # values only: max is exact in any dtype
        with torch.no_grad():
            out_half = corner_pool(half.to(p.device), direction, "auto").cpu()
            ref_half = corner_pool(half.float(), direction, "doubling")
        if out_half.dtype != torch.float16 or not torch.equal(out_half.float(), ref_half):
            bad.append(f"{direction}/fp16")
    shape = "x".join(map(str, p.pool))
    against = "cpu eager + doubling" if p.device.startswith("cuda") else "doubling"
    return not bad, f"{shape}, 4 directions, values+grads exact vs {against}" + (f"; DIFFER: {bad}" if bad else "")


def check_onnx(task_name: str, p: Profile, work: Path) -> tuple[bool, str]:
    import torch

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise Skip(f"{e.name} is not installed (pip install -e '.[onnx]')") from None
    from centernet.app.builders import model_from_config, task_from_config
    from centernet.export.onnx import OnnxRunner, export_onnx, op_types
    from centernet.models.layers.deform_conv import ModulatedDeformConv2d
    from centernet.presets import get_preset

    cfg = get_preset(PRESET[task_name])
    cfg.model.arch = {"ctdet": "resdcn_18_tiny", "cornernet": "hourglass_tiny"}[task_name]
    cfg.data.input_size = (p.onnx_size, p.onnx_size)
    task = task_from_config(cfg)
    torch.manual_seed(0)
    model = model_from_config(cfg, task)
    with torch.no_grad():  # weights as after training: DCN offsets, batch-norm statistics, head outputs
        for m in model.modules():
            if isinstance(m, ModulatedDeformConv2d):
                m.conv_offset_mask.weight.normal_(0, 1 / math.sqrt(m.conv_offset_mask.weight[0].numel()))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for name, prm in model.named_parameters():
            if name.startswith("heads") and name.endswith("2.weight"):
                prm.normal_(0, 0.05)
    model = model.to(p.device).eval()
    x = torch.randn(2, 3, p.onnx_size, p.onnx_size)  # batch 2: the batch axis is dynamic
    with torch.no_grad(), no_tf32():
        ref = {k: v.float().cpu() for k, v in task.activate(model(x.to(p.device))[-1]).items()}
    path = export_onnx(copy.deepcopy(model).cpu(), task, cfg, work / f"{task_name}.onnx")
    custom = sorted({f"{d}:{op}" for d, op in op_types(path) if d not in ("", "ai.onnx")})
    out = OnnxRunner(path)(x)
    errors = {k: rel_err(out[k], ref[k]) for k in ref}
    worst = max(errors, key=errors.get)
    ok = errors[worst] < 1e-3 and not custom and set(out) == set(ref)
    return ok, (f"{cfg.model.arch} {p.onnx_size}x{p.onnx_size} b2, {path.stat().st_size / 2**20:.1f} MB; "
                f"onnxruntime vs {p.device} fp32: worst {worst} {errors[worst]:.1e} (tol 1e-3)"
                + (f"; NON-STANDARD OPS {custom}" if custom else "; standard ops only"))


def _coco_mini(data: Path) -> Path:
    ann = data / "coco_mini" / "annotations" / "instances_val2017.json"
    if not ann.is_file():
        raise Skip(f"{ann} not found (pass --data)")
    return ann


def check_oracle(task_name: str, p: Profile, work: Path, data: Path) -> tuple[bool, str]:
    from centernet.app.builders import open_source
    from centernet.engine.evaluator import EvalSettings, evaluate
    from centernet.tasks import build_task

    source = open_source(str(_coco_mini(data)), task=task_name)
    task = build_task(task_name, len(source.class_names))
    size = (511, 511) if task_name == "cornernet" else (512, 512)
    metrics = evaluate(None, task, source, EvalSettings(input_size=size), device=p.device, progress=False).metrics
    threshold = 0.97
    return metrics["AP"] >= threshold, (f"{len(source)} images at {size[0]}, decode on {p.device}: AP "
                                        f"{metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} (need AP >= {threshold})")


def check_eval_model(p: Profile, work: Path, data: Path) -> tuple[bool, str]:
    import torch

    from centernet.app.builders import open_source
    from centernet.data.sample import Subset
    from centernet.engine.evaluator import EvalSettings, evaluate
    from centernet.models import build_model
    from centernet.tasks import build_task

    source = open_source(str(_coco_mini(data)), task="ctdet")
    subset = Subset(source, range(min(p.eval_images, len(source))))
    task = build_task("ctdet", len(source.class_names))
    try:
        dtype = amp_dtype_for(p.device)
        precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    except Skip:
        precision = "fp32"  # this CPU: reduced precision refused by the project (no AMX)
    torch.manual_seed(0)
    model = build_model("dla_tiny", task.heads()).to(p.device)
    calibrate_batch_norm(model, torch.randn(2, 3, p.eval_size, p.eval_size, device=p.device))
    settings = EvalSettings(input_size=(p.eval_size, p.eval_size), precision=precision, flip=True)
    metrics = evaluate(model, task, subset, settings, device=p.device, progress=False).metrics
    finite = all(math.isfinite(v) for v in metrics.values())
    return finite, (f"untrained dla_tiny, {len(subset)} images at {p.eval_size}, flip, {precision} on {p.device}: "
                    f"{len(metrics)} metrics {'finite' if finite else 'NOT FINITE'} (AP {metrics['AP']:.4f})")


def check_timing(arch: str, p: Profile, work: Path) -> tuple[bool, str]:
    import torch

    from centernet import build_model
    from centernet.models import INPUT_MULTIPLE

    model = build_model(arch, {"hm": 80, "wh": 2, "reg": 2}).to(p.device).eval()
    side = max(p.time_size, INPUT_MULTIPLE[arch])
    x = torch.randn(1, 3, side, side, device=p.device)
    calibrate_batch_norm(model, torch.randn(2, 3, side, side, device=p.device))  # 2: Hourglass's 1x1 maps at 128

    def median_ms(dtype) -> tuple[float, Any]:
        result = None

        def once():
            nonlocal result
            with torch.no_grad(), (torch.autocast(torch.device(p.device).type, dtype=dtype)
                                   if dtype is not None else contextlib.nullcontext()):
                result = model(x)
            sync(p.device)

        for _ in range(p.time_warmup):
            once()
        times = []
        for _ in range(p.time_runs):
            start = time.perf_counter()
            once()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times), result

    fp32_ms, out32 = median_ms(None)
    hm32 = torch.sigmoid(out32[-1]["hm"].float())
    parts = [f"{side}x{side} b1, median of {p.time_runs}: fp32 {fp32_ms:.1f} ms"]
    finite = bool(torch.isfinite(hm32).all())
    try:
        dtype, note = amp_dtype_for(p.device), ""
    except Skip as e:  # a CPU without AMX: still run the autocast path (it tests this script), but not the
        # Hourglass (a minute at 128x128 on such a CPU)
        reason = str(e).split(";")[0]
        dtype, note = (None, reason) if arch == "hourglass" else (torch.bfloat16, " (refused by the project here)")
    if dtype is None:
        parts.append(f"amp skipped: {note}")
    else:
        amp_ms, out_amp = median_ms(dtype)
        hm_amp = torch.sigmoid(out_amp[-1]["hm"].float())
        amp_finite = bool(torch.isfinite(hm_amp).all())
        name = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
        parts.append(f"amp {name} {amp_ms:.1f} ms ({fp32_ms / amp_ms:.2f}x){note}")
        parts.append(f"hm diff {float((hm_amp - hm32).abs().max()):.1e}" if amp_finite else "amp hm NOT FINITE")
        finite = finite and amp_finite
    if not finite:
        parts.append("non-finite output")
    del model
    free(p.device)
    return finite, ", ".join(parts)


# -- driver -------------------------------------------------------------------------------------------------
def run_check(rows: list[Row], name: str, fn: Callable[[], tuple[bool, str]], verbose: bool) -> None:
    start = time.perf_counter()
    try:
        ok, numbers = fn()
        result = "ok" if ok else "FAIL"
    except Skip as e:
        result, numbers = "skip", str(e)
    except Exception as e:  # noqa: BLE001 - a failing check is a row, not the end of the run
        result = "FAIL"
        first = (str(e).strip().splitlines() or [""])[0]
        numbers = f"{type(e).__name__}: {first}"[:300]
        if verbose:
            traceback.print_exc()
    seconds = time.perf_counter() - start
    rows.append(Row(name, result, numbers, round(seconds, 2)))
    print(f"[{seconds:6.1f}s] {name:<20} {result}", file=sys.stderr, flush=True)


def format_table(rows: list[Row]) -> str:
    widths = [max(len(h), *(len(getattr(r, f)) for r in rows)) for h, f in
              (("check", "check"), ("result", "result"), ("numbers", "numbers"))]
    head = f"{'check':<{widths[0]}}  {'result':<{widths[1]}}  {'numbers':<{widths[2]}}  {'seconds':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.check:<{widths[0]}}  {r.result:<{widths[1]}}  {r.numbers:<{widths[2]}}  {r.seconds:7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (the same checks, smaller: "
                                                         "tests this script without a GPU)")
    parser.add_argument("--quick", action="store_true", help="small architectures and fewer timing runs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the table as json")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"real data folder (default {DEFAULT_DATA})")
    parser.add_argument("--only", nargs="+", metavar="PREFIX", help="run only the checks whose name starts so")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a failing check")
    args = parser.parse_args(argv)

    import torch

    device = args.device
    if device != "cpu" and not device.startswith("cuda"):
        print(f"gpu_check: unknown device {device!r}; use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            print(f"gpu_check: CUDA is not available here (torch {torch.__version__}, "
                  f"built for CUDA {torch.version.cuda or 'none'}); run with --device cpu to test the script on "
                  "the CPU", file=sys.stderr)
            return 2
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            print(f"gpu_check: {device} requested but only {torch.cuda.device_count()} CUDA devices exist",
                  file=sys.stderr)
            return 2
        if index is not None:
            torch.cuda.set_device(index)  # (set_device refuses a device without an index)
    p = make_profile(device, args.quick)
    checks: list[tuple[str, Callable[[Path], tuple[bool, str]]]] = [("env", lambda w: check_env(p, w))]
    checks += [(f"train/{t}", lambda w, t=t: check_train(t, p, w)) for t in TASKS]
    checks += [(f"dcn/{prec}", lambda w, prec=prec: check_dcn(prec, p, w)) for prec in ("fp32", "fp16", "bf16")]
    checks += [("corner_pool", lambda w: check_corner_pool(p, w))]
    checks += [(f"onnx/{t}", lambda w, t=t: check_onnx(t, p, w)) for t in ("ctdet", "cornernet")]
    checks += [("eval/oracle_ctdet", lambda w: check_oracle("ctdet", p, w, args.data)),
               ("eval/oracle_cornernet", lambda w: check_oracle("cornernet", p, w, args.data)),
               ("eval/model_amp", lambda w: check_eval_model(p, w, args.data))]
    checks += [(f"time/{a}", lambda w, a=a: check_timing(a, p, w)) for a in TIMED_ARCHS]
    if args.only:
        checks = [(n, f) for n, f in checks if any(n.startswith(prefix) for prefix in args.only)]

    mode = "quick" if args.quick else "full"
    print(f"gpu_check on {device} ({mode}), torch {torch.__version__}", file=sys.stderr, flush=True)
    rows: list[Row] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for name, fn in checks:
            work = Path(tmp) / name.replace("/", "_")
            work.mkdir(parents=True, exist_ok=True)
            run_check(rows, name, lambda fn=fn, work=work: fn(work), args.verbose)
    total = time.perf_counter() - start
    failed = [r.check for r in rows if r.result == "FAIL"]
    skipped = sum(r.result == "skip" for r in rows)
    print(format_table(rows))
    print(f"{len(rows)} checks on {device} ({mode}) in {total:.1f} s: {len(rows) - len(failed) - skipped} ok, "
          f"{len(failed)} FAIL{' (' + ', '.join(failed) + ')' if failed else ''}, {skipped} skipped")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": device, "mode": mode, "torch": torch.__version__,
                                         "seconds": round(total, 2), "failed": failed,
                                         "rows": [asdict(r) for r in rows]}, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
