"""ONNX export of any architecture (standard ops only) and an onnxruntime runner for the predictor.

The exported graph takes normalised images ``input`` [B, 3, H, W] and returns either the activated maps of
the last stack (``task.activate``: one output per map, e.g. hm / wh / reg, each [B, n, H/R, W/R]) or, with
``decode=True``, the detection rows ``detections`` [B, K, D] in output-map pixels (``task.decode`` in the
graph, K fixed). The checkpoint's configuration is stored as metadata, so :class:`OnnxRunner` (and
:func:`onnx_predictor`) need only the ``.onnx`` file. The batch axis is always dynamic; ``dynamic=True``
also frees H and W (they must stay multiples of the backbone's stride).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ExperimentConfig
from ..engine.inference import DETECTIONS
from ..tasks.base import Task

INPUT_NAME = "input"
META_CONFIG = "centernet_config"
META_OUTPUTS = "centernet_outputs"  # "maps" or "detections"
META_MAP_NAMES = "centernet_map_names"
META_INPUT_SIZE = "centernet_input_size"  # [w, h] the graph was traced at
META_DYNAMIC = "centernet_dynamic"
DEFAULT_OPSET = 17
MIN_OPSET = 16  # the oldest opset the export is tested with


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
                dynamic: bool = False, check: bool = True) -> Path:
    """Write ``model`` (+ ``task`` activation, optionally decoding) to ``path`` as ONNX.

    ``input_size`` (w, h) defaults to the config's training input size. Returns the path.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is older than the oldest tested opset {MIN_OPSET}; use {MIN_OPSET} or newer")
    import onnx

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
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic and the legacy exporter
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=output_names,
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    meta = {META_CONFIG: json.dumps(cfg.to_dict()), META_OUTPUTS: DETECTIONS if decode else "maps",
            META_MAP_NAMES: json.dumps(map_names), META_INPUT_SIZE: json.dumps([w, h]),
            META_DYNAMIC: json.dumps(dynamic)}
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if check:
        onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


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
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


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
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_CONFIG not in meta:
            raise ValueError(f"{self.path} was not exported by centernet (no {META_CONFIG} metadata)")
        self.config = ExperimentConfig.from_dict(json.loads(meta[META_CONFIG]))
        self.outputs = meta.get(META_OUTPUTS, "maps")
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
