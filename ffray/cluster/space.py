"""Free space, checked before any work: an estimate of what a job writes (its encoded chunks in
the ledger, then the output) against what the file systems have free.

The estimate is rough by design (the output's size depends on the content and ``--crf``): the
chunks take about what the selected source video takes, and the output about that again plus
the source's other streams (audio, subtitles), in proportion to the frames selected. So a whole
job needs about twice the input on one file system. A job that still runs out of space fails
in one line and resumes (``ffray.cluster.ledger.writing``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ffray.errors import FFrayError


@dataclass(frozen=True)
class SpaceNeed:
    chunks: int  # bytes the chunks still to run take in the ledger
    output: int  # bytes of the output file

    def to_json(self) -> dict:
        return {"chunks": self.chunks, "output": self.output}


def estimate(video_bytes: int, file_bytes: int, frames: int, selected: int, to_run: int) -> SpaceNeed:
    """``video_bytes``: the source's video packets, ``file_bytes`` the whole file, ``frames`` its
    frames; ``selected`` of them go to the output and ``to_run`` still have to be encoded."""
    per_frame = video_bytes / max(1, frames)
    other = max(0, file_bytes - video_bytes) * selected / max(1, frames)
    return SpaceNeed(chunks=int(per_frame * to_run), output=int(per_frame * selected + other))


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def check_space(need: SpaceNeed, ledger_dir: Path, output_dir: Path,
                free: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free) -> None:
    """Refuse, in one line, a job whose estimate does not fit: the chunks on the ledger's file
    system and the output on the destination's (both on one: the sum)."""
    places = [(_existing(ledger_dir), need.chunks, "chunks"), (_existing(output_dir), need.output, "output")]
    by_fs: dict[int, list] = {}
    for path, n, what in places:
        by_fs.setdefault(os.stat(path).st_dev, []).append((path, n, what))
    for group in by_fs.values():
        total = sum(n for _, n, _ in group)
        have = free(group[0][0])
        if have < total:
            parts = " + ".join(f"{what} ~{_mb(n)}" for _, n, what in group)
            raise FFrayError(f"not enough free space in {group[0][0]}: this job needs about "
                             f"{_mb(total)} ({parts}), {_mb(have)} are free")
