"""Alert rules over GPU samples: a rule fires when its condition has held for ``for_s`` seconds,
once per episode (it re-arms when the condition clears). A fired alert becomes an ``alerts`` row
with ``state='firing'`` and a log line; when its condition clears, a second row with
``state='resolved'`` (same node, GPU and rule) closes the episode, so readers can tell firing from
resolved and how long each episode lasted."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("ffray.telemetry")


@dataclass(frozen=True)
class Rule:
    name: str
    field: str  # a gpu-row field, or "mem_pct"
    op: str  # ">" or "is_true"
    threshold: float = 0.0
    for_s: float = 0.0


DEFAULT_RULES = (
    Rule("gpu_util_high", "util_gpu", ">", 95.0, 10.0),
    Rule("gpu_memory_high", "mem_pct", ">", 90.0, 0.0),
    Rule("gpu_temperature_high", "temp_c", ">", 80.0, 0.0),
    Rule("gpu_throttled", "throttled", "is_true", 0.0, 0.0),
)


def parse_rules(specs: list[str]) -> tuple[Rule, ...]:
    """``NAME:FIELD>VALUE[@SECONDS]`` strings (e.g. ``hot:temp_c>85@30``)."""
    from ffray.errors import FFrayError

    rules = []
    for spec in specs:
        try:
            name, rest = spec.split(":", 1)
            cond, _, dur = rest.partition("@")
            field, value = cond.split(">", 1)
            rules.append(Rule(name, field.strip(), ">", float(value), float(dur or 0)))
        except ValueError:
            raise FFrayError(f"bad alert rule {spec!r}; use NAME:FIELD>VALUE[@SECONDS]") from None
    return tuple(rules)


class AlertEngine:
    def __init__(self, rules: tuple[Rule, ...] = DEFAULT_RULES):
        self.rules = rules
        self._since: dict[tuple[str, str], float] = {}
        self._fired: set[tuple[str, str]] = set()

    def check(self, gpu_rows: list[dict]) -> list[dict]:
        out = []
        for row in gpu_rows:
            t = row["ts"].timestamp()
            for r in self.rules:
                v = _value(row, r.field)
                key = (row["gpu_uuid"], r.name)
                on = v is not None and (bool(v) if r.op == "is_true" else v > r.threshold)
                if not on:
                    self._since.pop(key, None)
                    if key in self._fired:
                        self._fired.discard(key)
                        out.append(_row(row, r, v, "resolved", f"{r.name}: GPU {row['gpu_index']} "
                                        f"({row['gpu_uuid']}) on {row['node']}: resolved"))
                    continue
                start = self._since.setdefault(key, t)
                if t - start >= r.for_s and key not in self._fired:
                    self._fired.add(key)
                    msg = (f"{r.name}: GPU {row['gpu_index']} ({row['gpu_uuid']}) on {row['node']}: "
                           f"{r.field}={float(v):g}" + (f" > {r.threshold:g}" if r.op == ">" else "")
                           + (f" for {r.for_s:g} s" if r.for_s else ""))
                    log.warning("alert %s", msg)
                    out.append(_row(row, r, v, "firing", msg))
        return out


def _row(row: dict, rule: Rule, value, state: str, message: str) -> dict:
    return {k: row.get(k) for k in ("schema_version", "ts", "node", "ray_node", "gpu_uuid", "gpu_index")} | {
        "rule": rule.name, "value": None if value is None else float(value), "threshold": rule.threshold,
        "state": state, "message": message}


def _value(row: dict, field: str):
    if field == "mem_pct":
        used, total = row.get("mem_used_bytes"), row.get("mem_total_bytes")
        return None if not used or not total else 100.0 * used / total
    return row.get(field)
