"""ONNX export of any architecture (standard ops only) and an onnxruntime runner for the predictor.

The exported graph takes normalised images ``input`` [B, 3, H, W] and returns either the activated maps of
the last stack (``task.activate``: one output per map, e.g. hm / wh / reg, each [B, n, H/R, W/R]) or, with
``decode=True``, the detection rows ``detections`` [B, K, D] in output-map pixels (``task.decode`` in the
graph, K fixed). The checkpoint's configuration is stored as metadata, so :class:`OnnxRunner` (and
:func:`onnx_predictor`) need only the ``.onnx`` file. The batch axis is always dynamic; ``dynamic=True``
also frees H and W (they must stay multiples of the backbone's stride).

Deformable convolutions (DCNv2) are written in one of two forms (``dcn_op``, recorded as :data:`META_DCN_OP`):

* ``deformconv`` (the default): one standard ``DeformConv`` node per DCN (opset 19; the export raises a lower
  opset to 19), fed the layer's weight, bias, (dy, dx) offsets and sigmoid mask. The legacy (TorchScript)
  exporter traces each DCN as one call of a custom op (:func:`_deform_conv_op`, defined on first use and
  run by nothing else) whose symbolic writes the node; the model code stays plain PyTorch
  (:func:`centernet.models.layers.deform_conv.traced_as`). onnxruntime runs it from 1.25 on
  (:data:`DEFORMCONV_ORT`); when the installed onnxruntime is older, or the installed onnx has no opset 19,
  the default falls back to the gather form and says so in one line.
* ``gather``: the traced pure-PyTorch sampling (Gather of the four corners of every sample, a batched MatMul
  for their weights, a MatMul with the weights), which any runtime with the standard opset-16 ops runs.
"""
from __future__ import annotations

import contextlib
import json
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ExperimentConfig
from ..engine.inference import DETECTIONS
from ..models.layers.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d_reference, traced_as
from ..tasks.base import Task

INPUT_NAME = "input"
META_CONFIG = "centernet_config"
META_OUTPUTS = "centernet_outputs"  # "maps" or "detections"
META_MAP_NAMES = "centernet_map_names"
META_INPUT_SIZE = "centernet_input_size"  # [w, h] the graph was traced at
META_DYNAMIC = "centernet_dynamic"
META_DCN_OP = "centernet_dcn_op"  # how the DCNs are written: "deformconv", "gather", or "none" (the model has none)
DEFAULT_OPSET = 17
MIN_OPSET = 16  # the oldest opset the export is tested with
DCN_OPS = ("deformconv", "gather")
DEFORMCONV_OPSET = 19  # the first opset with DeformConv
#: the first onnxruntime whose CPU provider runs DeformConv (microsoft/onnxruntime#27393; 1.24.4 refuses it)
DEFORMCONV_ORT = (1, 25)
_OP_NAMESPACE, _OP_NAME = "centernet_export", "deform_conv"


class ExportModule(nn.Module):
    """Wraps a detector and its task: images -> activated maps (a tuple, in ``map_names`` order) or rows."""

    def __init__(self, model: nn.Module, task: Task, map_names: Sequence[str], decode: bool = False) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.map_names = list(map_names)
        self.decode = decode

    def forward(self, images: Tensor):  # [B, 3, H, W]
        maps = self.task.activate(self.model(images)[-1])
        if self.decode:
            return self.task.decode(maps)  # [B, K, D] in output-map pixels
        return tuple(maps[name] for name in self.map_names)


def export_onnx(model: nn.Module, task: Task, cfg: ExperimentConfig, path: str | Path,
                input_size: tuple[int, int] | None = None, decode: bool = False, opset: int = DEFAULT_OPSET,
                dynamic: bool = False, check: bool = True, dcn_op: str | None = None) -> Path:
    """Write ``model`` (+ ``task`` activation, optionally decoding) to ``path`` as ONNX.

    ``input_size`` (w, h) defaults to the config's training input size. ``dcn_op``: how DCNs are written,
    "deformconv" (opset 19 or newer) or "gather" (see the module docstring); None: "deformconv" where the
    installed onnxruntime runs it, else "gather" (:func:`resolve_dcn_op`). Returns the path.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is older than the oldest tested opset {MIN_OPSET}; use {MIN_OPSET} or newer")
    if dcn_op is not None and dcn_op not in DCN_OPS:
        raise ValueError(f"unknown dcn_op {dcn_op!r}; choose from {', '.join(DCN_OPS)}")
    import onnx

    has_dcn = any(isinstance(m, ModulatedDeformConv2d) for m in model.modules())
    dcn_form = resolve_dcn_op(dcn_op) if has_dcn else "none"
    if dcn_form == "deformconv":
        opset = max(opset, DEFORMCONV_OPSET)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = tuple(input_size or cfg.data.input_size)
    model = model.eval()
    example = torch.zeros(1, 3, h, w)
    with torch.no_grad():
        map_names = list(task.activate(model(example)[-1]))
    module = ExportModule(model, task, map_names, decode).eval()
    output_names = [DETECTIONS] if decode else map_names
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch"}}
    if dynamic:
        axes[INPUT_NAME].update({2: "height", 3: "width"})
    for name in output_names:
        axes[name] = {0: "batch"}
        if dynamic and not decode:
            axes[name].update({2: "map_height", 3: "map_width"})
    with warnings.catch_warnings(), torch.no_grad(), dcns_written_as(dcn_form):
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic and the legacy exporter
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=output_names,
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    meta = {META_CONFIG: json.dumps(cfg.to_dict()), META_OUTPUTS: DETECTIONS if decode else "maps",
            META_MAP_NAMES: json.dumps(map_names), META_INPUT_SIZE: json.dumps([w, h]),
            META_DYNAMIC: json.dumps(dynamic), META_DCN_OP: dcn_form}
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if check:
        onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def resolve_dcn_op(dcn_op: str | None = None) -> str:
    """The DCN form an export writes: ``dcn_op`` as asked ("deformconv" needs an onnx with opset 19), or for
    None "deformconv" unless the installed onnxruntime is older than :data:`DEFORMCONV_ORT` or the installed
    onnx has no opset 19: then "gather", said in one printed line. (Without onnxruntime installed the target
    runtime is unknown: "deformconv", the standard operator.)"""
    if dcn_op is not None and dcn_op not in DCN_OPS:
        raise ValueError(f"unknown dcn_op {dcn_op!r}; choose from {', '.join(DCN_OPS)}")
    import onnx

    if onnx.defs.onnx_opset_version() < DEFORMCONV_OPSET:
        reason = f"onnx {onnx.__version__} has no opset {DEFORMCONV_OPSET} (DeformConv)"
        if dcn_op == "deformconv":
            raise ValueError(f"cannot write DeformConv: {reason}; upgrade onnx or use dcn_op 'gather'")
    else:
        reason = runtime_lacks_deformconv()
    if dcn_op is not None:
        return dcn_op
    if reason:
        print(f"exporting the DCNs as gathers, not DeformConv: {reason}; --dcn-op deformconv writes it anyway")
        return "gather"
    return "deformconv"


def runtime_lacks_deformconv() -> str | None:
    """Why the installed onnxruntime cannot run DeformConv, or None (it can, or none is installed)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    version = getattr(onnxruntime, "__version__", "")
    if _version(version) < DEFORMCONV_ORT:
        wanted = ".".join(map(str, DEFORMCONV_ORT))
        return f"onnxruntime {version} has no DeformConv kernel ({wanted} or newer runs it)"
    return None


def _version(text: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as 1.25.0 or 1.26.0.dev20260401; () if unreadable."""
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else ()


@contextlib.contextmanager
def dcns_written_as(dcn_op: str) -> Iterator[None]:
    """While a legacy (``dynamo=False``) ``torch.onnx.export`` runs inside this block, every DCN is written as
    ``dcn_op``: "deformconv" (one DeformConv node; export at opset 19 or newer) or "gather" (or "none")."""
    if dcn_op == "deformconv":
        _deform_conv_op()  # defined, and its symbolic registered, before tracing
    with traced_as(_trace_deformconv if dcn_op == "deformconv" else None):
        yield


def _deform_conv_op():
    """``torch.ops.centernet_export.deform_conv``: a whole DCN as one traced node, written as ONNX DeformConv by
    its symbolic. Defined (and the symbolic registered) on first use, by exports only; computing it (the
    tracer needs the output) takes the grid-sample reference."""
    namespace = getattr(torch.ops, _OP_NAMESPACE)
    if not hasattr(namespace, _OP_NAME):
        @torch.library.custom_op(f"{_OP_NAMESPACE}::{_OP_NAME}", mutates_args=())
        def deform_conv(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, stride: list[int],
                        padding: list[int], dilation: list[int], groups: int) -> Tensor:
            return modulated_deform_conv2d_reference(x, offset, mask, weight, bias, stride, padding, dilation,
                                                     groups)

        from torch.onnx import symbolic_helper

        @symbolic_helper.parse_args("v", "v", "v", "v", "v", "is", "is", "is", "i")
        def symbolic(g, x, offset, mask, weight, bias, stride, padding, dilation, groups):
            # inputs X, W, offset, B, mask; pads (top, left, bottom, right); group: plain (not grouped) weights
            return g.op("DeformConv", x, weight, offset, bias, mask, strides_i=stride, pads_i=padding + padding,
                        dilations_i=dilation, group_i=1, offset_group_i=groups)

        torch.onnx.register_custom_op_symbolic(f"{_OP_NAMESPACE}::{_OP_NAME}", symbolic, DEFORMCONV_OPSET)
    return getattr(namespace, _OP_NAME)


def _trace_deformconv(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None, stride,
                      padding, dilation, groups: int) -> Tensor:
    """A DCN while exporting with dcn_op "deformconv" (:func:`traced_as`): one node of :func:`_deform_conv_op`."""
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    return _deform_conv_op()(x, offset, mask, weight, bias, list(stride), list(padding), list(dilation), groups)


def export_checkpoint(checkpoint: str | Path, path: str | Path, **options: Any) -> Path:
    """Export a centernet checkpoint (see :func:`export_onnx` for ``options``)."""
    from ..app.builders import load_checkpoint

    cfg, model, task = load_checkpoint(checkpoint, "cpu")
    return export_onnx(model, task, cfg, path, **options)


def op_types(path: str | Path) -> set[tuple[str, str]]:
    """(domain, op type) of every node of the graph, subgraphs included; '' is the default ONNX domain."""
    import onnx

    found: set[tuple[str, str]] = set()

    def visit(graph) -> None:
        for node in graph.node:
            found.add((node.domain, node.op_type))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(onnx.load(str(path)).graph)
    return found


def read_metadata(path: str | Path) -> dict[str, str]:
    return read_header(path)[1]


def read_header(path: str | Path) -> tuple[int, dict[str, str]]:
    """(default-domain opset, metadata) of an .onnx file, read in one load."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return opset_of(model), {p.key: p.value for p in model.metadata_props}


def opset_of(model: Any) -> int:
    """The default-domain opset an ONNX ``ModelProto`` declares."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


class OnnxRunner:
    """onnxruntime session of an exported model: images [B, 3, H, W] -> {map name: [B, n, h, w]}, the
    runner hook of :class:`centernet.engine.predictor.Predictor`. A model exported with ``decode=True``
    returns {"detections": [B, K, D]} (output-map pixels) instead."""

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:  # onnxruntime's own error types
            if "DeformConv" not in str(err):
                raise
            wanted = ".".join(map(str, DEFORMCONV_ORT))
            raise ValueError(f"{self.path.name} writes its DCNs as DeformConv, which onnxruntime {ort.__version__} "
                             f"cannot run: install onnxruntime>={wanted}, or export with --dcn-op gather") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_CONFIG not in meta:
            raise ValueError(f"{self.path} was not exported by centernet (no {META_CONFIG} metadata)")
        self.config = ExperimentConfig.from_dict(json.loads(meta[META_CONFIG]))
        self.outputs = meta.get(META_OUTPUTS, "maps")
        self.dcn_op = meta.get(META_DCN_OP)  # None: exported before the choice existed (its DCNs gather)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_shape = self.session.get_inputs()[0].shape  # [batch, 3, H or name, W or name]

    @property
    def decodes(self) -> bool:
        return self.outputs == DETECTIONS

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        h, w = images.shape[-2:]
        fixed_h, fixed_w = self.input_shape[2], self.input_shape[3]
        if isinstance(fixed_h, int) and isinstance(fixed_w, int) and (fixed_h, fixed_w) != (h, w):
            raise ValueError(f"{self.path.name} takes {fixed_w}x{fixed_h} inputs, got {w}x{h}: test at that "
                             "size (no --keep-res) or export with --dynamic")
        feed = {INPUT_NAME: np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)}
        outputs = self.session.run(self.output_names, feed)
        return {name: torch.from_numpy(out).to(images.device) for name, out in zip(self.output_names, outputs)}


def onnx_predictor(path: str | Path, **overrides: Any):
    """A predictor on onnxruntime from an exported ``.onnx`` file alone (its metadata holds the config)."""
    from ..app.builders import predictor_for_runner

    runner = OnnxRunner(path)
    return predictor_for_runner(runner, runner.config, **overrides)
