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
                   "shares); a folder or glob expands to its videos in sorted order")
    s.add_argument("-o", "--outdir", required=True, metavar="OUTDIR",
                   help="output folder (shared path); each output is named after its input")
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
    return {"jobs": cmd_jobs, "wait": cmd_wait, "cancel": cmd_cancel, "logs": cmd_logs}[args.cmd](args, jobs)


def forwarded_options(args, swap_options) -> list[str]:
    """Swap's options as given (those that differ from their defaults), paths made absolute, as
    arguments for ``ffray swap`` on the cluster."""
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
            out += [flag, _absolute(dest, str(v))]
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
    for d in args.model_dir:
        if not Path(d).expanduser().is_dir():
            raise FFrayError(f"--model-dir {d}: not a folder (nothing submitted)")


def input_problem(inp: Path, out: Path, overwrite: bool, codec: str) -> str | None:
    """What the client can tell about one input before submitting it (None: submit it): the
    file is there and readable, holds a video stream, and its output may be written. The full
    probe runs in the job, before any work."""
    import av

    from ffray.cluster.prepare import check_output

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
    try:
        check_output(out, inp, overwrite, codec)
    except FFrayError as e:
        return str(e)
    return None


def cmd_submit(args, jobs_cls) -> int:
    from ffray.cluster.submit import expand_inputs, plan_submissions

    inputs = [i.absolute() for i in expand_inputs(args.inputs)]
    probe = argparse.Namespace(**{**vars(args), "input": str(inputs[0]), "output": "x.mp4",
                                  "data_dir": None})
    args.check_options(probe)  # swap's own option checks, as `ffray swap` makes them
    _check_files(args)
    outdir = Path(args.outdir).expanduser().absolute()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FFrayError(f"cannot make output folder {outdir}: {e.strerror}") from None
    options = forwarded_options(args, args.swap_options)
    plan = plan_submissions(inputs, outdir, options,
                            lambda i, o: input_problem(i, o, args.overwrite, args.codec),
                            lambda: secrets.token_hex(4), max_running=args.max_running)
    jobs = jobs_cls(args.address) if any(p.refused is None for p in plan) else None
    refused = 0
    for p in plan:
        why = p.refused or jobs.submit(p)
        if why:
            refused += 1
            print(f"ffray: error: {p.input}: {why} (not submitted)", file=sys.stderr)
            print(f"-  refused  {p.input}: {why}", flush=True)
        else:
            print(f"{p.job_id}  submitted  {p.input} -> {p.output}", flush=True)
    if jobs is not None:
        print(f"ffray: {len(plan) - refused} job(s) on {jobs.url}; follow with `ffray jobs "
              f"--address {jobs.url}`, `ffray wait JOB...`", file=sys.stderr)
    return 2 if refused else 0


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
