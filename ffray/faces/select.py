"""Which detected faces to swap (pure functions)."""

from __future__ import annotations

from ffray.errors import FFrayError
from ffray.faces.align import Face

MODES = ("many", "one")
ORDERS = ("largest", "left-right", "right-left", "top-bottom", "best")


def order_faces(faces: list[Face], order: str) -> list[Face]:
    keys = {"largest": lambda f: -f.area, "left-right": lambda f: f.box[0],
            "right-left": lambda f: -f.box[2], "top-bottom": lambda f: f.box[1],
            "best": lambda f: -f.score}
    if order not in keys:
        raise FFrayError(f"unknown face order {order!r}; choose from {', '.join(ORDERS)}")
    return sorted(faces, key=keys[order])


def select_faces(faces: list[Face], mode: str = "many", order: str = "largest") -> list[Face]:
    if mode not in MODES:
        raise FFrayError(f"unknown --select {mode!r}; choose from {', '.join(MODES)}")
    ordered = order_faces(faces, order)
    return ordered[:1] if mode == "one" else ordered
