"""Static int8 quantisation (QDQ) of an exported model with onnxruntime, calibrated on real test inputs.

The calibration images go through exactly the test pipeline of the model's stored configuration
(:func:`centernet.data.transforms.prepare_test_image` with its input size, mean, std and padding), so the
activation ranges are those the model sees at test time. Only the layers with weights (Conv, MatMul,
Gemm) and the ops around them that onnxruntime fuses into integer kernels (Relu, Add, MaxPool) are
quantised (uint8 activations, int8 weights per output channel); every DCN stays float (its DeformConv node,
or in the gather form its sampling: positions, gathers, corner and mask weights), and so do the node groups
named in ``exclude`` (see :data:`EXCLUDE_GROUPS`). The centernet metadata of the float model is copied (plus
a summary under :data:`META_QUANTIZATION`), so ``onnx_predictor`` and :class:`OnnxRunner` use the result
unchanged.

Defaults as measured by ``benchmarks/bench_int8.py --ap``: quantising the heads' last convs too cost
0.3 AP on the demo model and 2.9 AP on a raccoon model; keeping them float (``heads``) costs 0.0 / 1.0;
keeping the DCN offset convs float as well changed little and cost speed. ``quant_pre_process`` (BatchNorm
folding) is what lets the convs fuse into integer kernels (resdcn_18: 1.45x -> 1.96x over fp32).
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..data.io import read_image
from ..data.sample import DetectionSource
from ..data.transforms import prepare_test_image
from ..data.yolo import IMAGE_EXTENSIONS as IMAGE_SUFFIXES
from .onnx import META_CONFIG, META_DYNAMIC, META_INPUT_SIZE, INPUT_NAME

META_QUANTIZATION = "centernet_quantization"
METHODS = ("minmax", "entropy", "percentile")
# Op types quantised: the weighted layers, plus what onnxruntime fuses with them into integer kernels.
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")  # onnxruntime's CPU provider has no int8 ConvTranspose
QUANT_OP_TYPES = (*WEIGHTED_OPS, "Relu", "Clip", "Add", "MaxPool")
# Named groups of nodes that may stay float; anything else in ``exclude`` is a node-name glob pattern.
EXCLUDE_GROUPS = {
    "heads": "the last conv of every head (it writes a map: heatmap logits, sizes, offsets)",
    "offsets": "the offset/mask conv of every DCN (sampling positions are sensitive to rounding)",
}
DEFAULT_EXCLUDE = ("heads",)
# Images per calibration chunk: the histogram methods hold every activation of a chunk in memory.
CALIB_CHUNK = 8
INSTALL_HINT = "pip install 'onnxruntime>=1.17' 'onnx>=1.15' (the `centernet[onnx]` extra)"


def _quantization_tools():
    """onnxruntime.quantization, or one clear line saying what to install."""
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization as quantization
    except ImportError as err:
        raise ImportError(f"int8 export needs onnxruntime's quantization tools ({err.name} missing): "
                          f"{INSTALL_HINT}") from None
    return quantization


def calibration_images(calibration: DetectionSource | str | Path, num_images: int) -> list[Path]:
    """Up to ``num_images`` image paths spread evenly over a data source or a folder of images."""
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    if isinstance(calibration, DetectionSource):
        paths = [Path(sample.path) for sample in calibration.samples]
        where = f"calibration source {type(calibration).__name__}"
    else:
        folder = Path(calibration)
        if not folder.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {folder}")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"calibration folder {folder}"
    if not paths:
        raise ValueError(f"{where} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    picks = np.unique(np.linspace(0, len(paths) - 1, min(num_images, len(paths))).round().astype(int))
    return [paths[i] for i in picks]


class CalibrationReader:
    """onnxruntime ``CalibrationDataReader``: one test-prepared image [1, 3, H, W] per ``get_next``.

    ``input_size`` (w, h) is the graph's fixed size, or None to use the configuration's test geometry
    (a dynamic graph: the configured input size, or keep_res padding)."""

    def __init__(self, paths: Sequence[Path], config_json: str, input_size: tuple[int, int] | None) -> None:
        from ..app.builders import eval_settings
        from ..config import ExperimentConfig

        self.settings = eval_settings(ExperimentConfig.from_dict(json.loads(config_json)))
        if input_size is not None:
            self.settings.input_size = input_size
        self.paths = list(paths)
        self._next = iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def prepare(self, path: Path) -> np.ndarray:
        s = self.settings
        mean, std = np.array(s.mean, np.float32), np.array(s.std, np.float32)
        prepared = prepare_test_image(read_image(path), mean, std, s.input_size, s.pad, s.down_ratio)
        return prepared.image[None]  # [1, 3, H, W]

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._next, None)
        return None if path is None else {INPUT_NAME: self.prepare(path)}

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve ``paths[start_index:end_index]`` next (onnxruntime calibrates in such chunks)."""
        self._next = iter(self.paths[start_index:end_index])


def _chunk(n: int, most: int = CALIB_CHUNK) -> int:
    """The largest divisor of ``n`` up to ``most``: onnxruntime's chunked calibration needs one."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def _metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def excluded_nodes(model, exclude: Iterable[str]) -> list[str]:
    """Names of the nodes of ``model`` (an onnx ModelProto) that stay float: every DCN's DeformConv node, or
    in the gather form its sampling arithmetic (all its nodes but the MatMul with the weights), plus the groups /
    name patterns of ``exclude``."""
    exclude = list(exclude)
    nodes = list(model.graph.node)
    offset_convs = [n for n in nodes if n.op_type == "Conv" and "conv_offset_mask" in n.name]
    dcn_prefixes = [n.name.split("conv_offset_mask")[0] for n in offset_convs]  # e.g. /model/neck/up.0/
    consumers: dict[str, list] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    outputs = {o.name for o in model.graph.output}

    def writes_output(node) -> bool:  # through element-wise activations only (e.g. the heatmap sigmoid)
        frontier = list(node.output)
        while frontier:
            name = frontier.pop()
            if name in outputs:
                return True
            frontier += [o for c in consumers.get(name, []) if c.op_type in ("Sigmoid", "Relu", "Identity", "Clip")
                         for o in c.output]
        return False

    weights = {i.name for i in model.graph.initializer}
    names: set[str] = set()
    for n in nodes:  # a DCN's sampling (gathers, corner weights: a MatMul of two activations) stays float
        with_weights = n.op_type in WEIGHTED_OPS and any(name in weights for name in n.input)
        if any(n.name.startswith(p) for p in dcn_prefixes) and not with_weights:
            names.add(n.name)
    for item in exclude:
        if item == "heads":
            names.update(n.name for n in nodes if n.op_type in ("Conv", "ConvTranspose", "Gemm") and writes_output(n))
        elif item == "offsets":
            names.update(n.name for n in offset_convs)
        else:
            matched = [n.name for n in nodes if fnmatch.fnmatchcase(n.name, item)]
            if not matched:
                raise ValueError(f"exclude pattern {item!r} matches no node (groups: {', '.join(EXCLUDE_GROUPS)})")
            names.update(matched)
    return sorted(names)


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, calibration: DetectionSource | str | Path,
                  num_images: int = 64, method: str = "minmax", per_channel: bool = True,
                  exclude: Sequence[str] = DEFAULT_EXCLUDE, preprocess: bool = True) -> Path:
    """Write the statically int8-quantised (QDQ) version of the exported model ``fp32_path`` to ``out_path``.

    ``calibration``: a data source or a folder of images, of which ``num_images`` spread evenly are run.
    ``method``: how activation ranges are chosen from the calibration runs (minmax, entropy, percentile).
    ``exclude``: node groups (:data:`EXCLUDE_GROUPS`) or node-name glob patterns that stay float.
    ``preprocess``: run onnxruntime's ``quant_pre_process`` (shape inference, BatchNorm folding) first.
    Returns ``out_path``.
    """
    quantization = _quantization_tools()
    import onnx

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {fp32_path}")
    meta = _metadata(onnx.load(str(fp32_path), load_external_data=False))
    if META_CONFIG not in meta:
        raise ValueError(f"{fp32_path} was not exported by centernet (no {META_CONFIG} metadata)")
    fixed = None if json.loads(meta.get(META_DYNAMIC, "false")) else tuple(json.loads(meta[META_INPUT_SIZE]))
    reader = CalibrationReader(calibration_images(calibration, num_images), meta[META_CONFIG], fixed)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = fp32_path
        if preprocess:
            source = Path(tmp) / "preprocessed.onnx"
            quantization.quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
        float_nodes = excluded_nodes(onnx.load(str(source)), exclude)
        calibrate = {"minmax": quantization.CalibrationMethod.MinMax,
                     "entropy": quantization.CalibrationMethod.Entropy,
                     "percentile": quantization.CalibrationMethod.Percentile}[method]
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            quantization.quantize_static(
                str(source), str(out_path), reader, quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=list(QUANT_OP_TYPES), per_channel=per_channel,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                nodes_to_exclude=float_nodes, calibrate_method=calibrate,
                extra_options={"CalibStridedMinMax": _chunk(len(reader))})
    quantized = onnx.load(str(out_path))
    meta[META_QUANTIZATION] = json.dumps(_summary(method, per_channel, len(reader), exclude, float_nodes))
    del quantized.metadata_props[:]
    for key, value in meta.items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(quantized, str(out_path))
    return out_path


def _summary(method: str, per_channel: bool, images: int, exclude: Sequence[str],
             float_nodes: list[str]) -> dict[str, Any]:
    return {"format": "QDQ", "activations": "uint8", "weights": "int8", "method": method,
            "per_channel": per_channel, "calibration_images": images, "exclude": list(exclude),
            "float_nodes": len(float_nodes)}
