"""Markdown rows for docs/benchmarks.md from `bench_swap.py` reports (the JSON files that
`scripts/device_engine.sh` writes under $OUT, one per `bench NAME ...`).

    python scripts/bench_table.py OUT/d1.json OUT/w1.json ... [--gpu-ceiling 244.8]

One row a report, in the order given, with the columns of the GPU-worker passes: frames/s
(processing, steady, whole job), the transcode ceilings before / after (240 frames and the whole
input), the shares of them, host CPU, core-ms a frame (host / worker / codec processes), GPU
busy, encoder busy, workers ready, and the set-up phases. ``--gpu-ceiling`` (the models' ceiling,
e.g. 6 faces) adds the share of it. A value a report lacks prints as "–".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("run", "processing frames/s", "steady", "whole job", "ceiling (first frames): before / after",
           "whole input (rates summed): before / after", "share processing (steady) of the first",
           "of the whole input", "host CPU", "core-ms a frame: host / worker / codec",
           "GPU util steady", "encoder busy", "workers ready")


def _num(x, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _pair(xs) -> str:
    return "–" if not xs else " / ".join(_num(x) for x in xs)


def row(name: str, r: dict, gpu_ceiling: float | None = None) -> list[str]:
    """One report as table cells (pure)."""
    cm = r.get("core_ms_per_frame_processing") or {}
    share = f"{_pct(r.get('share_processing'))} ({_pct(r.get('share_steady'))})"
    if gpu_ceiling:
        steady = r.get("fps_steady")
        share += (f"; of the GPU's {gpu_ceiling:g}: {_pct(r['fps_processing'] / gpu_ceiling)}"
                  f" ({_pct(steady / gpu_ceiling if steady else None)})")
    return [name, _num(r.get("fps_processing")), _num(r.get("fps_steady")),
            f"**{_num(r.get('fps_whole_job'))}**", _pair(r.get("ceiling_transcode_before_after")),
            _pair(r.get("ceiling_whole_sum_of_rates")), share,
            f"{_pct(r.get('share_whole_processing'))} ({_pct(r.get('share_whole_steady'))})",
            _num(r.get("host_cpu_percent_processing"), "{:.0f} %"),
            " / ".join(_num(cm.get(k)) for k in ("host", "worker", "codec")) if cm else "–",
            _num(r.get("gpu_util_mean_steady"), "{:.0f} %"), _num(r.get("encoder_busy_share"), "{:.2f}"),
            _num(r.get("workers_ready_s"), "{:.2f} s")]


def table(reports: list[tuple[str, dict]], gpu_ceiling: float | None = None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(n, r, gpu_ceiling)) + " |" for n, r in reports]
    phases = [(n, p) for n, r in reports for p in (r.get("worker_setup_phases") or [])]
    if phases:
        lines.append("")
        lines += [f"- {n} set-up: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()) for n, p in phases]
    return "\n".join(lines)


def load(path: Path) -> dict:
    """A report: the JSON object in the file (a line bench_swap printed before it is skipped)."""
    text = path.read_text()
    return json.JSONDecoder().raw_decode(text[text.index("{"):])[0]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--gpu-ceiling", type=float, default=None)
    a = p.parse_args(argv)
    print(table([(f.stem, load(f)) for f in a.reports], a.gpu_ceiling))


if __name__ == "__main__":
    main()
