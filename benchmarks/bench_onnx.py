"""ONNX Runtime vs PyTorch eager on the CPU: median latency of one forward (activated maps) at batch 1.

For each architecture: export to ONNX (fixed size) once per DCN form (``--dcn-ops``: the DeformConv node, opset
19, and the traced gather form, opset 17; an architecture without DCNs is exported once), check the outputs
agree with eager, then time eager and every onnxruntime session in the same process with the same thread count,
in alternating rounds of 5 runs so that a noisy neighbour hurts all of them; medians of the round medians.
``--profile`` adds onnxruntime's per-node profile of each session: the time per op type and, for the DCN
ops, per layer shape. ``--cpu-time`` (with ``--threads 1``) times CPU seconds instead of wall time: figures that
other processes on a shared machine do not inflate.

    PYTHONPATH=src python benchmarks/bench_onnx.py --archs res_18 resdcn_18 dla_34 --size 512 --runs 15
    PYTHONPATH=src python benchmarks/bench_onnx.py --archs hourglass --runs 5 --profile
    PYTHONPATH=src python benchmarks/bench_onnx.py --layers   # one DCN layer: DeformConv vs Conv vs eager

``--layers`` times single layers of dla_34's and resdcn_18's DCN shapes at 512x512 input (offsets of about a
pixel, sigmoid masks): onnxruntime's DeformConv node, onnxruntime's Conv of the same shape (what the layer would
cost without deformation) and the eager DCN (after its offset conv), alternating, medians.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

from centernet.config import ExperimentConfig
from centernet.app.builders import model_from_config, task_from_config
from centernet.export.onnx import META_DCN_OP, OnnxRunner, export_onnx, read_metadata
from centernet.engine.inference import model_runner
from centernet.models import ARCHS, prefers_channels_last
from timing import median_seconds

FLAGS = re.compile(r"^(avx\w*|fma|f16c|amx\w*|sse4_2)$")
CLOCK = [time.perf_counter]  # time.process_time with --cpu-time


def cpu_line() -> str:
    """The CPU model and its vector flags (from /proc/cpuinfo, as lscpu shows them)."""
    model, flags = platform.processor() or "?", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = [f for f in value.split() if FLAGS.match(f)]
                break
    except OSError:
        pass
    return f"{model}; flags {' '.join(flags) or '?'}"


def ops_line(path: Path) -> str:
    ops = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    return f"{ops['DeformConv']} DeformConv, {ops['Gather']} Gather, {ops['MatMul']} MatMul"


def profile(path: Path, x: torch.Tensor, threads: int, runs: int, workdir: Path) -> list[str]:
    """onnxruntime's node profile of ``runs`` forwards: ms per forward by op type, and the DCN ops by shape."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / path.stem)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    session.run(None, feed)  # warm-up (counted out below by taking the per-run median share)
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = collections.defaultdict(float)
    by_shape: dict[tuple, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        op = args.get("op_name", "?")
        us = float(e.get("dur", 0))
        by_op[op] += us
        if op in ("DeformConv",):
            shapes = [list(s.values())[0] for s in args.get("input_type_shape", [])]
            out = [list(s.values())[0] for s in args.get("output_type_shape", [])]
            x_shape, w_shape = shapes[0], shapes[1]
            key = (op, x_shape[1], w_shape[0], x_shape[2], x_shape[3], out[0][2], out[0][3])
            by_shape[key].append(us)
    total = sum(by_op.values())
    per_run = runs + 1
    lines = [f"  profile {path.name}: {total / per_run / 1000:.1f} ms of kernels per forward"]
    for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:8]:
        lines.append(f"    {op:22s} {us / per_run / 1000:8.1f} ms  {100 * us / total:5.1f}%")
    for (op, cin, cout, h, w, ho, wo), times in sorted(by_shape.items(), key=lambda kv: -sum(kv[1])):
        n = len(times) // per_run
        lines.append(f"    {op} {cin}->{cout} @ {h}x{w}->{ho}x{wo}: {n} layer(s), "
                     f"{sum(times) / per_run / 1000:.1f} ms per forward ({sum(times) / len(times) / 1000:.2f} ms each)")
    return lines


# (in, out, input side) of the DCNs at 512x512 input: dla_34's IDA levels and resdcn_18's up-sampling neck
LAYER_SHAPES = [(64, 64, 128), (128, 64, 64), (128, 128, 64), (256, 128, 32), (256, 256, 32), (512, 256, 16)]


def one_node(op: str, threads: int, shapes: dict[str, list[int]], **attrs) -> ort.InferenceSession:
    """A session of a one-node model ``op`` (inputs named and shaped by ``shapes``, output Y)."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in shapes.items()]
    node = helper.make_node(op, list(shapes), ["Y"], **attrs)
    graph = helper.make_graph([node], op, inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def bench_layers(threads: int, runs: int) -> None:
    from centernet.models.layers.deform_conv import modulated_deform_conv2d

    print(f"{'layer':24s} {'ort DeformConv':>15s} {'ort Conv':>9s} {'ratio':>6s} {'eager DCN':>10s} "
          f"{'eager conv':>11s}  (ms, medians)")
    for cin, cout, side in LAYER_SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, cin, side, side, generator=g)
        w = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        b = torch.zeros(cout)
        offset = torch.randn(1, 18, side, side, generator=g)
        mask = torch.rand(1, 9, side, side, generator=g)
        attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        deform = one_node("DeformConv", threads, {"X": list(x.shape), "W": list(w.shape), "offset": list(offset.shape),
                                                  "B": [cout], "mask": list(mask.shape)}, **attrs)
        conv = one_node("Conv", threads, {"X": list(x.shape), "W": list(w.shape), "B": [cout]}, **attrs)
        feed = {"X": x.numpy(), "W": w.numpy(), "B": b.numpy()}
        deform_feed = {**feed, "offset": offset.numpy(), "mask": mask.numpy()}
        xl = x.contiguous(memory_format=torch.channels_last)  # as the model's layer feeds its sampling
        fns = {"deform": lambda: deform.run(None, deform_feed), "conv": lambda: conv.run(None, feed),
               "eager": lambda: modulated_deform_conv2d(xl, offset, mask, w, b, 1, 1),
               "eager_conv": lambda: torch.nn.functional.conv2d(x, w, b, 1, 1)}
        times: dict[str, list[float]] = {name: [] for name in fns}
        with torch.no_grad():
            for _ in range(max(runs // 5, 1)):
                for name, fn in fns.items():
                    times[name].append(1000 * median_seconds(fn, 5, 1, CLOCK[0])[0])
        ms = {name: statistics.median(t) for name, t in times.items()}
        print(f"{cin:4d}->{cout:<4d} @ {side:3d}x{side:<3d}      {ms['deform']:15.2f} {ms['conv']:9.2f} "
              f"{ms['deform'] / ms['conv']:5.1f}x {ms['eager']:10.2f} {ms['eager_conv']:11.2f}", flush=True)


def bench(arch: str, size: int, runs: int, threads: int, workdir: Path, dcn_ops: list[str],
          profile_runs: int) -> dict:
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size = arch, (size, size)
    task = task_from_config(cfg)  # COCO: 80 classes
    torch.manual_seed(0)
    model = model_from_config(cfg, task).eval()
    x = torch.randn(1, 3, size, size)

    @torch.no_grad()
    def eager(images):
        return task.activate(model(images)[-1])

    ref = eager(x)
    runners, info = {"eager": eager}, {}
    if prefers_channels_last(arch):  # as eval, predict and the facade run it on a CPU
        fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
        runners["eager channels-last"] = torch.no_grad()(model_runner(fast, task))
    for dcn_op in dcn_ops:
        start = time.perf_counter()
        path = export_onnx(model, task, cfg, workdir / f"{arch}_{dcn_op}.onnx", dcn_op=dcn_op)
        form = read_metadata(path)[META_DCN_OP]
        if form == "none" and any(v["form"] == "none" for v in info.values()):
            continue  # no DCN: one onnxruntime column is enough
        runner = OnnxRunner(path, threads=threads)
        out = runner(x)
        name = f"ort {form}"
        runners[name] = runner
        info[name] = {"form": form, "path": path, "export_s": time.perf_counter() - start,
                      "diff": max(float((ref[k] - out[k]).abs().max()) for k in ref), "ops": ops_line(path),
                      "mb": path.stat().st_size / 2**20}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(runs // 5, 1)):  # alternate short rounds of every backend
        for name, fn in runners.items():
            times[name].append(1000 * median_seconds(lambda: fn(x), 5, 1, CLOCK[0])[0])
    lines = []
    if profile_runs:
        for name, item in info.items():
            lines += profile(item["path"], x, threads, profile_runs, workdir)
    return {"ms": {name: statistics.median(t) for name, t in times.items()},
            "spread": {name: (min(t), max(t)) for name, t in times.items()}, "info": info, "profile": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["res_18", "resdcn_18", "dla_34"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=15, help="timed forwards per backend (in rounds of 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--dcn-ops", nargs="+", default=["gather", "deformconv"], choices=["gather", "deformconv"])
    parser.add_argument("--profile", nargs="?", type=int, const=3, default=0, metavar="RUNS",
                        help="also profile each onnxruntime session over RUNS forwards (default 3)")
    parser.add_argument("--layers", action="store_true", help="time single DCN layers instead (see above)")
    parser.add_argument("--cpu-time", action="store_true", help="CPU seconds instead of wall time (--threads 1)")
    args = parser.parse_args()
    if args.cpu_time:
        if args.threads != 1:
            parser.error("--cpu-time counts every thread's time (spinning included): use it with --threads 1")
        CLOCK[0] = time.process_time
    torch.set_num_threads(args.threads)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {cpu_line()}")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"{'CPU' if args.cpu_time else 'wall'} time, input "
          f"{args.size}x{args.size}, batch 1, median of {max(args.runs // 5, 1)} alternating rounds of 5 runs "
          f"(min-max of the round medians)")
    if args.layers:
        bench_layers(args.threads, args.runs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            if arch not in ARCHS:
                print(f"{arch:12s} not registered; skipped")
                continue
            r = bench(arch, args.size, args.runs, args.threads, Path(tmp), args.dcn_ops, args.profile)
            lo, hi = r["spread"]["eager"]
            print(f"{arch:12s} eager {r['ms']['eager']:8.1f} ms ({lo:.0f}-{hi:.0f})", flush=True)
            if "eager channels-last" in r["ms"]:
                lo, hi = r["spread"]["eager channels-last"]
                print(f"{'':12s} eager channels-last {r['ms']['eager channels-last']:8.1f} ms ({lo:.0f}-{hi:.0f})",
                      flush=True)
            eager_ms = min(r["ms"]["eager"], r["ms"].get("eager channels-last", float("inf")))  # the best eager
            for name, item in r["info"].items():
                lo, hi = r["spread"][name]
                print(f"{'':12s} {name:16s} {r['ms'][name]:8.1f} ms ({lo:.0f}-{hi:.0f})  "
                      f"{eager_ms / r['ms'][name]:5.2f}x the best eager  max|diff| {item['diff']:.1e}  export "
                      f"{item['export_s']:.1f} s  {item['mb']:.1f} MB  {item['ops']}", flush=True)
            for line in r["profile"]:
                print(line, flush=True)


if __name__ == "__main__":
    main()
