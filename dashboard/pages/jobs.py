"""Jobs page (jobs submitted to the cluster with their state and progress, the list with totals
and cost, CSV export) and job page (chunk timeline per GPU / worker over the GPUs' or hosts'
curves, key events in words, chunk details on hover/click, per-chunk table sortable by cost, link
to the job report)."""

from __future__ import annotations

import csv
import io

from dash import Input, Output, State, dash_table, dcc, html

from dashboard.data import Data
from dashboard.figures import GIB, chunk_category, lane_label
from dashboard.timeline import job_figure, lanes_of
from ffray.analytics.costs import worker_lanes
from ffray.analytics.events import job_events

NO_JOBS = "No jobs yet. Run one: `ffray demo`, or `ffray swap INPUT -s FACE -o OUTPUT`; its chunks " \
          "and costs appear here."


def _fmt_s(x) -> str:
    if x is None:
        return ""
    x = float(x)
    return f"{x / 3600:.1f} h" if x >= 3600 else f"{x / 60:.1f} min" if x >= 120 else f"{x:.1f} s"


def _num(x, nd=1):
    return None if x is None else round(float(x), nd)


def job_rows(jobs: list[dict], data: Data) -> list[dict]:
    rows = []
    for j in jobs:
        report = data.report_file(j["job_id"], "trend.png")
        rows.append({
            "job": f"[{j['job_id']}](/job/{j['job_id']})", "job_id": j["job_id"], "status": j["status"],
            "created": j["created"].strftime("%Y-%m-%d %H:%M:%S") if j["created"] else "",
            "input": j["input"], "resolution": f"{j['width']}x{j['height']}" if j["width"] else "",
            "frames": j["frames"], "chunks": f"{j['chunks_done'] or 0}/{j['chunks'] or 0}",
            "duration_s": _num(j["wall_s"]), "gpu_seconds": _num(j["gpu_seconds"]),
            "energy_kj": _num((j["energy_j"] or 0) / 1000, 2) if j["energy_j"] is not None else None,
            "retries": j["retries"], "gpu_model": j["gpu_model"] or "",
            "cost": _num(j.get("cost"), 4), "gpu_class": j.get("gpu_class") or "",
            "report": f"[report](/report/{j['job_id']}/trend.png)" if report else ""})
    return rows


JOB_COLUMNS = [("job", "job", "markdown"), ("status", "status", None), ("created", "created (UTC)", None),
               ("input", "input", None), ("resolution", "resolution", None), ("frames", "frames", None),
               ("chunks", "chunks", None), ("duration_s", "duration (s)", None),
               ("gpu_seconds", "GPU-seconds", None), ("energy_kj", "energy (kJ)", None),
               ("cost", "cost ($)", None), ("retries", "retries", None),
               ("gpu_model", "GPU model", None), ("report", "report", "markdown")]
CSV_COLUMNS = ["job_id", "status", "created", "input", "resolution", "frames", "chunks", "duration_s",
               "gpu_seconds", "energy_kj", "cost", "gpu_class", "retries", "gpu_model"]
SUB_COLUMNS = [("submission", "submission", "markdown"), ("state", "state", None),
               ("progress", "progress", None), ("input", "input", None), ("output", "output", None),
               ("reason", "reason", None)]


def jobs_csv(rows: list[dict]) -> str:
    """The jobs table's rows (as shown: filtered, sorted) as CSV, one line per job."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def submitted_rows(subs) -> list[dict]:
    return [{"submission": f"[{r.submission_id}](/job/{r.job_id})" if r.job_id else r.submission_id,
             "submission_id": r.submission_id, "state": r.state, "progress": r.progress(),
             "input": r.input, "output": r.output, "reason": r.reason} for r in subs]


def _submitted_section(data: Data, records: list[dict]):
    got = data.submitted(records)
    if got is None:
        return []
    subs, why = got
    head = html.H3(f"{len(subs)} job(s) submitted to the cluster (Ray Jobs)", id="j-sub-title")
    if why:
        return [head, html.P(f"Could not read the cluster's Jobs API: {why}", className="error",
                             id="j-sub-error")]
    return [head, dash_table.DataTable(
        id="j-sub", data=submitted_rows(subs), page_size=50, sort_action="native",
        markdown_options={"link_target": "_self"},
        columns=[{"id": c, "name": n, **({"presentation": p} if p else {})} for c, n, p in SUB_COLUMNS],
        style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px"},
        style_header={"fontWeight": "bold"},
        style_data_conditional=[{"if": {"filter_query": '{state} = "failed"'}, "color": "#d62728"},
                                {"if": {"filter_query": '{state} = "running"'}, "color": "#1f77b4"}]),
        dcc.Interval(id="j-tick", interval=5000)]


def jobs_layout(data: Data) -> html.Div:
    st = data.status()
    if st["missing"]:
        return html.Div(_submitted_section(data, []) +
                        [html.P(f"No data directory at {data.target} yet. {NO_JOBS}", className="empty")])
    jobs = data.jobs()
    subs = _submitted_section(data, jobs)
    if not jobs:
        return html.Div(subs + [html.P(NO_JOBS, className="empty")])
    return html.Div(subs + [
        html.H3(f"{len(jobs)} job(s)"),
        html.Div([html.Button("Download CSV", id="j-csv-go"), dcc.Download(id="j-csv"),
                  html.Span(" the rows shown (filtered, sorted); cost = GPU-seconds x the GPU class's "
                            "$/GPU-hour", className="hint")], className="links"),
        dash_table.DataTable(
            id="j-table", data=job_rows(jobs, data), page_size=50, sort_action="native",
            filter_action="native", markdown_options={"link_target": "_self"},
            columns=[{"id": c, "name": n, **({"presentation": p} if p else {})} for c, n, p in JOB_COLUMNS],
            style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px"},
            style_header={"fontWeight": "bold"})])


MAX_LISTED = 40  # events listed under the job's chart
CHUNK_COLUMNS = [("chunk", "chunk"), ("attempt", "attempt"), ("status", "status"), ("gpu", "GPU"),
                 ("start", "start (UTC)"), ("seconds", "seconds"), ("frames", "frames"),
                 ("faces_per_frame", "faces/frame"), ("gpu_seconds", "GPU-seconds"),
                 ("energy_j", "energy (J)"), ("peak_mem_gib", "peak mem (GiB)"),
                 ("mean_util", "mean util %"), ("throttled_share", "throttled")]


def chunk_rows(chunks: list[dict], labels: dict) -> list[dict]:
    out = []
    for r, lane in zip(chunks, worker_lanes(chunks)):
        mem = r["peak_mem_process"] or r["peak_mem_device"]
        gpu = lane_label(r, labels, lane)
        fpf = (r["faces_detected"] or 0) / r["frames"] if r["frames"] else None
        out.append({"id": f"{r['chunk']}-{r['attempt']}", "chunk": r["chunk"], "attempt": r["attempt"],
                    "status": chunk_category(r), "gpu": gpu,
                    "start": r["start"].strftime("%H:%M:%S") if r["start"] else "",
                    "seconds": _num(r["seconds"], 2), "frames": r["frames"],
                    "faces_per_frame": _num(fpf, 2),
                    "gpu_seconds": _num(r["gpu_seconds"], 2), "energy_j": _num(r["energy_j"]),
                    "peak_mem_gib": _num(mem / GIB, 2) if mem else None, "mean_util": _num(r["mean_util"]),
                    "throttled_share": _num(r["throttled_share"], 2)})
    return out


def _card(title: str, value) -> html.Div:
    return html.Div([html.Div(title, className="k"), html.Div(str(value), className="v")], className="card")


def job_layout(data: Data, job_id: str) -> html.Div:
    detail = data.job_detail(job_id)
    if detail is None:
        return html.Div(html.P(f"No job {job_id!r} in {data.target}. See the Jobs page for the list.",
                               className="empty"))
    job, chunks, trend, bucket, labels = detail
    host = data.job_host(job_id)[0] if not trend.num_rows else None

    lane = dict(zip([(c["chunk"], c["attempt"]) for c in chunks], lanes_of(chunks, labels)[0]))

    def place(c: dict) -> str:  # the attempt's lane on the timeline (failed attempts of old ledgers: "")
        name = lane.get((c["chunk"], c["attempt"]), "")
        return "" if name == "failed attempts" else name

    events = job_events(chunks, trend, bucket, job.get("fps"), place=place)
    mem = job["peak_mem_process"] or job["peak_mem_device"]
    links = []
    for name, text in (("trend.png", "report chart"), ("summary.md", "summary")):
        if data.report_file(job_id, name):
            links += [html.A(text, href=f"/report/{job_id}/{name}", target="_blank"), " "]
    return html.Div([
        html.H3([f"Job {job_id} ", html.Span(job["status"], className=f"status {job['status']}")]),
        html.Div([_card("input", job["input"]), _card("resolution", f"{job['width']}x{job['height']}"),
                  _card("frames", job["frames"]),
                  _card("chunks", f"{job['chunks_done'] or 0}/{job['chunks']}"),
                  _card("retries", job["retries"] or 0), _card("duration", _fmt_s(job["wall_s"])),
                  _card("GPU-seconds", _num(job["gpu_seconds"]) or 0),
                  _card("energy", f"{(job['energy_j'] or 0) / 1000:.1f} kJ"),
                  _card("peak memory", f"{(mem or 0) / GIB:.2f} GiB"),
                  _card("GPU", job["gpu_model"] or ("none (CPU)" if not job["gpus_used"] else "?"))],
                 className="cards"),
        html.Div(links or "no report for this job", className="links"),
        dcc.Graph(id="job-fig", figure=job_figure(chunks, trend, labels, host, events),
                  config={"displaylogo": False}),
        html.Div([html.H4("Key events"),
                  html.Ul([html.Li(e.text, className=f"event {e.kind}") for e in events[:MAX_LISTED]] +
                          ([html.Li(f"... and {len(events) - MAX_LISTED} more (the job's summary.md lists "
                                    "them all)")] if len(events) > MAX_LISTED else []) or
                          [html.Li("none: no change of faces per frame, no retries, no saturation or "
                                   "throughput drop")], id="job-events")]),
        html.Div("Click a chunk for its details.", id="job-sel", className="sel"),
        html.H4("Chunks (click a column header to sort; GPU-seconds is the cost)"),
        dash_table.DataTable(
            id="job-chunks", data=chunk_rows(chunks, labels), page_size=40, sort_action="native",
            sort_by=[{"column_id": "gpu_seconds", "direction": "desc"}],
            columns=[{"id": c, "name": n} for c, n in CHUNK_COLUMNS],
            style_cell={"fontFamily": "sans-serif", "fontSize": 12, "padding": "3px"},
            style_data_conditional=[{"if": {"filter_query": '{status} = "failed"'}, "color": "#d62728"},
                                    {"if": {"filter_query": '{status} = "retried"'}, "color": "#c25e00"}]),
    ])


def register(app, data: Data) -> None:
    @app.callback(Output("j-csv", "data"), Input("j-csv-go", "n_clicks"),
                  State("j-table", "derived_virtual_data"), State("j-table", "data"),
                  prevent_initial_call=True)
    def _csv(_, shown, every):
        return dcc.send_string(jobs_csv(shown if shown is not None else every), "ffray-jobs.csv")

    @app.callback(Output("j-sub", "data"), Input("j-tick", "n_intervals"), prevent_initial_call=True)
    def _refresh(_):
        got = data.submitted()
        return submitted_rows(got[0]) if got else []

    @app.callback(Output("job-sel", "children"), Output("job-chunks", "style_data_conditional"),
                  Input("job-fig", "clickData"), prevent_initial_call=True)
    def _select(click):
        base = [{"if": {"filter_query": '{status} = "failed"'}, "color": "#d62728"},
                {"if": {"filter_query": '{status} = "retried"'}, "color": "#c25e00"}]
        pts = (click or {}).get("points") or []
        cd = pts[0].get("customdata") if pts else None
        if not cd or len(cd) != 2:
            return "Click a chunk for its details.", base
        chunk, attempt = cd
        text = pts[0].get("hovertext", "")
        return (html.Div([html.B(f"Selected: chunk {chunk}, attempt {attempt}"), html.Br(),
                          *[x for line in text.split("<br>")[1:] for x in (line, html.Br())]]),
                base + [{"if": {"filter_query": f"{{chunk}} = {int(chunk)} && {{attempt}} = {int(attempt)}"},
                         "backgroundColor": "#fff3c4"}])
