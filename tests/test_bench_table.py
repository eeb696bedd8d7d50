"""scripts/bench_table.py: bench_swap reports as docs/benchmarks.md rows."""

from __future__ import annotations

import json

from scripts.bench_table import COLUMNS, load, row, table


def test_rows_put_each_figure_in_its_column_and_mark_what_a_report_lacks(tmp_path):
    full = {"fps_processing": 250.04, "fps_steady": 270.0, "fps_whole_job": 130.2,
            "ceiling_transcode_before_after": [340.0, 350.0], "ceiling_whole_sum_of_rates": [345.5, 330.1],
            "share_processing": 0.7246, "share_steady": 0.78, "share_whole_processing": 0.74,
            "share_whole_steady": 0.8, "host_cpu_percent_processing": 89.4,
            "core_ms_per_frame_processing": {"host": 61.4, "worker": 4.3, "codec": 56.1},
            "gpu_util_mean_steady": 48.6, "encoder_busy_share": 0.874, "workers_ready_s": 2.71,
            "worker_setup_phases": [{"context_s": 0.1, "engine_s": 1.9}]}
    cells = dict(zip(COLUMNS, row("d1", full, gpu_ceiling=500.0)))
    assert len(cells) == len(COLUMNS)
    assert cells["processing frames/s"] == "250.0" and cells["whole job"] == "**130.2**"
    assert cells["ceiling (first frames): before / after"] == "340.0 / 350.0"
    share = cells["share processing (steady) of the first"]
    assert share.startswith("72.5 % (78.0 %); of the GPU's 500: 50.0 %")
    assert cells["core-ms a frame: host / worker / codec"] == "61.4 / 4.3 / 56.1"
    assert cells["encoder busy"] == "0.87" and cells["workers ready"] == "2.71 s"
    empty = dict(zip(COLUMNS, row("x", {})))
    assert all(v == "–" for k, v in empty.items() if k not in ("run", "whole job",
               "share processing (steady) of the first", "of the whole input"))
    path = tmp_path / "d1.json"
    path.write_text("made /tmp/x.mp4 in 1.0 s\n" + json.dumps(full))  # bench_swap's first line
    text = table([("d1", load(path))])
    assert text.count("\n| d1 |") == 1 and "- d1 set-up: context_s 0.10, engine_s 1.90" in text
