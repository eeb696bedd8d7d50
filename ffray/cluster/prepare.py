"""Preparing a job before any cluster work: every check the input, the output and the options
allow (so bad input fails in a second with one line), the chunk plan, and the ledger entry."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from ffray.cluster.ledger import JobLedger
from ffray.cluster.lock import holder_of, refusal
from ffray.cluster.space import SpaceNeed, check_space, estimate
from ffray.cluster.spec import JobSpec, SwapRequest
from ffray.errors import FFrayError
from ffray.models.store import file_digest
from ffray.processors import ProcessorSpec, check_params, resolve
from ffray.video.assemble import output_format
from ffray.video.encode import check_encoder, size_note
from ffray.video.plan import (
    SNAP_TO_KEYFRAMES,
    auto_chunk_seconds,
    auto_chunk_taper,
    plan_chunks,
    select_frames,
)
from ffray.video.probe import MediaInfo, PacketIndex, fingerprint, probe
from ffray.video.streams import dropped_note, split_streams


def check_output(output: Path, input_path: Path, overwrite: bool, codec: str) -> None:
    fmt = output_format(output)
    if output.exists() and input_path.exists() and os.path.samefile(output, input_path) \
            or output.resolve() == input_path.resolve():
        raise FFrayError(f"output is the input file: {output}")
    if output.is_dir():
        raise FFrayError(f"output is a directory: {output}")
    holder = holder_of(output)
    if holder is not None:
        raise refusal(output, holder)
    if output.exists() and not overwrite:
        raise FFrayError(f"output exists: {output} (use --overwrite to replace it)")
    parent = output.parent
    if not parent.is_dir():
        raise FFrayError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FFrayError(f"cannot write to output folder: {parent}")
    import av

    with av.open(os.devnull, "w", format=fmt) as c:
        if codec not in c.supported_codecs:
            raise FFrayError(f"{output.suffix} files cannot hold {codec} video")


def read_sources(paths: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for s in paths:
        p = Path(s)
        if not p.is_file():
            raise FFrayError(f"source face image not found: {p}")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise FFrayError(f"cannot read source face image {p}: {e.strerror}") from None
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
            raise FFrayError(f"source face image is not a readable image: {p}")
        out.append((p.name, data))
    return out


def prepare_swap(req: SwapRequest, data_dir: Path) -> JobLedger:
    """All checks that need no cluster, then a new ledgered job with its plan. The probe result
    rides along on the ledger object (``ledger.probed``) so ``run_job`` need not read the input
    twice."""
    t = time.perf_counter()
    inp, out = Path(req.input).expanduser().resolve(), Path(req.output).expanduser().absolute()
    proc_cls = resolve(req.processor.kind)
    if getattr(proc_cls, "needs_sources", False) and not req.sources:
        raise FFrayError(f"the {req.processor.kind} processor needs a source face: -s FACE")
    sources = read_sources(req.sources)
    if req.max_attempts < 1:
        raise FFrayError("--max-attempts must be >= 1")
    if req.actors is not None and req.actors < 1:
        raise FFrayError("--actors must be >= 1")
    if req.gpu_per_actor is not None and req.gpu_per_actor < 0:
        raise FFrayError("--gpu-per-actor must be >= 0")
    if req.slots is not None and req.slots < 1:
        raise FFrayError("--slots must be >= 1")
    if req.chunk_taper is not None and not 0.0 <= req.chunk_taper <= 1.0:
        raise FFrayError("--chunk-taper must be between 0 and 1 (a share of the video)")
    info, index = probe(inp)
    v = info.video
    if not req.encode.nvenc or req.address in (None, "", "local"):
        # the encoder opens here as the chunks will (size, pixel format; NVENC: is there one?)
        check_encoder(req.encode, v.width, v.height, v.pix_fmt)
    check_output(out, inp, req.overwrite, req.encode.stream_codec)
    notes = [n for n in (size_note(v.width, v.height, req.encode, v.pix_fmt),
                         dropped_streams(inp, out)) if n]
    named = {role: data for role, (_, data) in zip(req.named, read_sources(list(req.named.values())))}
    if req.reference_frame is not None:
        named["reference"] = frame_png(inp, req.reference_frame, info.video.frame_count,
                                       info.video.rotation)
    proc_spec, pipeline = req.processor, None
    if proc_spec.kind == "faceswap":
        from ffray.faces.setup import resolve as resolve_faces

        dirs = [Path(d).expanduser() for d in req.model_dirs] + [data_dir / "models"]
        params, paths, pipeline = resolve_faces(proc_spec.params, dirs)
        proc_spec = ProcessorSpec(kind=proc_spec.kind, batch_size=proc_spec.batch_size,
                                  params={**params, "model_paths": {k: str(v) for k, v in paths.items()},
                                          "model_sha256": {k: file_digest(v) for k, v in paths.items()}})
    check_params(proc_spec)  # a misspelt processor option fails here, before any work
    check = getattr(proc_cls, "check_sources", None)
    if check is not None:  # e.g. every source image must show a face: say so now, in one line
        images = [*sources, *((Path(req.named[r]).name if r in req.named else r, d)
                              for r, d in named.items())]
        check([d for _, d in images], proc_spec.params, [n for n, _ in images])
    frames = select_frames(index.frame_pts, info.video.time_base, req.trim_start, req.trim_end)
    secs = (index.frame_pts[frames[1] - 1] - index.frame_pts[frames[0]]) * float(info.video.time_base)
    chunk_seconds = req.chunk_seconds if req.chunk_seconds is not None else auto_chunk_seconds(secs)
    if req.chunk_taper is not None:
        taper = req.chunk_taper
    elif req.chunk_seconds is None:
        taper = auto_chunk_taper(secs, chunk_seconds)
    else:  # an explicit --chunk-seconds means chunks of that length
        taper = 0.0
    context = 0
    if proc_spec.kind == "faceswap" and proc_spec.params.get("track", True):
        from ffray.faces.track import CONTEXT_FRAMES

        context = CONTEXT_FRAMES  # face tracks start warm at every chunk boundary
    chunks = plan_chunks(index, info.video.time_base, chunk_seconds, frames, context=context,
                         snap=SNAP_TO_KEYFRAMES, taper=taper)
    check_space(space_needed(info, index, frames[1] - frames[0], frames[1] - frames[0]),
                data_dir / "jobs", out.parent)
    spec = JobSpec(
        input=str(inp), input_sha256=fingerprint(inp, index), output=str(out),
        frames=frames[1] - frames[0], chunks=len(chunks), chunk_seconds=chunk_seconds, chunk_taper=taper,
        frame_range=frames, video=info.to_json()["video"], encode=req.encode, processor=proc_spec,
        pipeline=pipeline, overwrite=req.overwrite, keep_chunks=req.keep_chunks,
        trim=(req.trim_start, req.trim_end),
        trimmed=frames != (0, info.video.frame_count), actors=req.actors,
        gpu_per_actor=req.gpu_per_actor, cpu_per_actor=req.cpu_per_actor, slots=req.slots,
        codec_processes=req.codec_processes,
        max_attempts=req.max_attempts, address=req.address, telemetry=req.telemetry,
        telemetry_interval=req.telemetry_interval, telemetry_local_dir=req.telemetry_local_dir,
        prometheus_port=req.prometheus_port, telemetry_target=req.telemetry_target,
        sources=tuple(req.sources), notes=tuple(notes), plan_s=time.perf_counter() - t)
    ledger = JobLedger.create(data_dir, spec.to_json())
    try:
        ledger.save_plan(chunks)
        ledger.save_sources(sources)
        ledger.save_named(named)
    except BaseException:  # e.g. the disk filled up: no half-made job stays behind
        shutil.rmtree(ledger.root, ignore_errors=True)
        raise
    ledger.probed = (info, index)
    return ledger


def dropped_streams(inp: Path, out: Path) -> str | None:
    """The warning naming the input's subtitle/data/attachment streams the output cannot hold."""
    from ffray.video.probe import open_input

    with open_input(inp) as c:
        return dropped_note(split_streams(c, output_format(out))[1], out.suffix)


def space_needed(info: MediaInfo, index: PacketIndex, selected: int, to_run: int) -> SpaceNeed:
    """The job's disk estimate from the probe (``ffray.cluster.space``)."""
    return estimate(int(index.size.sum()), info.size_bytes, info.video.frame_count, selected, to_run)


def frame_png(path: Path, number: int, frame_count: int, rotation: int = 0) -> bytes:
    """Frame ``number`` (presentation order) of a video as PNG bytes (--reference-frame), turned
    upright as it is shown (the reference face must be found like the video's faces)."""
    import av

    from ffray.engine.frames import rotate_upright

    if not 0 <= number < frame_count:
        raise FFrayError(f"--reference-frame {number} is outside the video (0..{frame_count - 1})")
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == number:
                ok, png = cv2.imencode(".png", rotate_upright(f.to_ndarray(format="bgr24"), rotation))
                return png.tobytes()
    raise FFrayError(f"--reference-frame {number}: the video ended first")
