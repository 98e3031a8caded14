"""ONNX Runtime vs PyTorch eager on the CPU: median latency of one forward (activated maps) at batch 1.

For each architecture: export to ONNX (fixed size) once per DCN form (``--dcn-ops``: the DeformConv node, opset
19, and the traced gather form, opset 17; an architecture without DCNs is exported once), check the outputs
agree with eager, then time eager and every onnxruntime session in the same process with the same thread count,
in alternating rounds of 5 runs so that a noisy neighbour hurts all of them; medians of the round medians.
``--profile`` adds onnxruntime's per-node profile of each session: the time per op type and, for the DCN
ops, per layer shape.

    PYTHONPATH=src python benchmarks/bench_onnx.py --archs res_18 resdcn_18 dla_34 --size 512 --runs 15
    PYTHONPATH=src python benchmarks/bench_onnx.py --archs hourglass --runs 5 --profile
"""
from __future__ import annotations

import argparse
import collections
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
from centernet.models import ARCHS
from timing import median_seconds

FLAGS = re.compile(r"^(avx\w*|fma|f16c|amx\w*|sse4_2)$")


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
            times[name].append(1000 * median_seconds(lambda: fn(x), 5, 1)[0])
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {cpu_line()}")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, input "
          f"{args.size}x{args.size}, batch 1, median of {max(args.runs // 5, 1)} alternating rounds of 5 runs "
          f"(min-max of the round medians)")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            if arch not in ARCHS:
                print(f"{arch:12s} not registered; skipped")
                continue
            r = bench(arch, args.size, args.runs, args.threads, Path(tmp), args.dcn_ops, args.profile)
            eager_ms = r["ms"]["eager"]
            lo, hi = r["spread"]["eager"]
            print(f"{arch:12s} eager {eager_ms:8.1f} ms ({lo:.0f}-{hi:.0f})", flush=True)
            for name, item in r["info"].items():
                lo, hi = r["spread"][name]
                print(f"{'':12s} {name:16s} {r['ms'][name]:8.1f} ms ({lo:.0f}-{hi:.0f})  "
                      f"{eager_ms / r['ms'][name]:5.2f}x eager  max|diff| {item['diff']:.1e}  export "
                      f"{item['export_s']:.1f} s  {item['mb']:.1f} MB  {item['ops']}", flush=True)
            for line in r["profile"]:
                print(line, flush=True)


if __name__ == "__main__":
    main()
