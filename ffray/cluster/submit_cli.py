"""``ffray submit / jobs --address / wait / cancel / logs``: detached jobs through Ray Jobs.

stdout carries what scripts read (one line per input or job, the job id first); notes and errors
go to stderr. See docs/design.md ("Detached jobs") for the choices.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from ffray.errors import FFrayError

PATH_OPTIONS = ("source", "reference", "model_dir")  # forwarded as absolute paths
CANCEL_WAIT_S = 60.0


def add_parsers(sub, swap_options, check_options) -> None:
    """``swap_options(parser)`` adds swap's own options; ``check_options(namespace)`` validates
    them as ``ffray swap`` would (raises FFrayError)."""
    s = sub.add_parser("submit", help="submit videos to a Ray cluster as detached jobs (Ray Jobs)")
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="input videos, folders of videos or quoted globs (on a path every node "
                   "shares, or local files with --upload), or filesystem URIs (s3://…); a folder "
                   "or glob expands to its videos in sorted order")
    s.add_argument("-o", "--outdir", required=True, metavar="OUTDIR",
                   help="output folder (shared path, a URI, or with --upload a local folder that "
                   "`ffray fetch JOB` fills); each output is named after its input")
    s.add_argument("--upload", action="store_true",
                   help="the cluster does not see these local files: upload each input (in "
                   "pieces, through the Jobs API) and the face images; outputs stay on the "
                   "cluster until `ffray fetch JOB` (unless OUTDIR is a URI)")
    s.add_argument("--max-running", type=_positive, metavar="N",
                   help="run at most N submitted videos at once on this cluster (the others wait, "
                   "state `queued`); without it every job starts at once")
    swap_options(s)
    _address(s)
    s.set_defaults(swap_options=swap_options, check_options=check_options)

    w = sub.add_parser("wait", help="wait for submitted jobs to end (exit 0 when all succeeded)")
    w.add_argument("job_ids", nargs="+", metavar="JOB")
    w.add_argument("--timeout", type=float, help="give up after this many seconds (exit 124)")
    _address(w)

    c = sub.add_parser("cancel", help="stop submitted jobs (finished chunks are kept)")
    c.add_argument("job_ids", nargs="+", metavar="JOB")
    _address(c)

    lg = sub.add_parser("logs", help="print a submitted job's log")
    lg.add_argument("job_id", metavar="JOB")
    _address(lg)

    f = sub.add_parser("fetch", help="bring a submitted job's output (kept on the cluster, or "
                       "at a URI) to this machine")
    f.add_argument("job_id", metavar="JOB")
    f.add_argument("-o", "--output", metavar="FILE",
                   help="where to put it (default: OUTDIR/NAME as `ffray submit` printed)")
    f.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    _address(f)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return n


def _address(p) -> None:
    p.add_argument("--address", help="the cluster's dashboard, http://HOST:8265 (default "
                   "$RAY_API_SERVER_ADDRESS, else http://127.0.0.1:8265)")


def run(args) -> int:
    from ffray.cluster.jobclient import Jobs

    if args.cmd == "submit":
        return cmd_submit(args, Jobs)
    jobs = Jobs(args.address)
    return {"jobs": cmd_jobs, "wait": cmd_wait, "cancel": cmd_cancel, "logs": cmd_logs,
            "fetch": cmd_fetch, "resume": cmd_resume}[args.cmd](args, jobs)


def forwarded_options(args, swap_options, absolute: bool = True) -> list[str]:
    """Swap's options as given (those that differ from their defaults), paths made absolute
    (unless ``absolute`` is false), as arguments for ``ffray swap`` on the cluster."""
    probe = argparse.ArgumentParser(add_help=False)
    swap_options(probe)
    defaults = vars(probe.parse_args([]))
    out: list[str] = []
    for dest, default in defaults.items():
        value = getattr(args, dest)
        if value == default or value is None:
            continue
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag)
            continue
        for v in value if isinstance(value, list) else [value]:
            out += [flag, _absolute(dest, str(v)) if absolute else str(v)]
    return out


def _absolute(dest: str, value: str) -> str:
    if dest in PATH_OPTIONS:
        return str(Path(value).expanduser().absolute())
    if dest == "map":
        target, _, source = value.partition("=")
        return f"{Path(target).expanduser().absolute()}={Path(source).expanduser().absolute()}"
    return value


def _check_files(args) -> None:
    """Face and reference images every job needs: missing ones refuse the whole submission."""
    files = list(args.source) + ([args.reference] if args.reference else [])
    for m in args.map:
        files += [x for x in m.partition("=")[::2] if x]
    for f in files:
        if not Path(f).expanduser().is_file():
            raise FFrayError(f"no such file: {f} (nothing submitted)")
    for d in [] if args.upload else args.model_dir:  # with --upload: a folder on the cluster
        if not Path(d).expanduser().is_dir():
            raise FFrayError(f"--model-dir {d}: not a folder (nothing submitted)")


def input_problem(inp: Path | str, out: Path | str, overwrite: bool, codec: str) -> str | None:
    """What the client can tell about one input before submitting it (None: submit it): the
    file is there and readable, holds a video stream, and its output may be written. The full
    probe runs in the job, before any work. Either may be a filesystem URI (read with the
    client's own credentials)."""
    import av

    from ffray.cluster import uriio

    if uriio.is_uri(inp):
        why = uriio.video_problem(str(inp))
        return why or output_problem(Path(os.devnull), out, overwrite, codec)
    if not inp.exists():
        return "no such file"
    if not inp.is_file():
        return "not a file"
    if not os.access(inp, os.R_OK):
        return "cannot read it"
    try:
        with av.open(str(inp)) as c:
            if not c.streams.video:
                return "no video stream"
    except (av.FFmpegError, UnicodeDecodeError) as e:
        return f"not a video ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
    return output_problem(inp, out, overwrite, codec)


def output_problem(inp: Path, out: Path | str, overwrite: bool, codec: str) -> str | None:
    from ffray.cluster import uriio
    from ffray.cluster.prepare import check_output

    try:
        if not uriio.is_uri(out):
            check_output(out, inp, overwrite, codec)
        elif not overwrite and uriio.exists(str(out)):
            return f"output exists: {str(out).split('?')[0]} (use --overwrite to replace it)"
    except FFrayError as e:
        return str(e)
    return None


def cmd_submit(args, jobs_cls) -> int:
    import tempfile

    from ffray.cluster.submit import expand_inputs, plan_submissions
    from ffray.cluster.uriio import is_uri

    inputs = [i if is_uri(i) else i.absolute() for i in expand_inputs(args.inputs)]
    probe = argparse.Namespace(**{**vars(args), "input": str(inputs[0]), "output": "x.mp4",
                                  "data_dir": None})
    args.check_options(probe)  # swap's own option checks, as `ffray swap` makes them
    _check_files(args)
    outdir = args.outdir if is_uri(args.outdir) else Path(args.outdir).expanduser().absolute()
    if not is_uri(outdir):
        try:
            outdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FFrayError(f"cannot make output folder {outdir}: {e.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="ffray-submit-") as tmp:
        working_dir = None
        if args.upload:  # the face images travel as the jobs' working_dir package (small files)
            args, working_dir = _images_into(args, Path(tmp) / "pkg"), str(Path(tmp) / "pkg")
        options = forwarded_options(args, args.swap_options, absolute=not args.upload)
        plan = plan_submissions(inputs, outdir, options,
                                lambda i, o: input_problem(i, o, args.overwrite, args.codec),
                                lambda: secrets.token_hex(4), max_running=args.max_running,
                                stage=lambda i, o, j: _staging(i, o, j, args))
        jobs = jobs_cls(args.address) if any(p.refused is None for p in plan) else None
        refused = sum(_submit_one(jobs, p, working_dir) for p in plan)
    if jobs is not None:
        print(f"ffray: {len(plan) - refused} job(s) on {jobs.url}; follow with `ffray jobs "
              f"--address {jobs.url}`, `ffray wait JOB...`", file=sys.stderr)
    return 2 if refused else 0


def _submit_one(jobs, p, working_dir: str | None) -> int:
    """Submit (and upload) one planned input and print its stdout line; 1 if refused."""
    from ffray.cluster.staging import KEPT, UPLOAD

    why = p.refused or jobs.submit(p, working_dir)
    if why is None and p.staging is not None and p.staging.input_kind == UPLOAD:
        from ffray.cluster.transfer import upload

        try:
            secs = upload(jobs, p.job_id, p.staging, Path(p.input),
                          note=lambda s: print(s, file=sys.stderr, flush=True))
            print(f"ffray: uploaded {p.input} ({p.staging.size / 1e6:.1f} MB) in {secs:.1f} s",
                  file=sys.stderr)
        except FFrayError as e:
            why = f"upload failed: {e}"
            try:
                jobs.stop(p.job_id)
            except FFrayError:
                pass
    if why:
        print(f"ffray: error: {p.input}: {why} (not submitted)", file=sys.stderr)
        print(f"-  refused  {p.input}: {why}", flush=True)
        return 1
    print(f"{p.job_id}  submitted  {p.input} -> {p.output}", flush=True)
    if p.staging is not None and p.staging.output_kind == KEPT:
        print(f"ffray: {p.job_id}: its output stays on the cluster; `ffray fetch {p.job_id}` "
              f"brings it to {p.output}", file=sys.stderr)
    return 0


def _staging(inp, out, job_id: str, args):
    from ffray.cluster.staging import KEPT, SHARED, UPLOAD, URI, Staging
    from ffray.cluster.submit import uri_name
    from ffray.cluster.transfer import piece_bytes
    from ffray.cluster.uriio import is_uri

    in_kind = URI if is_uri(inp) else UPLOAD if args.upload else SHARED
    out_kind = URI if is_uri(out) else KEPT if args.upload else SHARED
    return Staging(stage_id=job_id, input_kind=in_kind, output_kind=out_kind,
                   name=uri_name(inp) if is_uri(inp) else Path(inp).name,
                   out_name=uri_name(out) if is_uri(out) else Path(out).name,
                   input_uri=str(inp) if in_kind != UPLOAD else "",
                   output_uri=str(out) if out_kind == URI else "",
                   size=Path(inp).stat().st_size if in_kind == UPLOAD else 0,
                   piece_bytes=piece_bytes(), overwrite=args.overwrite)


def _images_into(args, folder: Path):
    """A copy of ``args`` whose face/reference/map images are copies in ``folder`` (the jobs'
    working_dir), named relative to it: ``faces/<n>-<name>``."""
    import shutil

    folder.mkdir(parents=True)
    (folder / "faces").mkdir()
    names: dict[str, str] = {}

    def moved(path: str) -> str:
        if path not in names:
            rel = f"faces/{len(names)}-{Path(path).name}"
            shutil.copyfile(Path(path).expanduser(), folder / rel)
            names[path] = rel
        return names[path]

    new = argparse.Namespace(**vars(args))
    new.source = [moved(x) for x in args.source]
    new.reference = moved(args.reference) if args.reference else args.reference
    new.map = ["=".join(moved(x) for x in m.partition("=")[::2]) for m in args.map]
    return new


def cmd_jobs(args, jobs) -> int:
    rows = jobs.rows()
    for r in rows:
        print(r.line())
    if not rows:
        print(f"ffray: no ffray jobs on {jobs.url}", file=sys.stderr)
    return 0


def cmd_wait(args, jobs) -> int:
    from ffray.cluster.submit import state_of

    last = jobs.wait(args.job_ids, timeout=args.timeout)
    states = {}
    for j, s in last.items():
        states[j] = jobs.row(j).state if s.upper().endswith("STOPPED") else state_of(s)
        print(f"{j}  {states[j]}")
    if any(s in ("pending", "queued", "running") for s in states.values()):
        print(f"ffray: gave up after {args.timeout} s", file=sys.stderr)
        return 124
    return 0 if all(s == "succeeded" for s in states.values()) else 1


def cmd_cancel(args, jobs) -> int:
    for j in args.job_ids:  # every id known before anything is stopped
        jobs.status(j)
    for j in args.job_ids:
        jobs.stop(j)
    last = jobs.wait(args.job_ids, timeout=CANCEL_WAIT_S)
    ended = True
    for j, s in last.items():
        r = jobs.row(j)
        ended &= r.state not in ("pending", "queued", "running")
        print(f"{j}  {r.state}")
    return 0 if ended else 1


def cmd_logs(args, jobs) -> int:
    sys.stdout.write(jobs.logs(args.job_id))
    sys.stdout.flush()
    return 0


def cmd_fetch(args, jobs) -> int:
    from ffray.cluster.transfer import fetch

    print(fetch(jobs, args.job_id, args.output, args.overwrite))
    return 0


def cmd_resume(args, jobs) -> int:
    """``ffray resume JOB --address http://…``: a new Ray Job finishes a cancelled one."""
    from ffray.cluster.submit import submission_id
    from ffray.cluster.transfer import resume

    old = jobs.info(args.job_id)
    stem = (old.metadata or {}).get("input", "video").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    new_id, output = resume(jobs, args.job_id, submission_id(stem, secrets.token_hex(4)),
                            overwrite=args.overwrite, keep_chunks=args.keep_chunks)
    print(f"{new_id}  submitted  resume of {args.job_id} -> {output}", flush=True)
    return 0
