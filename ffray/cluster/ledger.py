"""The job ledger: ``<data-dir>/jobs/<job-id>/`` holds everything needed to finish a job later.

- ``job.json``: the job spec (input, its SHA-256 fingerprint, output, options) and status;
- ``plan.json``: the chunk plan;
- ``sources/``: copies of the source face images, so a resume needs nothing else;
- ``chunks/NNNNNN.nut`` + ``NNNNNN.json``: each finished chunk and its stats. The .nut is written
  first, both atomically; a chunk counts as finished only when both exist. Once the output is
  assembled (every chunk verified) the .nut files are deleted unless the job keeps its chunks
  (``--keep-chunks``); the .json stats stay with the ledger;
- ``events.jsonl``: one line per attempt outcome (retries, failures), append-only.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from ffray.errors import FFrayError, StorageError
from ffray.settings import atomic_write_bytes, atomic_write_text
from ffray.video.plan import ChunkSpec


@contextmanager
def writing(what: str, path: Path, job_id: str | None = None):
    """An OS error while writing ``what`` (no space left, read-only, I/O error) becomes one
    line naming the file and the way on; what was written before stays resumable."""
    try:
        yield
    except OSError as e:
        why = e.strerror or str(e)
        then = f"; free space and run `ffray resume {job_id}`" if job_id else ""
        raise StorageError(f"cannot write {what} ({path}): {why}{then}") from None


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class JobLedger:
    def __init__(self, root: Path):
        self.root = root
        self.job_id = root.name
        self.probed = None  # (MediaInfo, PacketIndex) when the input was just probed

    @classmethod
    def create(cls, data_dir: Path, spec: dict, job_id: str | None = None) -> JobLedger:
        jid = job_id or new_job_id()
        root = data_dir / "jobs" / jid
        if root.exists():
            raise FFrayError(f"job {jid} already exists in {root.parent}")
        with writing("the job ledger", root):
            (root / "chunks").mkdir(parents=True)
            led = cls(root)
            led.write_spec({**spec, "job_id": jid, "created": time.time(), "status": "created"})
        return led

    @classmethod
    def open(cls, data_dir: Path, job_id: str) -> JobLedger:
        root = data_dir / "jobs" / job_id
        if not (root / "job.json").is_file():
            raise FFrayError(f"no job {job_id!r} in {data_dir / 'jobs'}")
        return cls(root)

    # spec and status
    @property
    def spec(self) -> dict:
        return json.loads((self.root / "job.json").read_text())

    def write_spec(self, spec: dict) -> None:
        with writing("the job's state", self.root / "job.json", self.job_id):
            atomic_write_text(self.root / "job.json", json.dumps(spec, indent=2, default=str))

    def update(self, **fields) -> dict:
        spec = {**self.spec, **fields, "updated": time.time()}
        self.write_spec(spec)
        return spec

    # plan
    def save_plan(self, chunks: list[ChunkSpec]) -> None:
        with writing("the job's plan", self.root / "plan.json"):
            atomic_write_text(self.root / "plan.json", json.dumps([c.to_json() for c in chunks]))

    def load_plan(self) -> list[ChunkSpec]:
        return [ChunkSpec(**c) for c in json.loads((self.root / "plan.json").read_text())]

    # sources
    def save_sources(self, images: list[tuple[str, bytes]]) -> None:
        for i, (name, data) in enumerate(images):
            with writing("a source image", self.root / "sources"):
                atomic_write_bytes(self.root / "sources" / f"{i:02d}{Path(name).suffix.lower()}", data)

    def load_sources(self) -> tuple[bytes, ...]:
        d = self.root / "sources"
        return tuple(p.read_bytes() for p in sorted(d.iterdir())) if d.is_dir() else ()

    def save_named(self, images: dict[str, bytes]) -> None:
        for role, data in images.items():
            with writing("a reference image", self.root / "named"):
                atomic_write_bytes(self.root / "named" / role, data)

    def load_named(self) -> dict[str, bytes]:
        d = self.root / "named"
        return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.is_dir() else {}

    # chunks
    def chunk_path(self, index: int) -> Path:
        return self.root / "chunks" / f"{index:06d}.nut"

    def record_chunk(self, index: int, data: bytes, stats: dict) -> None:
        with writing(f"chunk {index}", self.chunk_path(index), self.job_id):
            atomic_write_bytes(self.chunk_path(index), data)
            atomic_write_text(self.chunk_path(index).with_suffix(".json"),
                              json.dumps(stats, default=str))

    def done_chunks(self) -> set[int]:
        done = set()
        for p in (self.root / "chunks").glob("*.json"):
            if p.stem.isdigit() and p.with_suffix(".nut").is_file():
                done.add(int(p.stem))
        return done

    def chunk_stats(self) -> list[dict]:
        """Stats of every finished chunk, also after its .nut was deleted (job done)."""
        paths = [p for p in (self.root / "chunks").glob("*.json") if p.stem.isdigit()]
        return [json.loads(p.read_text()) for p in sorted(paths)]

    def remove_chunk_files(self) -> int:
        """Delete the encoded chunks (the output holds them now); their stats stay. Bytes freed."""
        freed = 0
        for p in (self.root / "chunks").glob("*.nut"):
            try:
                size = p.stat().st_size
                p.unlink()
                freed += size
            except OSError:
                pass
        return freed

    def event(self, **fields) -> None:
        with writing("the job's events", self.root / "events.jsonl", self.job_id), \
                open(self.root / "events.jsonl", "a") as f:
            f.write(json.dumps({"time": time.time(), **fields}, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def events(self) -> list[dict]:
        p = self.root / "events.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line torn by a full disk or a crash mid-write
                continue
        return out
