"""``ffray dashboard``: serve the Dash app over a data dir (placeholder until built)."""

from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("dashboard", help="serve the web dashboard (GPU trends, jobs, alerts, capacity)")
    d.add_argument("--data-dir")


def run(args) -> int:
    from ffray.errors import FFrayError

    raise FFrayError("ffray dashboard is not built yet")
