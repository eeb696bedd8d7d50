"""GPU classes: what a GPU model is called in NVML, how much memory it has, how fast it runs this
workload relative to an H100, and what an hour of it costs.

``load_classes(specs_path=None, prices_path=None)`` returns the table as a list of plain dicts
(JSON-friendly), one per class::

    {"name": "H100", "match": ["H100"], "memory_gib": 80, "relative_throughput": 1.0,
     "price_per_hour": 3.0, "source": "default"}

``match`` holds case-insensitive regular expressions searched in the NVML device name
("H100" matches "NVIDIA H100 80GB HBM3"; "\\bL4\\b" does not match "NVIDIA L40S"). When several
classes match, the longest pattern wins. A GPU model that matches no class is a class of its own,
named by its NVML name, with no memory, throughput or price: costs on it are unknown (None),
never 0.

``--gpu-specs FILE`` (JSON: a list of class dicts, or ``{"classes": [...]}``) adds classes or
overrides fields of existing ones (same ``name``). ``--prices FILE`` (JSON: ``{"H100": 2.49,
"NVIDIA A10G": 0.9}``) sets $/GPU-hour by class name or by NVML name (an NVML name that matches
no class becomes a class with that price only). The default prices are illustrative on-demand
prices (see docs/analytics.md for where they come from): pass your own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ffray.errors import FFrayError

# name, NVML-name patterns, memory GiB, relative throughput (H100 = 1), $/GPU-hour (illustrative)
DEFAULT_CLASSES = [
    ("H200", [r"H200"], 141, 1.15, 3.8),
    ("H100", [r"H100"], 80, 1.0, 3.0),
    ("A100-80GB", [r"A100.*80\s*G"], 80, 0.6, 1.6),
    ("A100-40GB", [r"A100.*40\s*G"], 40, 0.6, 1.2),
    ("L40S", [r"L40S"], 48, 0.55, 1.0),
    ("A10G", [r"\bA10G\b"], 24, 0.35, 1.0),
    ("A10", [r"\bA10\b"], 24, 0.35, 0.9),
    ("L4", [r"\bL4\b"], 24, 0.3, 0.8),
    ("T4", [r"\bT4\b"], 16, 0.15, 0.53),
]
FIELDS = ("name", "match", "memory_gib", "relative_throughput", "price_per_hour")


def default_classes() -> list[dict]:
    return [{"name": n, "match": list(m), "memory_gib": float(g), "relative_throughput": float(r),
             "price_per_hour": float(p), "source": "default"} for n, m, g, r, p in DEFAULT_CLASSES]


def load_classes(specs_path=None, prices_path=None) -> list[dict]:
    """The default classes, extended/overridden by ``specs_path``, with prices from
    ``prices_path`` (both JSON files, both optional). Bad files raise ``FFrayError``."""
    classes = default_classes()
    if specs_path:
        classes = merge_specs(classes, _read_json(specs_path, "--gpu-specs"), str(specs_path))
    if prices_path:
        classes = merge_prices(classes, _read_json(prices_path, "--prices"), str(prices_path))
    return classes


def _read_json(path, option: str):
    try:
        return json.loads(Path(path).expanduser().read_text())
    except OSError as e:
        raise FFrayError(f"{option}: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise FFrayError(f"{option}: {path} is not JSON: {e}") from None


def _number(value, what: str, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or (positive and value == 0):
        raise FFrayError(f"{where}: {what} must be a {'positive' if positive else 'non-negative'} "
                         f"number, got {value!r}")
    return float(value)


def merge_specs(classes: list[dict], specs, where: str) -> list[dict]:
    """``classes`` with the entries of ``specs`` added (new name) or merged (existing name)."""
    entries = specs.get("classes") if isinstance(specs, dict) else specs
    if not isinstance(entries, list):
        raise FFrayError(f"{where}: expected a list of GPU classes (or {{\"classes\": [...]}})")
    out = [dict(c) for c in classes]
    by_name = {c["name"]: c for c in out}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
            raise FFrayError(f"{where}: every GPU class needs a \"name\", got {e!r}")
        unknown = set(e) - set(FIELDS)
        if unknown:
            raise FFrayError(f"{where}: unknown field(s) {sorted(unknown)} in class {e['name']!r} "
                             f"(fields: {', '.join(FIELDS)})")
        c = by_name.get(e["name"])
        if c is None:
            c = {"name": e["name"], "match": [re.escape(e["name"])], "memory_gib": None,
                 "relative_throughput": None, "price_per_hour": None}
            out.append(c)
            by_name[c["name"]] = c
        if "match" in e:
            m = e["match"] if isinstance(e["match"], list) else [e["match"]]
            for p in m:
                try:
                    re.compile(str(p))
                except re.error as err:
                    raise FFrayError(f"{where}: bad match pattern {p!r} in {e['name']!r}: {err}") from None
            c["match"] = [str(p) for p in m]
        for k, positive in (("memory_gib", True), ("relative_throughput", True), ("price_per_hour", False)):
            if k in e:
                c[k] = None if e[k] is None else _number(e[k], k, f"{where} ({e['name']})", positive)
        c["source"] = where
    return out


def merge_prices(classes: list[dict], prices, where: str) -> list[dict]:
    """``classes`` with $/GPU-hour from ``prices`` (class name or NVML name -> price)."""
    if not isinstance(prices, dict):
        raise FFrayError(f"{where}: expected {{\"GPU class or NVML name\": dollars per GPU-hour}}")
    out = [dict(c) for c in classes]
    for key, value in prices.items():
        price = _number(value, f"the price of {key!r}", where)
        c = next((c for c in out if c["name"] == key), None) or \
            next((c for c in out if c["name"] == classify(key, out)), None)
        if c is None:
            c = {"name": key, "match": [re.escape(key)], "memory_gib": None,
                 "relative_throughput": None, "price_per_hour": None}
            out.append(c)
        c["price_per_hour"] = price
        c["price_source"] = where
    return out


def classify(gpu_name: str | None, classes: list[dict]) -> str | None:
    """The class of an NVML device name: the class whose matching pattern is longest; the name
    itself when no class matches; None for None."""
    if gpu_name is None:
        return None
    best, length = None, -1
    for c in classes:
        for p in c.get("match") or []:
            if len(p) > length and re.search(p, gpu_name, re.IGNORECASE):
                best, length = c["name"], len(p)
    return best if best is not None else gpu_name


def by_name(classes: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in classes}


def with_prices(jobs: pa.Table, classes: list[dict], model_column: str = "gpu_model") -> pa.Table:
    """``jobs`` (e.g. ``job_costs`` output) plus ``gpu_class``, ``price_per_hour``, ``cost``
    (GPU-seconds / 3600 x price) and ``cost_per_1000_frames``; None where the price is unknown."""
    names = jobs[model_column]
    uniq = pc.unique(names).to_pylist()
    cls = {n: classify(n, classes) for n in uniq}
    table = by_name(classes)
    price = {n: (table.get(cls[n]) or {}).get("price_per_hour") for n in uniq}
    idx = pc.index_in(names, value_set=pa.array(uniq, pa.string()))
    gpu_class = pc.take(pa.array([cls[n] for n in uniq], pa.string()), idx)
    per_hour = pc.take(pa.array([price[n] for n in uniq], pa.float64()), idx)
    cost = pc.multiply(pc.divide(pc.cast(jobs["gpu_seconds"], pa.float64()), 3600.0), per_hour)
    frames = pc.cast(jobs["frames"], pa.float64())
    per_1000 = pc.if_else(pc.greater(frames, 0.0),
                          pc.multiply(pc.divide(cost, frames), 1000.0), pa.scalar(None, pa.float64()))
    return jobs.append_column("gpu_class", gpu_class).append_column("price_per_hour", per_hour) \
        .append_column("cost", cost).append_column("cost_per_1000_frames", per_1000)
