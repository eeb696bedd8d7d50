"""House rules the code itself can be checked for: no import circles between ffray's modules
(counting imports inside functions too), and modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ffray", "dashboard")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        package = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                o = owner(t)
                if o and o != m:
                    graph[m].add(o)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    graph = import_graph()
    assert "ffray.faces.pipeline" in graph["ffray.engine.build"]  # the scan sees lazy imports
    assert cycles(graph) == []


def test_the_worker_engine_does_not_import_the_cluster_layer():
    graph = import_graph()
    for m, deps in graph.items():
        if m.startswith(("ffray.engine", "ffray.faces", "ffray.models", "ffray.video")):
            assert not {d for d in deps if d.startswith("ffray.cluster")}, m


def test_modules_stay_readable():
    big = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > 450}
    assert not big


def layer_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports across the analytics layers: the telemetry package writes the Parquet layout and
    imports nothing from ``ffray.analytics`` (which reads and attributes it); the dashboard reads
    only through ``ffray.analytics`` (besides ``ffray.errors`` and ``ffray.settings``)."""
    allowed = ("ffray.analytics", "ffray.errors", "ffray.settings")
    bad = []
    for m, deps in graph.items():
        for d in sorted(deps):
            if m.startswith("ffray.telemetry") and d.startswith("ffray.analytics"):
                bad.append((m, d))
            if m.startswith("dashboard") and d.startswith("ffray") and not d.startswith(allowed):
                bad.append((m, d))
    return bad


def test_the_layer_checker_finds_the_imports_it_forbids():
    graph = {"ffray.telemetry.spans": {"ffray.analytics.costs", "ffray.telemetry.schema"},
             "ffray.telemetry.cli": {"ffray.analytics.source"},
             "dashboard.data": {"ffray.telemetry.sink", "ffray.analytics.source", "dashboard.figures"},
             "ffray.analytics.source": {"ffray.telemetry.sink"}}
    assert layer_violations(graph) == [("ffray.telemetry.spans", "ffray.analytics.costs"),
                                       ("ffray.telemetry.cli", "ffray.analytics.source"),
                                       ("dashboard.data", "ffray.telemetry.sink")]


def test_telemetry_does_not_import_analytics_and_the_dashboard_reads_through_analytics():
    graph = import_graph()
    assert "ffray.telemetry.sink" in graph["ffray.analytics.source"]  # analytics reads telemetry's layout
    assert layer_violations(graph) == []


def test_a_workers_face_pipeline_imports_neither_onnx_nor_scipy():
    """Start-up: the worker builds its face pipeline from prepared graphs (and the emap from the
    node's cache), so the graph library (onnx: ~0.6 s to import) and scipy (~0.4 s, the dense
    warp's triangulation) stay out of its imports; they load where they are used."""
    import subprocess
    import sys

    code = ("import sys, ffray.cluster.worker, ffray.engine.build, ffray.faces.pipeline, "
            "ffray.faces.loader, ffray.models.gpu_loader, ffray.engine.ops_gpu; "
            "print(sorted(m for m in ('onnx', 'scipy.spatial', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
