"""A lock on a job's output path, held while the job runs: a second job writing the same file is
refused before it does any work (not after, on "output exists").

The lock is an ``flock`` on ``.<name>.ffray-lock`` beside the output, holding the job id; the
kernel drops it when the holder dies (SIGKILL included), so a crashed job never blocks the next
one. The holder deletes the file when it is done; one left by a killed job is empty of meaning
(no lock on it) and is reused or removed by the next job. Where ``fcntl`` is missing (Windows)
there is no lock.
"""

from __future__ import annotations

import os
from pathlib import Path

from ffray.errors import FFrayError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


def lock_path(output: Path) -> Path:
    return output.parent / f".{output.name}.ffray-lock"


def refusal(output: Path, holder: str) -> FFrayError:
    who = f"job {holder}" if holder else "another ffray job"
    return FFrayError(f"{output} is being written by {who}, still running: wait for it to end "
                      "or choose another output")


def holder_of(output: Path) -> str | None:
    """The job id holding ``output``'s lock, "" if the holder is unknown, None if nobody holds it."""
    if fcntl is None:
        return None
    p = lock_path(Path(output))
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.read(fd, 200).decode(errors="replace").strip()
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class OutputLock:
    def __init__(self, output: Path, job_id: str):
        self.output, self.job_id = Path(output), job_id
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        if fcntl is None:
            return self
        p = lock_path(self.output)
        try:
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise FFrayError(f"cannot create the output lock {p}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip()
            os.close(fd)
            raise refusal(self.output, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, self.job_id.encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(lock_path(self.output))
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
