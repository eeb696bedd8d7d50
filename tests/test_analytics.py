"""Analytics over Parquet written through the real telemetry store API: per-job and per-chunk
costs against constructed values, the capacity fits against a known law, right-sizing, predict
and the ``ffray analyze`` command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffray.analytics import capacity as C
from ffray.analytics import gpus as G
from ffray.analytics import rightsize as R
from ffray.analytics.costs import chunk_costs, job_costs
from ffray.analytics.source import Store
from ffray.cli import main
from tests.analytics_data import Chunk, Gpu, Job, law_job, write_store

LAW = {"A": 0.004, "B": 0.006, "C": 0.002, "D": 3.0, "M0": 1.5e9, "M1": 1.2e9}
RES = [(1280, 720), (1920, 1080), (2560, 1440), (3840, 2160)]
H100 = Gpu("GPU-h100-0", "NVIDIA H100 80GB HBM3", "n0", 0, 80 << 30)
H100B = Gpu("GPU-h100-1", "NVIDIA H100 80GB HBM3", "n0", 1, 80 << 30)
A100 = Gpu("GPU-a100-0", "NVIDIA A100-SXM4-40GB", "n1", 0, 40 << 30)
L4 = Gpu("GPU-l4-0", "NVIDIA L4", "n2", 0, 24 << 30)
A10G = Gpu("GPU-a10g-0", "NVIDIA A10G", "n3", 0, 24 << 30)
REL = {H100: 1.0, A100: 0.6, L4: 0.3, A10G: 0.35}


def law_seconds(frames, mp, faces, rel):
    return (LAW["A"] * frames * mp + LAW["B"] * faces + LAW["C"] * frames + LAW["D"]) / rel


def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, needle):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1, err
    assert lines[0].startswith("ffray: error:") and needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def exact_store(tmp_path_factory):
    """Two jobs with hand-picked seconds, shares, power and memory; one chunk retried."""
    root = tmp_path_factory.mktemp("exact")
    jobs = [Job("j-exact", [H100, H100B], [
        Chunk(10, frames=100, faces=300, util=80.0, mem_proc=3_000_000_000),
        Chunk(20, frames=100, faces=100, util=60.0, mem_proc=4_500_000_000, failed_s=3),
        Chunk(5, frames=100, faces=200, util=90.0, mem_proc=3_500_000_000)],
        watts=300.0, mem_device=6_000_000_000, share=0.5),
        Job("j-other", [H100], [Chunk(7, frames=50, faces=0, util=40.0, mem_proc=1_000_000_000)],
            watts=120.0, mem_device=2_000_000_000, share=1.0)]
    write_store(root, jobs)
    return root


def test_job_and_chunk_costs_equal_the_constructed_values(exact_store):
    store = Store(exact_store)
    ch = chunk_costs(store, "j-exact").to_pylist()
    assert [(c["chunk"], c["attempt"], c["status"]) for c in ch] == \
        [(0, 1, "done"), (1, 1, "failed"), (1, 2, "done"), (2, 1, "done")]
    done = [c for c in ch if c["status"] == "done"]
    assert [c["gpu_seconds"] for c in done] == [5.0, 10.0, 2.5]  # seconds x share 0.5
    assert [c["device_energy_j"] for c in done] == [3000.0, 6000.0, 1500.0]  # 300 W x seconds
    assert [c["energy_j"] for c in done] == [1500.0, 3000.0, 750.0]
    assert [c["peak_mem_process"] for c in done] == [3_000_000_000, 4_500_000_000, 3_500_000_000]
    assert [c["peak_mem_device"] for c in done] == [6_000_000_000] * 3
    assert [c["samples"] for c in done] == [11, 21, 6]  # 1 Hz, both ends inclusive
    assert [c["mean_util"] for c in done] == [80.0, 60.0, 90.0]
    assert ch[1]["seconds"] == 3.0 and ch[1]["gpu_seconds"] == 0.0
    jobs = {r["job_id"]: r for r in job_costs(store).to_pylist()}
    j = jobs["j-exact"]
    assert j["gpu_seconds"] == 17.5 and j["energy_j"] == 5250.0
    assert j["peak_mem_process"] == 4_500_000_000 and j["peak_mem_device"] == 6_000_000_000
    assert j["mean_util"] == pytest.approx((80 * 11 + 60 * 21 + 90 * 6) / 38)
    assert (j["frames"], j["retries"], j["failed_attempts"], j["gpus_used"]) == (300, 1, 1, 2)
    assert j["faces_per_frame"] == pytest.approx(600 / 300) and j["gpu_model"] == H100.name
    o = jobs["j-other"]
    assert (o["gpu_seconds"], o["energy_j"], o["peak_mem_process"]) == (7.0, 840.0, 1_000_000_000)


def test_analyze_jobs_and_chunks_cli_formats(exact_store, capsys, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"NVIDIA H100 80GB HBM3": 2.0}))
    rc, out, _ = run_cli(capsys, "analyze", "jobs", "--data-dir", exact_store, "--format", "json",
                         "--prices", prices)
    assert rc == 0
    rows = {r["job_id"]: r for r in json.loads(out)}
    j = rows["j-exact"]
    assert (j["gpu_class"], j["price_per_hour"], j["gpu_seconds"]) == ("H100", 2.0, 17.5)
    assert j["cost"] == pytest.approx(17.5 / 3600 * 2.0)
    assert j["cost_per_1000_frames"] == pytest.approx(17.5 / 3600 * 2.0 / 300 * 1000)
    rc, out, _ = run_cli(capsys, "analyze", "jobs", "--data-dir", exact_store, "--format", "csv")
    lines = out.strip().splitlines()
    assert rc == 0 and len(lines) == 3 and lines[0].startswith('"job_id"')
    pq_out = tmp_path / "jobs.parquet"
    rc, out, _ = run_cli(capsys, "analyze", "jobs", "--data-dir", exact_store, "--format", "parquet",
                         "--output", pq_out)
    import pyarrow.parquet as pq

    t = pq.read_table(pq_out)
    assert rc == 0 and t.num_rows == 2 and {"cost_per_1000_frames", "energy_j"} <= set(t.column_names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    rc, out, _ = run_cli(capsys, "analyze", "jobs", "--data-dir", exact_store)
    assert rc == 0 and "j-exact" in out and "17.50" in out
    rc, out, _ = run_cli(capsys, "analyze", "chunks", "j-exact", "--data-dir", exact_store,
                         "--format", "json")
    ch = json.loads(out)
    assert rc == 0 and [c["energy_j"] for c in ch if c["status"] == "done"] == [1500.0, 3000.0, 750.0]


def law_jobs(gpu, n, rng, noise=0.0, prefix=None):
    out = []
    for k in range(n):
        w, h = RES[rng.integers(len(RES))]
        frames = [int(x) for x in rng.integers(60, 300, rng.integers(2, 6))]
        out.append(law_job(f"{prefix or gpu.uuid}-{k:02d}", gpu, LAW, REL[gpu], w, h,
                           float(rng.choice([0.5, 1, 2, 3])), frames,
                           noise=float(rng.normal(1, noise)) if noise else 1.0))
    return out


@pytest.fixture(scope="module")
def law_store(tmp_path_factory):
    """Noise-free jobs on H100, A100 and L4 (10 each) and 3 on A10G (too few for a fit)."""
    root = tmp_path_factory.mktemp("law")
    rng = np.random.default_rng(3)
    jobs = law_jobs(H100, 10, rng) + law_jobs(A100, 10, rng) + law_jobs(L4, 10, rng) + law_jobs(A10G, 3, rng)
    # right-sizing cases, run on the H100: small memory, 25 GB, 36 GB
    for name, mem in (("case-small", None), ("case-25g", 25_000_000_000), ("case-36g", 36_000_000_000)):
        jobs.append(law_job(name, H100, LAW, 1.0, 1920, 1080, 1.0, [200, 200], mem_proc=mem))
    write_store(root, jobs)
    return root


def test_fit_recovers_the_law_per_class_and_refuses_classes_with_too_few_jobs(law_store):
    store = Store(law_store)
    model = C.fit_model(store, G.load_classes())
    assert [f["gpu_class"] for f in model.fits] == ["A100-40GB", "H100", "L4"]
    for f in model.fits:
        rel = {"H100": 1.0, "A100-40GB": 0.6, "L4": 0.3}[f["gpu_class"]]
        want = {"frames_mp": LAW["A"] / rel, "faces": LAW["B"] / rel, "frames": LAW["C"] / rel,
                "intercept": LAW["D"] / rel}
        for k, v in want.items():  # span times are microseconds: tiny rounding only
            assert f["coefficients"][k] == pytest.approx(v, rel=1e-3, abs=1e-4), (f["gpu_class"], k)
        assert f["r2"] > 0.99999 and f["identified"]
        assert f["n_jobs"] == (13 if f["gpu_class"] == "H100" else 10)
        if f["gpu_class"] != "H100":  # memory follows M0 + M1 x MP there (the H100 has the cases)
            assert f["memory"]["coefficients"]["intercept"] == pytest.approx(LAW["M0"], rel=1e-6)
            assert f["memory"]["coefficients"]["megapixels"] == pytest.approx(LAW["M1"], rel=1e-6)
    assert model.no_fit == [{"gpu_class": "A10G", "n_jobs": 3, "known_class": True,
                             "reason": "3 finished job(s) on it, 8 needed for a fit"}]
    with pytest.raises(Exception, match="no capacity fit for GPU class 'A10G'"):
        C.predict(model, G.load_classes(), 1000, 1920, 1080, 1.0, gpu="NVIDIA A10G")


def test_noisy_fit_recovers_coefficients_within_their_standard_errors(tmp_path):
    rng = np.random.default_rng(11)
    write_store(tmp_path, law_jobs(H100, 40, rng, noise=0.03))
    f = C.fit_model(Store(tmp_path), G.load_classes()).fit_for("H100")
    for k, true in (("frames_mp", LAW["A"]), ("faces", LAW["B"]), ("frames", LAW["C"]),
                    ("intercept", LAW["D"])):
        se = f["std_errors"][k]
        assert abs(f["coefficients"][k] - true) < 4 * se, (k, f["coefficients"][k], se)
    assert f["std_errors"]["frames_mp"] < 0.2 * LAW["A"]  # the data pin the pixel cost down
    assert 0.9 < f["r2"] < 1.0 and f["residual_std"] > 0


def test_right_size_picks_the_cheapest_class_that_fits_and_meets_the_deadline(law_store, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"L4": 0.5}))  # per H100-second of work: L4 1.67, A100 2.0, H100 3.0
    classes = G.load_classes(prices_path=prices)
    store = Store(law_store)
    model = C.fit_model(store, classes)
    rows, summary = R.right_size(store, model, classes)
    by = {r["job_id"]: r for r in rows}
    s = law_seconds(400, 1920 * 1080 / 1e6, 400, 1.0)
    assert by["case-small"]["gpu_seconds"] == pytest.approx(s, rel=1e-6)
    assert by["case-small"]["best_class"] == "L4" and by["case-small"]["over_provisioned"]
    assert by["case-small"]["best_gpu_seconds"] == pytest.approx(s / 0.3, rel=1e-3)
    assert by["case-small"]["best_cost"] == pytest.approx(s / 0.3 / 3600 * 0.5, rel=1e-3)
    assert by["case-25g"]["best_class"] == "A100-40GB"  # 25 GB x 1.2 > 24 GiB; fits 40 GiB
    assert by["case-36g"]["best_class"] == "H100" and not by["case-36g"]["over_provisioned"]
    assert all(r["best_class"] == "L4" for r in rows if r["gpu_class"] == "L4")
    a10g = [r for r in rows if r["gpu_class"] == "A10G"]
    assert len(a10g) == 3 and all(r["best_class"] != "A10G" for r in a10g)  # measured but unfitted
    without = {w["gpu_class"]: w["reason"] for w in summary["classes_without_data"]}
    assert without["T4"] == "no data: not considered"
    assert without["A10G"].startswith("3 finished job(s)")
    assert "A10G" not in {c["gpu_class"] for c in summary["classes_considered"]}
    assert summary["jobs"] == len(rows) == 36
    assert summary["over_provisioned"] == sum(bool(r["over_provisioned"]) for r in rows)
    assert summary["over_provisioned_share"] == summary["over_provisioned"] / 36
    assert summary["saving_share"] == pytest.approx(
        1 - sum(r["best_cost"] for r in rows) / sum(r["cost"] for r in rows))
    # a deadline between the A100's and the L4's predicted wall time moves the small case
    rows_d, _ = R.right_size(store, model, classes, deadline_s=2.5 * s)
    assert {r["job_id"]: r for r in rows_d}["case-small"]["best_class"] == "A100-40GB"
    # extrapolation fills classes without data, marked as such
    rows_x, sum_x = R.right_size(store, model, classes, extrapolate=True)
    assert "T4" in {c["gpu_class"] for c in sum_x["classes_considered"]}
    assert all(r["extrapolated"] == (r["best_class"] not in ("L4", "A100-40GB", "H100"))
               for r in rows_x if r["best_class"] != r["gpu_class"])


def test_predict_matches_the_fit_and_the_cli(law_store, capsys):
    store = Store(law_store)
    classes = G.load_classes()
    model = C.fit_model(store, classes)
    rows = {r["gpu_class"]: r for r in C.predict(model, classes, 3000, 1920, 1080, 2.0, gpus=2)}
    assert set(rows) == {"H100", "A100-40GB", "L4"}
    for name, rel in (("H100", 1.0), ("A100-40GB", 0.6), ("L4", 0.3)):
        want = law_seconds(3000, 1920 * 1080 / 1e6, 6000, rel)
        assert rows[name]["gpu_seconds"] == pytest.approx(want, rel=1e-3)
        assert rows[name]["wall_s"] == pytest.approx(rows[name]["gpu_seconds"] / 2)
        assert rows[name]["cost"] == pytest.approx(rows[name]["gpu_seconds"] / 3600 *
                                                   G.by_name(classes)[name]["price_per_hour"])
    # the same numbers from the fitted coefficients, and the interval from (X'X)^-1
    f = model.fit_for("L4")
    x = np.array([3000 * 1920 * 1080 / 1e6, 6000, 3000, 1])
    coef = np.array([f["coefficients"][k] for k in C.FEATURES])
    assert rows["L4"]["gpu_seconds"] == pytest.approx(float(x @ coef), rel=1e-12)
    z = x / 3000  # the fit is per frame: the interval is frames x the per-frame one
    half = 3000 * f["t95"] * f["scale"] * np.sqrt(1 + z @ np.array(f["ztz_inv"]) @ z)
    high = rows["L4"]["gpu_seconds_high"]
    assert high - rows["L4"]["gpu_seconds"] == pytest.approx(half, rel=1e-9, abs=1e-9)
    assert rows["L4"]["peak_mem_bytes"] == pytest.approx(LAW["M0"] + LAW["M1"] * 1920 * 1080 / 1e6, rel=1e-6)
    rc, out, _ = run_cli(capsys, "analyze", "predict", "--data-dir", law_store, "--frames", "3000",
                         "--resolution", "1920x1080", "--faces", "2", "--gpus", "2", "--format", "json",
                         "--refit")
    cli = {r["gpu_class"]: r for r in json.loads(out)}
    assert rc == 0 and cli["L4"]["gpu_seconds"] == pytest.approx(rows["L4"]["gpu_seconds"], rel=1e-12)
    assert (law_store / "capacity" / "model.json").is_file()  # cached for the next predict / swap
    rc, out, _ = run_cli(capsys, "analyze", "predict", "--data-dir", law_store, "--frames", "3000",
                         "--resolution", "1920x1080", "--faces", "2", "--gpu", "T4", "--extrapolate",
                         "--format", "json")
    (t4,) = json.loads(out)
    assert rc == 0 and t4["extrapolated"] and t4["extrapolated_from"] == "H100"
    assert t4["gpu_seconds"] == pytest.approx(rows["H100"]["gpu_seconds"] / 0.15, rel=1e-9)


def test_capacity_cli_reports_fits_and_right_sizing(law_store, capsys):
    rc, out, _ = run_cli(capsys, "analyze", "capacity", "--data-dir", law_store, "--format", "json")
    doc = json.loads(out)
    assert rc == 0 and [f["gpu_class"] for f in doc["model"]["fits"]] == ["A100-40GB", "H100", "L4"]
    assert doc["summary"]["jobs"] == len(doc["jobs"]) == 36
    saved = json.loads((law_store / "capacity" / "model.json").read_text())
    assert saved["fits"][1]["coefficients"] == doc["model"]["fits"][1]["coefficients"]
    rc, out, _ = run_cli(capsys, "analyze", "capacity", "--data-dir", law_store)
    assert rc == 0 and "A10G" in out and "3 finished job(s)" in out and "over-provisioned" in out


def test_eta_uses_the_model_for_the_cluster_gpu_class(law_store):
    from ffray.analytics import eta

    classes = G.load_classes()
    assert eta.cluster_class({"GPU": 4.0, "accelerator_type:H100": 1.0}, classes) == "H100"
    assert eta.cluster_class({"accelerator_type:H100": 1.0, "accelerator_type:L4": 1.0}, classes) is None
    assert eta.cluster_class({"CPU": 2.0}, classes) is None
    model = C.fit_model(Store(law_store), classes)
    est = eta.estimate(model, classes, "L4", 3000, 1920, 1080, gpu_share=2.0, faces_per_frame=2.0)
    want = C.predict(model, classes, 3000, 1920, 1080, 2.0, gpu="L4")[0]["gpu_seconds"]
    assert est["gpu_seconds"] == want and est["wall_s"] == want / 2 and "L4, 10 jobs" in est["note"]
    assert eta.remaining_s(est, 1500, 3000) == pytest.approx(want / 4)
    assert eta.estimate(model, classes, "T4", 3000, 1920, 1080, 1.0) is None  # no fit: no estimate


def test_gpu_classes_match_nvml_names_and_files_extend_them(tmp_path):
    classes = G.load_classes()
    assert G.classify("NVIDIA H100 80GB HBM3", classes) == "H100"
    assert G.classify("NVIDIA A100-SXM4-40GB", classes) == "A100-40GB"
    assert G.classify("NVIDIA A100 80GB PCIe", classes) == "A100-80GB"
    assert G.classify("NVIDIA L40S", classes) == "L40S" and G.classify("NVIDIA L4", classes) == "L4"
    assert G.classify("NVIDIA A10G", classes) == "A10G" and G.classify("Tesla T4", classes) == "T4"
    assert G.classify("NVIDIA GeForce RTX 4090", classes) == "NVIDIA GeForce RTX 4090"  # its own class
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps([{"name": "RTX4090", "match": ["RTX 4090"], "memory_gib": 24,
                                  "relative_throughput": 0.5, "price_per_hour": 0.4},
                                 {"name": "H100", "price_per_hour": 2.25}]))
    ext = G.by_name(G.load_classes(specs_path=specs))
    assert G.classify("NVIDIA GeForce RTX 4090", list(ext.values())) == "RTX4090"
    assert ext["H100"]["price_per_hour"] == 2.25 and ext["H100"]["memory_gib"] == 80


def test_bad_arguments_give_one_line_errors(exact_store, law_store, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    negative = tmp_path / "neg.json"
    negative.write_text(json.dumps({"H100": -1}))
    cases = [
        (["analyze", "chunks", "nope", "--data-dir", exact_store], "no job 'nope'"),
        (["analyze", "predict", "--data-dir", law_store, "--frames", "10", "--resolution", "19x",
          "--faces", "1"], "--resolution wants WIDTHxHEIGHT"),
        (["analyze", "jobs", "--data-dir", empty], "no analytics data"),
        (["analyze", "capacity", "--data-dir", empty], "no analytics data"),
        (["analyze", "jobs", "--data-dir", exact_store, "--since", "yesterday"], "--since wants"),
        (["analyze", "jobs", "--data-dir", exact_store, "--format", "parquet"], "needs --output"),
        (["analyze", "jobs", "--data-dir", exact_store, "--prices", bad_json], "is not JSON"),
        (["analyze", "jobs", "--data-dir", exact_store, "--prices", negative], "non-negative"),
        (["analyze", "predict", "--data-dir", law_store, "--frames", "10", "--resolution", "640x480",
          "--faces", "1", "--gpu", "T4", "--refit"], "no capacity fit for GPU class 'T4'"),
        (["analyze", "predict", "--data-dir", law_store, "--frames", "0", "--resolution", "640x480",
          "--faces", "1"], "--frames must be > 0"),
        (["analyze", "capacity", "--data-dir", law_store, "--processor", "stamp"],
         "no finished jobs of processor 'stamp'"),
        (["analyze", "jobs", "--data-dir", exact_store, "--since", "2030-01-01"], "no jobs since"),
    ]
    for args, needle in cases:
        rc, _, err = run_cli(capsys, *args)
        one_line_error(rc, err, needle)


OUTLIER_BOUND = 0.02  # docs/analytics.md: one outlier job moves no kept job's fitted GPU-seconds more


def test_one_outlier_job_is_listed_left_out_and_does_not_move_the_law(tmp_path, capsys):
    """The reported symptom: one long job at ~4x its law's time on the L4 (a contended GPU). Least
    squares gave that class a negative intercept and $0 predictions; the robust fit lists the job
    with why, leaves it out, and the law it gives is the law without that job."""
    rng = np.random.default_rng(7)
    clean = law_jobs(H100, 10, rng, noise=0.03) + law_jobs(L4, 10, rng, noise=0.03)
    long_job = law_job("long-l4", L4, LAW, REL[L4], 1920, 1080, 1.0, [300] * 8, noise=4.0)
    write_store(tmp_path / "with", clean + [long_job])
    rng = np.random.default_rng(7)  # the same clean jobs again (write_store places them)
    write_store(tmp_path / "without", law_jobs(H100, 10, rng, noise=0.03) + law_jobs(L4, 10, rng, noise=0.03))
    classes = G.load_classes()
    store, ref = Store(tmp_path / "with"), Store(tmp_path / "without")
    model, base = C.fit_model(store, classes), C.fit_model(ref, classes)
    f, f0 = model.fit_for("L4"), base.fit_for("L4")
    assert [o["job_id"] for o in f["outliers"]] == ["long-l4"] and not f0["outliers"]
    assert f["outliers"][0]["ratio"] > 3 and "left out of the fit" in f["outliers"][0]["why"]
    assert f["n"] == 10 and f["n_jobs"] == 11 and not f["poor"]
    jobs = C.job_table(ref, classes)
    X = C.design(*(jobs[c].to_numpy().astype(float) for c in ("frames", "megapixels", "faces")))
    on_l4 = np.array([g == "L4" for g in jobs["gpu_class"].to_pylist()])
    y, y0 = C.time_interval(f, X[on_l4])[0], C.time_interval(f0, X[on_l4])[0]
    assert np.max(np.abs(y / y0 - 1)) < OUTLIER_BOUND
    # predictions are positive and ranked by real cost: L4 at 1/0.3 of the H100's speed, 0.8 vs 3.0 $/h
    rows = C.predict(model, classes, 300, 1280, 720, 1.0)
    truth = {r: law_seconds(300, 1280 * 720 / 1e6, 300, REL[g]) for r, g in (("L4", L4), ("H100", H100))}
    for r in rows:
        assert r["gpu_seconds_low"] <= truth[r["gpu_class"]] <= r["gpu_seconds_high"]
        assert r["gpu_seconds_low"] > 0 and r["cost_low"] > 0 and r["poor_fit"] is None
    # right-sizing leaves the outlier where it ran and gives the saving with an interval
    rs_rows, s = R.right_size(store, model, classes)
    long_row = next(r for r in rs_rows if r["job_id"] == "long-l4")
    assert long_row["outlier"] and long_row["best_class"] == "L4" and long_row["saving"] == 0
    assert s["outliers"][0]["job_id"] == "long-l4"
    assert s["saving_share_low"] < s["saving_share"] < s["saving_share_high"]
    assert all(r["best_cost_low"] <= r["best_cost"] <= r["best_cost_high"] for r in rs_rows)
    # a fit of a window does not replace the cached model; the CLI lists the outlier
    (tmp_path / "with" / "capacity").mkdir()
    cached = tmp_path / "with" / "capacity" / "model.json"
    cached.write_text('{"meta": {"fitted_at": "before"}, "fits": []}')
    rc, out, _ = run_cli(capsys, "analyze", "capacity", "--data-dir", tmp_path / "with", "--since", "3650d")
    assert rc == 0 and "long-l4" in out and "not saved" in out
    assert json.loads(cached.read_text())["meta"]["fitted_at"] == "before"
    rc, out, _ = run_cli(capsys, "analyze", "capacity", "--data-dir", tmp_path / "with", "--since", "3650d",
                         "--save")
    assert rc == 0 and json.loads(cached.read_text())["meta"]["fitted_at"] != "before"


def test_a_class_whose_jobs_follow_no_law_is_poor_and_not_a_candidate(tmp_path):
    rng = np.random.default_rng(2)
    jobs = law_jobs(H100, 10, rng, noise=0.03) + law_jobs(L4, 10, rng, noise=0.45)
    write_store(tmp_path, jobs)
    classes = G.load_classes()
    store = Store(tmp_path)
    model = C.fit_model(store, classes)
    assert model.fit_for("L4")["poor"] and not model.fit_for("H100")["poor"]
    _, s = R.right_size(store, model, classes)
    assert "L4" not in {c["gpu_class"] for c in s["classes_considered"]}
    without = s["classes_without_data"]
    assert any(w["gpu_class"] == "L4" and w["reason"].startswith("poor fit") for w in without)
    rows = C.predict(model, classes, 300, 1280, 720, 1.0)
    assert rows[-1]["gpu_class"] == "L4" and rows[-1]["poor_fit"]  # reported, ranked last


def test_dashboard_capacity_reuses_its_job_table_until_a_file_changes(law_store, tmp_path):
    """The capacity page's job costs (a join of every span to the GPU samples) are computed once
    per state of the files behind them: the same table while nothing changed, a new one as soon as
    a job's record goes."""
    import shutil

    from dashboard.data import Data

    root = tmp_path / "store"
    shutil.copytree(law_store, root)
    d = Data(str(root), root)
    first = d.capacity(refit=True)
    table = d.memo["capacity_jobs"]
    again = d.capacity(refit=True)
    assert d.memo["capacity_jobs"] is table and again[2] == first[2] and again[3] == first[3]
    with d.session() as s:  # a page render's copy shares the memo
        s.capacity(refit=True)
    assert d.memo["capacity_jobs"] is table
    gone = sorted((root / "job_records").rglob("case-small.parquet"))
    assert len(gone) == 1
    gone[0].unlink()
    d.capacity(refit=True)
    assert d.memo["capacity_jobs"] is not table
    assert d.memo["capacity_jobs"].num_rows == table.num_rows - 1
    assert "case-small" not in d.memo["capacity_jobs"]["job_id"].to_pylist()
