"""The package's layers import downwards only, and its modules form no import cycle (read with ast, lazy
imports inside functions included)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "centernet"

# subpackage or top-level module -> the parts of the package it must never import
FORBIDDEN = {
    "ops": {"models", "data", "tasks", "engine", "evaluation", "export", "weights", "viz", "builders", "runs", "api",
            "cli", "demo", "presets"},
    "models": {"tasks", "data", "engine", "evaluation", "export", "builders", "cli", "demo", "presets", "weights",
               "viz"},
    "data": {"tasks", "engine", "evaluation", "export", "builders", "cli", "demo", "models", "weights", "viz"},
    "evaluation": {"tasks", "engine", "export", "builders", "cli", "demo", "models", "weights", "viz"},
    # viz (pictures) draws what it is given: tasks and the engine call it, never the other way round
    "viz": {"models", "tasks", "engine", "evaluation", "export", "weights", "builders", "runs", "api", "cli", "demo",
            "presets"},
    "tasks": {"engine", "export", "builders", "cli", "demo", "weights"},
    # weights (catalogue, download, reading, fitting, loaders) sit above models and tasks, below the engine:
    # the engine reads checkpoints and fits tensors through them, never the other way round
    "weights": {"engine", "export", "builders", "cli", "demo", "runs", "api", "presets", "evaluation", "data"},
    "engine": {"export", "builders", "cli", "demo", "runs", "api"},
    "export": {"cli", "demo", "runs", "api"},
    "builders": {"export", "cli", "demo", "runs", "api"},
    "runs": {"cli", "demo", "api"},
    "demo": {"cli", "api"},
    "api": {"cli", "demo"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the centernet modules ``path`` imports (anywhere in the file)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("centernet")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("centernet"):
                found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}  # "from . import zoo"
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files} for name, path in files.items()}


def _part(module: str) -> str:
    """The layer of ``module``: its subpackage or top-level module; the application layer (``app/``: builders,
    runs, demo) by module, as its three modules sit at different heights."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "app":
        return parts[2]
    return parts[1] if len(parts) > 1 else ""


def test_layers_import_downwards_only():
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            if _part(target) in FORBIDDEN.get(_part(module), set()):
                bad.append(f"{module} -> {target}")
    assert not bad, "layering violations:\n" + "\n".join(sorted(bad))


def test_no_import_cycles_between_modules():
    graph = _graph()
    # a package's __init__ re-exporting its own modules is not a cycle between concepts
    edges = {m: {t for t in ts if t != m and not (t.startswith(m + ".") and PACKAGE.joinpath(*m.split(".")[1:], "__init__.py").exists())}
             for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_ops_is_the_lowest_layer():
    """The numeric core (ops/) imports nothing of the package but itself and config constants."""
    bad = [f"{module} -> {target}" for module, targets in _graph().items() if _part(module) == "ops"
           for target in targets if _part(target) not in ("ops", "config")]
    assert not bad, "ops imports from above:\n" + "\n".join(sorted(bad))


def test_the_engine_only_reads_and_fits_weights():
    """engine/ reads files and fits tensors through weights/ (and reports its download errors); the loaders by
    name (zoo, ImageNet, initial weights) are the run code's business."""
    allowed = {"centernet.weights.read", "centernet.weights.fit", "centernet.weights.download"}
    bad = [f"{module} -> {target}" for module, targets in _graph().items() if _part(module) == "engine"
           for target in targets if _part(target) == "weights" and target not in allowed]
    assert not bad, "engine imports weights loaders:\n" + "\n".join(sorted(bad))


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The reader must catch an import inside a function, relative or absolute."""
    probe = PACKAGE / "models" / "_probe_layering.py"
    probe.write_text("def f():\n    from ..tasks import base\n    import centernet.engine.trainer\n")
    try:
        found = _imports(probe)
    finally:
        probe.unlink()
    assert {"centernet.tasks", "centernet.tasks.base", "centernet.engine.trainer"} <= found


def test_no_task_names_outside_tasks():
    """engine/, cli.py, app/builders.py and the shared run code (app/runs.py, api.py, the loaders of weights/) never
    switch on a task's name (weights/catalogue.py, which is data, names each file's task)."""
    names = ("ctdet", "multi_pose", "ddd", "cornernet")
    offenders = []
    shared = [PACKAGE / "cli.py", PACKAGE / "api.py", PACKAGE / "app" / "builders.py", PACKAGE / "app" / "runs.py"]
    shared += [p for p in PACKAGE.joinpath("weights").glob("*.py") if p.name != "catalogue.py"]
    for path in [*PACKAGE.joinpath("engine").rglob("*.py"), *shared]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{path.name}: {node.value!r}")
    assert not offenders, offenders


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])


def test_training_path_reads_top_down():
    """Following one tiny training from ``runs.train``, a lower layer calls back up only where the design says so:
    the data pipeline asks the task to encode targets and describe a sample (at most 10 such calls)."""
    import importlib.util

    path = PACKAGE.parents[1] / "benchmarks" / "trace_layers.py"
    spec = importlib.util.spec_from_file_location("trace_layers", path)
    trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trace)
    edges = trace.trace_training()
    climbs = [e for e in edges if trace.RANK[e[3]] > trace.RANK[e[1]]]
    assert len(edges) > 20  # the trace saw the engine drive data, model, task and evaluation
    assert len(climbs) <= 10, climbs
    assert {(caller_layer, callee_layer) for _, caller_layer, _, callee_layer in climbs} <= {("data", "tasks")}
