"""Capacity page: per GPU class, the fitted cost law (``ffray.analytics.capacity``); right-sizing
of past jobs (cheapest class whose memory fits peak x 1.2 and whose predicted time meets the
deadline); and a form predicting a new job's GPU-seconds, time, memory and cost."""

from __future__ import annotations

from dash import Input, Output, State, dash_table, dcc, html

from dashboard.data import Data
from ffray.errors import FFrayError

GIB = float(1 << 30)
NO_DATA = (
    "No finished GPU jobs with telemetry yet: capacity fits need jobs run on GPUs "
    "(`ffray swap`, telemetry on by default), at least 8 per GPU class."
)


def _table(id_: str, rows: list[dict], cols: list[tuple[str, str]], **kw):
    return dash_table.DataTable(
        id=id_,
        data=rows,
        columns=[
            {"id": c, "name": n, **({"presentation": "markdown"} if c == "job" else {})} for c, n in cols
        ],
        sort_action="native",
        markdown_options={"link_target": "_self"},
        style_cell={"fontFamily": "sans-serif", "fontSize": 12, "padding": "3px"},
        **kw,
    )


def layout(data: Data) -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.Button("Refit from the store", id="cap-refit", n_clicks=0),
                    html.Div(
                        [
                            html.Label("Deadline per job (s, optional)"),
                            dcc.Input(id="cap-deadline", type="number", min=1, debounce=True),
                        ],
                        className="ctl",
                    ),
                    dcc.Checklist(
                        id="cap-extra",
                        options=[
                            {
                                "label": " extrapolate to classes without data (by relative throughput)",
                                "value": "x",
                            }
                        ],
                        value=[],
                    ),
                ],
                className="controls",
            ),
            html.Div(id="cap-msg", className="msg"),
            dcc.Loading(html.Div(id="cap-body")),
            dcc.Store(id="cap-model"),
            html.H3("Predict a job"),
            html.Div(
                [
                    html.Div(
                        [html.Label("Frames"), dcc.Input(id="p-frames", type="number", value=9000, min=1)],
                        className="ctl",
                    ),
                    html.Div(
                        [html.Label("Resolution"), dcc.Input(id="p-res", type="text", value="1920x1080")],
                        className="ctl",
                    ),
                    html.Div(
                        [
                            html.Label("Faces per frame"),
                            dcc.Input(id="p-faces", type="number", value=1, min=0, step=0.1),
                        ],
                        className="ctl",
                    ),
                    html.Div(
                        [html.Label("GPUs"), dcc.Input(id="p-gpus", type="number", value=1, min=1)],
                        className="ctl",
                    ),
                    html.Div(
                        [
                            html.Label("GPU class"),
                            dcc.Dropdown(id="p-gpu", placeholder="every class with a fit"),
                        ],
                        className="ctl wide",
                    ),
                    html.Button("Predict", id="p-go", n_clicks=0),
                ],
                className="controls",
            ),
            html.Div(id="p-out"),
        ]
    )


def _fits_section(fits: list[dict], model: dict, summary: dict) -> list:
    out = [
        html.H3("Fitted cost law per GPU class"),
        html.P(
            f"{model['meta'].get('law', '')}; memory: {model['meta'].get('memory_law', '')}", className="msg"
        ),
    ]
    rows = [
        {
            **f,
            "gpu_models": ", ".join(f["gpu_models"] or []),
            **{
                k: (round(f[k], 6) if isinstance(f.get(k), float) else f.get(k))
                for k in ("a", "b", "c", "d", "r2")
            },
            "spread": None if f.get("spread") is None else f"{f['spread']:.1%}",
            "mem_m0": round(f["mem_m0"] / GIB, 2) if f.get("mem_m0") is not None else None,
            "mem_m1": round(f["mem_m1"] / GIB, 3) if f.get("mem_m1") is not None else None,
        }
        for f in fits
    ]
    out.append(
        _table(
            "cap-fits",
            rows,
            [
                ("gpu_class", "class"),
                ("gpu_models", "GPU models"),
                ("n_jobs", "jobs"),
                ("a", "s per frame·MP"),
                ("b", "s per face"),
                ("c", "s per frame"),
                ("d", "s per job"),
                ("outliers", "outlier jobs"),
                ("r2", "R²"),
                ("spread", "residual spread"),
                ("mem_m0", "mem GiB at 0 MP"),
                ("mem_m1", "mem GiB per MP"),
                ("note", "note"),
            ],
        )
    )
    outliers = [{"gpu_class": f["gpu_class"], "job": f"[{o['job_id']}](/job/{o['job_id']})",
                 "gpu_seconds": round(o["gpu_seconds"], 1), "fitted": round(o["fitted_gpu_seconds"], 1),
                 "why": o["why"]} for f in model["fits"] for o in f.get("outliers", [])]
    if outliers:
        out += [html.H4("Outlier jobs (off their class's law: left out of the fit and of right-sizing)"),
                _table("cap-outliers", outliers, [("gpu_class", "class"), ("job", "job"),
                                                  ("gpu_seconds", "GPU-s"), ("fitted", "fit's GPU-s"),
                                                  ("why", "why")])]
    poor = [f"{f['gpu_class']}: {'; '.join(f['poor'])}" for f in model["fits"] if f.get("poor")]
    if poor:
        out.append(html.P(["Poor fits (reported, never used for right-sizing): ", "; ".join(poor)],
                          id="cap-poor", className="error"))
    too_few = [f"{n['gpu_class']} ({n['n_jobs']} jobs): {n['reason']}" for n in model.get("no_fit", [])]
    if too_few:
        out.append(html.P(["Seen but not fitted (so never predicted): ", "; ".join(too_few)], id="cap-nofit",
                          className="msg"))
    no_data = [f"{c['gpu_class']}: {c['reason']}" for c in summary.get("classes_without_data", [])
               if not any(c["gpu_class"] in t for t in too_few)]
    if no_data:
        out.append(html.Details([html.Summary(f"{len(no_data)} GPU class(es) in the table with no jobs"),
                                 html.Ul([html.Li(m) for m in no_data])]))
    return out


def _right_size_section(rows: list[dict], s: dict) -> list:
    def pct(x):
        return "–" if x is None else f"{x:.1%}"

    cards = [
        ("jobs priced", s["jobs_priced"]),
        ("over-provisioned", f"{s['over_provisioned']} ({pct(s['over_provisioned_share'])})"),
        ("actual cost", f"${s['actual_cost']:,.2f}"),
        ("right-sized cost", f"${s['right_sized_cost']:,.2f}"),
        ("projected saving", pct(s["saving_share"]) + (
            "" if s.get("saving_share_low") is None or s["saving_share_low"] != s["saving_share_low"]
            else f" (95 %: {pct(s['saving_share_low'])} – {pct(s['saving_share_high'])})")),
    ]
    moves = ", ".join(f"{m['from']} → {m['to']}: {m['jobs']}" for m in s.get("moves", [])) or "none"
    table = [
        {
            "job": f"[{r['job_id']}](/job/{r['job_id']})",
            "resolution": f"{r['width']}x{r['height']}",
            "frames": r["frames"],
            "ran_on": r["gpu_class"],
            "cost": _money(r["cost"]),
            "best_class": r["best_class"],
            "best_cost": _money(r["best_cost"]),
            "best_range": None if r.get("best_cost_low") is None
            else f"{r['best_cost_low']:.4f}–{r['best_cost_high']:.4f}",
            "best_wall_s": None if r["best_wall_s"] is None else round(r["best_wall_s"], 1),
            "saving": _money(r["saving"]),
            "over": "yes" if r["over_provisioned"] else "",
            "note": r.get("note") or ("extrapolated" if r.get("extrapolated") else ""),
            "outlier": "yes" if r.get("outlier") else "",
        }
        for r in rows
    ]
    return [
        html.H3("Right-sizing of past jobs"),
        html.Div(
            [
                html.Div([html.Div(k, className="k"), html.Div(str(v), className="v")], className="card")
                for k, v in cards
            ],
            className="cards",
        ),
        html.P(f"cheapest class that fits, per over-provisioned job: {moves}", className="msg"),
        _table(
            "cap-jobs",
            table,
            [
                ("job", "job"),
                ("resolution", "resolution"),
                ("frames", "frames"),
                ("ran_on", "ran on"),
                ("cost", "cost $"),
                ("best_class", "cheapest fit"),
                ("best_cost", "its cost $"),
                ("best_range", "95 % range $"),
                ("best_wall_s", "its time (s)"),
                ("saving", "saving $"),
                ("over", "over-provisioned"),
                ("outlier", "outlier"),
                ("note", "note"),
            ],
            page_size=25,
            filter_action="native",
        ),
    ]


def _money(x):
    return None if x is None else round(float(x), 4)


def register(app, data: Data) -> None:
    @app.callback(
        Output("cap-body", "children"),
        Output("cap-model", "data"),
        Output("cap-msg", "children"),
        Output("p-gpu", "options"),
        Input("cap-refit", "n_clicks"),
        Input("cap-deadline", "value"),
        Input("cap-extra", "value"),
    )
    def _capacity(n_refit, deadline, extra):
        if data.missing():
            return (
                html.P(f"No data directory at {data.target} yet. {NO_DATA}", className="empty"),
                None,
                "",
                [],
            )
        if deadline is not None and deadline <= 0:
            return None, None, "the deadline must be a positive number of seconds", []
        model, source, fits, rows, summary = data.capacity(
            refit=bool(n_refit), deadline_s=deadline, extrapolate=bool(extra)
        )
        if not model["meta"].get("jobs"):
            return html.P(NO_DATA, className="empty"), None, "", []
        body = _fits_section(fits, model, summary) + _right_size_section(rows, summary)
        options = [f["gpu_class"] for f in model["fits"]]
        return body, model, f"{model['meta']['jobs']} finished jobs; {source}", options

    @app.callback(
        Output("p-out", "children"),
        Input("p-go", "n_clicks"),
        State("cap-model", "data"),
        State("p-frames", "value"),
        State("p-res", "value"),
        State("p-faces", "value"),
        State("p-gpu", "value"),
        State("p-gpus", "value"),
        State("cap-extra", "value"),
        prevent_initial_call=True,
    )
    def _predict(_n, model, frames, res, faces, gpu, gpus, extra):
        from ffray.analytics.output import resolution_arg

        if not model:
            return html.P("No capacity model: see above.", className="empty")
        try:
            if not frames or frames < 1 or faces is None or faces < 0 or not gpus or gpus < 1:
                raise FFrayError("frames and GPUs must be >= 1 and faces per frame >= 0")
            w, h = resolution_arg(res)
            rows = data.predict(
                model, int(frames), w, h, float(faces), gpu=gpu, gpus=int(gpus), extrapolate=bool(extra)
            )
        except FFrayError as e:
            return html.P(str(e), className="error")
        out = [
            {
                "gpu_class": r["gpu_class"] + (" (extrapolated)" if r["extrapolated"] else "")
                + (f" (poor fit: {r['poor_fit']})" if r.get("poor_fit") else "")
                + (" (at the floor: frames x fastest per-frame time seen)" if r.get("floored") else ""),
                "jobs": r["n_jobs"],
                "gpu_seconds": f"{r['gpu_seconds']:,.0f} "
                f"({r['gpu_seconds_low']:,.0f}–{r['gpu_seconds_high']:,.0f})",
                "wall": f"{r['wall_s']:,.0f} s ({r['wall_s_low']:,.0f}–{r['wall_s_high']:,.0f})",
                "memory": f"{r['peak_mem_bytes'] / GIB:.1f} GiB of {r['memory_gib']:g}",
                "fits": "yes" if r["fits_memory"] else "no",
                "cost": "–"
                if r["cost"] is None
                else f"${r['cost']:,.3f} (${r['cost_low']:,.3f}–${r['cost_high']:,.3f})",
            }
            for r in rows
        ]
        return _table(
            "p-table",
            out,
            [
                ("gpu_class", "class"),
                ("jobs", "jobs in fit"),
                ("gpu_seconds", "GPU-seconds (95 %)"),
                ("wall", "wall time"),
                ("memory", "peak memory"),
                ("fits", "fits x1.2"),
                ("cost", "cost (95 %)"),
            ],
        )
