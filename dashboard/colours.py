"""One colour per GPU (or node, worker process) everywhere: a pure function of its key.

``series_colour(key)`` hashes the key (CRC-32: stable across processes, unlike ``hash``) into
colorcet's ``glasbey_dark`` palette: 256 categorical colours chosen to be told apart on a white
background. The same GPU UUID gets the same colour on every chart of every page; two keys share a
colour only when their hashes collide (for 16 GPUs, about a 1 in 3 chance that some pair does:
the legend names each line, and the node x GPU heatmap does not rely on colour).
"""

from __future__ import annotations

import zlib

from colorcet import glasbey_dark

PALETTE: tuple[str, ...] = tuple(glasbey_dark)


def series_colour(key: str | None) -> str:
    """The colour of a GPU UUID, node name or process key (grey for None)."""
    if not key:
        return "#7f7f7f"
    return PALETTE[zlib.crc32(str(key).encode()) % len(PALETTE)]


gpu_colour = series_colour  # the job pages call this with a GPU's UUID
