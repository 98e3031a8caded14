"""How the training path reads: trace one tiny ``runs.train`` (synthetic data, 2 steps, one validation) and list
the distinct calls between package functions of different layers, and those that climb back up (a function of
a lower layer calling one of a higher layer: a callback, a hook, an object passed down).

Calls made through library code (a DataLoader calling ``__getitem__``, ``nn.Module.__call__`` calling
``forward``) count from the nearest package function below them on the stack. Layers, lowest first, follow
tests/test_layering.py.

    python benchmarks/trace_layers.py            # counts and the climbs
    python benchmarks/trace_layers.py --all      # every cross-layer call as well
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter

from centernet.app import runs
from centernet.data import make_synthetic_dataset
from centernet.presets import get_preset

RANK = {"ops": 0, "config": 0, "registry": 0, "viz": 1, "models": 1, "data": 1, "evaluation": 2, "tasks": 3,
        "weights": 4, "engine": 5, "export": 6, "presets": 6, "builders": 7, "runs": 8, "demo": 9, "api": 9,
        "cli": 10}
MAX_WALK = 12  # frames searched below a call for the package function that made it


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "centernet" or len(parts) < 2:
        return None
    return parts[2] if parts[1] == "app" and len(parts) > 2 else parts[1]


def trace_training() -> Counter:
    """Distinct (caller, callee) package-function pairs of different layers seen while training, with counts."""
    edges: Counter = Counter()

    def profile(frame, event, arg):
        if event != "call":
            return
        callee = layer(frame.f_globals.get("__name__", ""))
        if callee is None:
            return
        back = frame.f_back
        for _ in range(MAX_WALK):
            if back is None:
                return
            caller = layer(back.f_globals.get("__name__", ""))
            if caller is not None:
                break
            back = back.f_back
        else:
            return
        if caller != callee:
            edges[(f"{back.f_globals['__name__']}.{back.f_code.co_qualname}", caller,
                   f"{frame.f_globals['__name__']}.{frame.f_code.co_qualname}", callee)] += 1

    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(tmp, num_train=8, num_val=2, image_size=(96, 96))
        cfg = get_preset("ctdet_cpu_small")
        cfg.data.train, cfg.data.val = str(data["train_ann"]), str(data["val_ann"])
        cfg.train.out_dir = f"{tmp}/run"
        cfg.train.epochs, cfg.train.batch_size, cfg.data.num_workers = 1, 4, 0
        cfg.data.input_size = (64, 64)
        cfg.train.val_interval = 1
        cfg.train.lr_steps = []
        sys.setprofile(profile)
        try:
            runs.train(cfg, explicit_out=True, progress=False)
        finally:
            sys.setprofile(None)
    return edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="print every cross-layer call, not only the climbs")
    args = parser.parse_args()
    edges = trace_training()
    climbs = {e: n for e, n in edges.items() if RANK[e[3]] > RANK[e[1]]}
    print(f"cross-layer calls (distinct caller -> callee): {len(edges)}; climbing back up: {len(climbs)}")
    for (caller, _, callee, _), n in sorted(edges.items() if args.all else climbs.items()):
        print(f"  {'UP ' if (caller, callee) in {(c[0], c[2]) for c in climbs} else '   '}{caller} -> {callee}  x{n}")


if __name__ == "__main__":
    main()
