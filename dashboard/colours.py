"""One colour per GPU (or node, worker process) everywhere: a pure function of its key.

``series_colour(key)`` hashes the key (BLAKE2b: stable across processes, unlike ``hash``; CRC-32
was tried first, but being linear it gave near keys such as ``GPU-n0-00``/``GPU-n1-01`` related
low bits and look-alike colours) into
colorcet's ``glasbey_dark`` palette: 256 categorical colours chosen to be told apart on a white
background. The same GPU UUID gets the same colour on every chart of every page; two keys share a
colour only when their hashes collide (for 16 GPUs, about a 1 in 3 chance that some pair does:
the legend names each line, and the node x GPU heatmap does not rely on colour).
"""

from __future__ import annotations

import hashlib

from colorcet import glasbey_dark

PALETTE: tuple[str, ...] = tuple(glasbey_dark)


def series_colour(key: str | None) -> str:
    """The colour of a GPU UUID, node name or process key (grey for None)."""
    if not key:
        return "#7f7f7f"
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    return PALETTE[int.from_bytes(digest, "big") % len(PALETTE)]
