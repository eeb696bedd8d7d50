"""Typed job specs: ``SwapRequest`` (what a caller asks for) and ``JobSpec`` (what the ledger
keeps and ``run_job`` runs), plus ``JobResult``.

``JobSpec`` is stored flat in ``job.json`` beside the job's state (status, times, error), which the
ledger updates separately; ``JobSpec.from_json`` reads the spec part back, with defaults for keys
older ledgers lack, so ``ffray resume`` works on jobs planned by earlier versions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ffray.processors import ProcessorSpec
from ffray.video.encode import DEFAULT_THREADS, EncodeSettings


@dataclass
class SwapRequest:
    input: str
    output: str
    sources: list[str] = field(default_factory=list)
    overwrite: bool = False
    keep_chunks: bool = False  # keep the encoded chunks after a verified assembly
    chunk_seconds: float | None = None  # None: auto (ffray.video.plan.auto_chunk_seconds)
    # the last share of the video in half-length chunks; None: auto (plan.auto_chunk_taper) with
    # auto chunk lengths, none with an explicit --chunk-seconds
    chunk_taper: float | None = None
    trim_start: float | None = None
    trim_end: float | None = None
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    processor: ProcessorSpec = field(default_factory=ProcessorSpec)
    actors: int | None = None
    gpu_per_actor: float | None = None
    cpu_per_actor: float = 0.0
    slots: int | None = None  # chunks in flight per worker (default: from its CPUs)
    codec_processes: bool = True  # decode/encode each chunk in a codec process (else in threads)
    max_attempts: int = 3
    address: str | None = None
    telemetry: bool = True
    telemetry_interval: float = 1.0
    telemetry_local_dir: str | None = None  # node-local sink for nodes off the driver's host
    prometheus_port: int | None = None
    telemetry_target: str | None = None  # a pyarrow filesystem URI for telemetry and spans
    model_dirs: list[str] = field(default_factory=list)
    named: dict[str, str] = field(default_factory=dict)  # role -> image path (reference, map pairs)
    reference_frame: int | None = None


@dataclass(frozen=True)
class JobSpec:
    input: str
    input_sha256: str
    output: str
    frames: int
    chunks: int
    chunk_seconds: float
    frame_range: tuple[int, int]
    video: dict  # the probe's facts (``MediaInfo.to_json()["video"]``)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    processor: ProcessorSpec = field(default_factory=ProcessorSpec)
    pipeline: str | None = None
    overwrite: bool = False
    keep_chunks: bool = False
    trim: tuple[float | None, float | None] = (None, None)
    trimmed: bool = False
    actors: int | None = None
    gpu_per_actor: float | None = None
    cpu_per_actor: float = 0.0
    slots: int | None = None
    codec_processes: bool = True
    max_attempts: int = 3
    address: str | None = None
    telemetry: bool = True
    telemetry_interval: float = 1.0
    telemetry_local_dir: str | None = None
    prometheus_port: int | None = None
    telemetry_target: str | None = None
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what the input policies did, said before the job runs
    plan_s: float = 0.0
    chunk_taper: float = 0.0  # the share of the input planned in half-length chunks

    def to_json(self) -> dict:
        d = asdict(self)
        d["frame_range"], d["trim"] = list(self.frame_range), list(self.trim)
        d["sources"], d["notes"] = list(self.sources), list(self.notes)
        return d

    @classmethod
    def from_json(cls, d: dict) -> JobSpec:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        enc = dict(kw.get("encode") or {})
        if not enc.get("threads"):  # ledgers from before fixed encoder threads said 0 (auto)
            enc["threads"] = DEFAULT_THREADS
        kw["encode"] = EncodeSettings(**enc)
        kw["processor"] = ProcessorSpec(**(kw.get("processor") or {}))
        kw["frame_range"] = tuple(kw["frame_range"])
        kw["trim"] = tuple(kw.get("trim") or (None, None))
        kw["sources"] = tuple(kw.get("sources") or ())
        kw["notes"] = tuple(kw.get("notes") or ())
        return cls(**kw)


@dataclass
class JobResult:
    job_id: str
    output: str
    frames: int
    chunks: int
    chunks_run: int  # chunks this run processed (a resume skips the finished ones)
    frames_run: int  # their frames: what this run's frames/s counts
    retries: int
    wall_s: float
    worker_s: float
    assemble_s: float
    plan_s: float
    ledger: str
    summary: dict = field(default_factory=dict)
    report: str | None = None  # the job's report folder (trend.png, summary.json/.md)
    report_s: float = 0.0  # writing it (after wall_s)
    teardown_wait_s: float = 0.0  # then waiting for the private Ray instance to finish stopping
