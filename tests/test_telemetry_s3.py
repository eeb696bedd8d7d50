"""--data-dir as a pyarrow filesystem URI: telemetry and spans on S3 (a moto server on loopback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from ffray.analytics.costs import attribute
from ffray.telemetry.recorder import Recorder
from ffray.telemetry.spans import span_rows, write_spans
from tests.fake_nvml import FakeGpus

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                           allow_bucket_creation=True)
    fs.create_dir("telemetry-bucket")
    yield f"s3://telemetry-bucket/ffray?endpoint_override=127.0.0.1:{port}&scheme=http", fs
    srv.stop()


def test_recorder_spans_and_attribution_on_s3(s3, tmp_path, monkeypatch):
    uri, fs = s3
    monkeypatch.setenv("FFRAY_HOME", str(tmp_path / "home"))  # the node-local journal lives here
    gpus = FakeGpus(1)
    gpus.watts = {0: 250.0}
    rec = Recorder(uri, "n0", gpus, roll_seconds=5)
    t0 = 1_795_000_000.0
    for i in range(12):
        rec.step(t0 + i)
        gpus.advance(1.0)
    rec.close()
    files = [i.path for i in fs.get_file_info(pafs.FileSelector("telemetry-bucket/ffray/telemetry/gpu",
                                                                recursive=True))
             if i.type == pafs.FileType.File]
    assert len(files) == 2 and all("/date=" in f and "/node=n0/" in f for f in files)
    assert not any(Path(f).name.startswith(".") for f in files)  # no temp file left
    t = ds.dataset(files, format="parquet", filesystem=fs).to_table()
    assert t.num_rows == 12
    stats = [{"chunk": 0, "attempt": 1, "node_id": "n0", "gpu_uuids": [gpus.devs[0].uuid],
              "pid": 1, "actor_id": "a", "start": t0 + 2, "end": t0 + 8, "frames": 10,
              "gpus": 1.0, "stages": {}}]
    write_spans(uri, "j1", span_rows("j1", stats, []))
    rows = attribute(uri, "j1").to_pylist()
    assert len(rows) == 1 and rows[0]["energy_j"] == pytest.approx(6 * 250.0)
    assert rows[0]["gpu_seconds"] == pytest.approx(6.0)


@pytest.mark.slow
def test_swap_with_an_s3_data_dir(s3, media, tmp_path):
    uri, fs = s3
    env = {**os.environ, **CREDS, "FFRAY_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "ffray", "swap", str(media.cfr_silent), "-o",
                        str(tmp_path / "o.mp4"), "--processor", "stamp", "--chunk-seconds", "0.8",
                        "--actors", "1", "--telemetry-interval", "0.2", "--data-dir", uri],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-1500:]
    job = next((tmp_path / "home" / "jobs").iterdir())  # the ledger stays local
    assert json.loads((job / "job.json").read_text())["telemetry_target"] == uri
    listing = [i.path for i in fs.get_file_info(pafs.FileSelector("telemetry-bucket/ffray",
                                                                  recursive=True))
               if i.type == pafs.FileType.File]
    assert any("/telemetry/host/" in p for p in listing)
    assert any(p.endswith(f"/job={job.name}/spans.parquet") for p in listing)
    assert not (tmp_path / "home" / "telemetry").exists()
