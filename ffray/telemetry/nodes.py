"""Node identity in telemetry and spans: the machine, not the Ray instance.

Ray gives every raylet a new node id, and ffray's private local instance is a new raylet per run,
so node ids made one laptop a new "node" on every run. Telemetry and spans name the host instead
(``NodeManagerHostname``), so one machine stays one node across runs; where several alive Ray
nodes share a host (``ray.cluster_utils.Cluster`` in tests, several raylets on one big machine)
each gets ``<host>-<first 8 hex of its node id>``, so they stay apart. The Ray node id is kept
beside it in every row (``ray_node``).
"""

from __future__ import annotations


def node_name(nodes: list[dict], node_id: str) -> str:
    """The telemetry name of Ray node ``node_id`` given ``ray.nodes()`` (pure)."""
    def host(n: dict) -> str:
        return n.get("NodeManagerHostname") or n.get("NodeManagerAddress") or ""

    me = next((n for n in nodes if n.get("NodeID") == node_id), None)
    name = host(me) if me else ""
    if not name:  # not a node Ray lists: its id is all there is
        return node_id
    peers = [n for n in nodes if n.get("Alive", True) and host(n) == name]
    return name if len(peers) <= 1 else f"{name}-{node_id[:8]}"


def this_node() -> tuple[str, str]:
    """(telemetry name, Ray node id) of the Ray node this process runs on."""
    import ray

    nid = ray.get_runtime_context().get_node_id()
    return node_name(ray.nodes(), nid), nid
