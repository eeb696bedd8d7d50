"""Shared fixtures: generated media and one shared Ray cluster with fake GPUs (3 nodes)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Ray workers (and `ray start` nodes) inherit this, so they can import tests.procs.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import media as M  # noqa: E402


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> M.Media:
    return M.make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def cluster():
    """Head without GPUs plus two worker nodes with two fake GPUs each."""
    import ray
    from ray.cluster_utils import Cluster

    store = 96 * 1024 * 1024
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "object_store_memory": store, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1, num_gpus=2, object_store_memory=store) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, namespace="ffray", logging_level="ERROR", log_to_driver=False)
    yield {"cluster": c, "worker_nodes": [n.node_id for n in nodes]}
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "ffray-data"
    d.mkdir()
    return d
