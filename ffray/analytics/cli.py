"""``ffray analyze``: jobs, chunks, capacity, predict (placeholder until built)."""

from __future__ import annotations


def add_parser(sub) -> None:
    a = sub.add_parser("analyze", help="per-job costs, per-chunk attribution and capacity planning")
    a.add_argument("what", choices=["jobs", "chunks", "capacity", "predict"])
    a.add_argument("--data-dir")


def run(args) -> int:
    from ffray.errors import FFrayError

    raise FFrayError("ffray analyze is not built yet")
