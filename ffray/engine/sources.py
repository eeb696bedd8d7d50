"""Frame sources for chunks the worker decodes itself (encode-only codec processes).

By default a chunk slot's codec process decodes and encodes (``codec_child``). With worker-side
decoding the worker decodes instead and the codec process only encodes: every frame is written
into a ring slot the worker took (``CodecProcess.take_slot``), the encoder frees the slot once it
has the frame. Measured on the H200 (docs/benchmarks.md, sixth pass): NVDEC with frames kept on
the GPU costs 1.7 CPU ms a frame against 6.5 for the CPU decoder, and no upload follows.

``nvdec_frames``: NVDEC into CUDA frames in the worker's own context, copied into packed device
buffers (the decoder's frame goes back at once); the download stage writes every frame into its
slot (they are marked changed: the codec process holds no decoded copy). ``cpu_frames``: the CPU
decoder in the worker, frames unpacked into their slots as a codec process would (the same bytes
as the default path; for CPU-only tests of the protocol and as a comparison).
"""

from __future__ import annotations

from collections.abc import Iterator

from ffray.engine.frames import Frame, Layout, unpack
from ffray.video.decode import NVDEC_CODECS, ChunkPayload, DecodeReport, decode_payload, sws_range, sws_space


def _in_slot(f, proc, lay: Layout, space: int, rng: int) -> tuple[int, Frame]:
    """A host frame unpacked into a slot of ``proc``'s ring, as a codec process's decoder does."""
    slot = proc.take_slot()
    unpack(f, lay, out=proc.views[slot], space=space, rng=rng)
    return int(f.pts), Frame(host=proc.views[slot], slot=slot, pinned=proc.pinned)


def cpu_frames(payload: ChunkPayload, proc, lay: Layout, report: DecodeReport,
               threads: int = 1) -> Iterator[tuple[int, Frame]]:
    """(pts, frame) of each decoded frame, unpacked into a slot of ``proc``'s ring."""
    space, rng = sws_space(payload.color, payload.height), sws_range(payload.color)
    for f in decode_payload(payload, threads=threads, report=report):
        yield _in_slot(f, proc, lay, space, rng)


def nvdec_frames(payload: ChunkPayload, proc, ops, report: DecodeReport,
                 ordinal: int) -> Iterator[tuple[int, Frame]]:
    """(pts, frame) of each frame NVDEC decoded, on the device (``ops``: ``GpuOps``). Frames
    NVDEC gave back in host memory (its software fallback) go into their slot as with the CPU
    decoder. Raises ``DeviceFramesUnfit`` where the chunk needs mending."""
    ops.decoder_ready()
    space, rng = sws_space(payload.color, payload.height), sws_range(payload.color)
    for f in decode_payload(payload, threads=1, report=report, hw_device=ordinal, on_device=True):
        if f.format.name != "cuda":
            yield _in_slot(f, proc, ops.lay, space, rng)
            continue
        slot = proc.take_slot()
        yield int(f.pts), Frame(device=ops.from_cuda_frame(f), host=proc.views[slot], slot=slot,
                                pinned=proc.pinned, dirty=True, host_current=False)


def usable(mode: str, payload: ChunkPayload, lay: Layout, gpu_ops) -> str | None:
    """The worker-side source for this chunk (``mode``: ``nvdec`` or ``cpu``, from the
    ``FFRAY_WORKER_DECODE`` experiment switch), or None: the codec process decodes. Only sources
    already in the working format (unchanged frames go to the encoder from their slot); NVDEC
    frames go to the device only for 8-bit 4:2:0 sources of even size (NV12), on the GPU backend."""
    if not lay.native:  # unchanged frames must be encoded as decoded (e.g. 10-bit): codec process
        return None
    if mode == "cpu":
        return "cpu"
    if mode == "nvdec" and gpu_ops is not None and payload.codec in NVDEC_CODECS \
            and lay.pix_fmt in ("yuv420p", "yuvj420p") and lay.width % 2 == 0 \
            and lay.height % 2 == 0:
        return "nvdec"
    return None
