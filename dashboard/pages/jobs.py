"""Jobs page (list with totals) and job page (chunk timeline per GPU over the GPUs' curves, chunk
details on hover/click, per-chunk table sortable by cost, link to the job report)."""

from __future__ import annotations

from dash import Input, Output, dash_table, dcc, html

from dashboard.data import Data
from dashboard.figures import GIB, chunk_category, job_figure, lane_label
from ffray.analytics.costs import worker_lanes

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
            "report": f"[report](/report/{j['job_id']}/trend.png)" if report else ""})
    return rows


JOB_COLUMNS = [("job", "job", "markdown"), ("status", "status", None), ("created", "created (UTC)", None),
               ("input", "input", None), ("resolution", "resolution", None), ("frames", "frames", None),
               ("chunks", "chunks", None), ("duration_s", "duration (s)", None),
               ("gpu_seconds", "GPU-seconds", None), ("energy_kj", "energy (kJ)", None),
               ("retries", "retries", None), ("gpu_model", "GPU model", None),
               ("report", "report", "markdown")]


def jobs_layout(data: Data) -> html.Div:
    st = data.status()
    if st["missing"]:
        return html.Div(html.P(f"No data directory at {data.target} yet. {NO_JOBS}", className="empty"))
    jobs = data.jobs()
    if not jobs:
        return html.Div(html.P(NO_JOBS, className="empty"))
    return html.Div([
        html.H3(f"{len(jobs)} job(s)"),
        dash_table.DataTable(
            id="j-table", data=job_rows(jobs, data), page_size=50, sort_action="native",
            filter_action="native", markdown_options={"link_target": "_self"},
            columns=[{"id": c, "name": n, **({"presentation": p} if p else {})} for c, n, p in JOB_COLUMNS],
            style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px"},
            style_header={"fontWeight": "bold"})])


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
    job, chunks, trend, _, labels = detail
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
        dcc.Graph(id="job-fig", figure=job_figure(chunks, trend, labels), config={"displaylogo": False}),
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
