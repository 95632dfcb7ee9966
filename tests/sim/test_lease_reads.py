"""Lease reads are safe only within the stated clock-drift bound (thesis §6.4.1).

A leader that serves reads from its lease assumes no clock runs faster or slower than
`clock_drift_rate_max` allows. These tests partition a leader away and let the majority elect
a new one and commit a write; then the old leader is asked for a lease read. With clock rates
inside the bound its lease has already run out (it falls back to a ReadIndex round it can no
longer win); with its clock running far too slow it still believes its lease and answers with
the old value: a stale read, the failure the bound exists to prevent.
"""

from __future__ import annotations

import msgpack

from raft.progress import Role
from sim.cluster import SimCluster


def write(cluster: SimCluster, node: str, value: int) -> None:
    cluster.propose(node, msgpack.packb([value, "write", 0, value]))


def run_scenario(old_leader_rate: float) -> tuple[int | None, int]:
    """Returns (value the old leader served from its lease or None, value committed by the majority)."""
    cluster = SimCluster(["n1", "n2", "n3"], seed=11)
    cluster.run_until(2000)
    old = cluster.leader()
    assert old is not None
    write(cluster, old, 1)
    cluster.run_until(2100)
    cluster.set_clock_rate(old, old_leader_rate)
    others = {n for n in cluster.ids if n != old}
    cluster.run_until(2125)  # a heartbeat round is acknowledged just before the cut
    cluster.network.isolate(old, set(cluster.ids))
    cluster_now = cluster.now
    new: str | None = None
    while new is None or new == old:
        cluster.run_until(cluster.now + 5)
        assert cluster.now < cluster_now + 2000, "the majority never elected a new leader"
        leaders = [n for n in others if cluster.nodes[n].raft.role is Role.LEADER]  # type: ignore[union-attr]
        new = leaders[0] if leaders else None
    write(cluster, new, 2)
    cluster.run_until(cluster.now + 20)
    served: list[int] = []
    cluster.on_read = lambda node, ctx, index: served.append(ctx)
    old_node = cluster.nodes[old]
    assert old_node.raft is not None and old_node.raft.role is Role.LEADER, "still leads in its own view"
    cluster.with_node(old, lambda raft: raft.read_index(7, lease=True))
    cluster.run_until(cluster.now + 1)
    committed = cluster.nodes[new].sm.read(0)
    if not served:
        return None, committed
    return old_node.sm.read(0), committed


def test_lease_read_within_the_drift_bound_is_never_stale() -> None:
    served, committed = run_scenario(old_leader_rate=1.0)
    assert committed == 2
    assert served is None, "the old leader's lease must have expired before a new leader could commit"


def test_lease_read_with_a_clock_beyond_the_bound_serves_a_stale_value() -> None:
    served, committed = run_scenario(old_leader_rate=0.3)
    assert committed == 2
    assert served == 1, "a leader whose clock runs 70% slow keeps its lease too long: a stale read"
