"""Membership changes in the simulator: grow, shrink, and change while the leader crashes.

One server at a time (thesis §4.1): a new server joins as a learner, catches up, is promoted;
a removed server stops counting. The safety observer watches every step.
"""

from __future__ import annotations

import msgpack
import pytest

from raft.errors import NotLeader, ProposalDropped
from raft.node import ConfChange
from sim.cluster import SimCluster


def leader_of(cluster: SimCluster) -> str:
    for _ in range(400):
        leader = cluster.leader()
        if leader is not None:
            return leader
        cluster.run_until(cluster.now + 10)
    raise AssertionError("no leader within 4 s")


def change(cluster: SimCluster, action: str, node: str) -> None:
    """Propose a config change at the leader, retrying across elections until it is applied."""
    deadline = cluster.now + 10_000
    while cluster.now < deadline:
        if _applied(cluster, action, node):
            return
        leader = leader_of(cluster)
        try:
            cluster.with_node(leader, lambda raft: raft.propose_config_change(ConfChange(action, node)))
        except (NotLeader, ProposalDropped):
            cluster.run_until(cluster.now + 50)
            continue
        cluster.run_until(cluster.now + 200)
        if _applied(cluster, action, node):
            return
    raise AssertionError(f"{action} {node} never took effect")


def _applied(cluster: SimCluster, action: str, node: str) -> bool:
    leader = cluster.leader()
    if leader is None:
        return False
    raft = cluster.nodes[leader].raft
    assert raft is not None
    config = raft.config_at(raft.commit_index)
    return {"add_learner": node in config.learners, "promote": node in config.voters,
            "add_voter": node in config.voters, "remove": node not in config.members}[action]


def write(cluster: SimCluster, value: int) -> None:
    for _ in range(50):
        try:
            cluster.propose(leader_of(cluster), msgpack.packb([value, "write", 0, value]))
            return
        except (NotLeader, ProposalDropped):
            cluster.run_until(cluster.now + 50)


def test_grow_three_to_five_then_shrink_to_three() -> None:
    cluster = SimCluster(["n1", "n2", "n3"], seed=3)
    for value in range(20):
        write(cluster, value)
    cluster.run_until(cluster.now + 500)
    for new in ("n4", "n5"):
        cluster.add_node(new)
        change(cluster, "add_learner", new)
        cluster.run_until(cluster.now + 500)  # catch up as a learner first
        change(cluster, "promote", new)
    leader = leader_of(cluster)
    raft = cluster.nodes[leader].raft
    assert raft is not None and raft.config.voters == {"n1", "n2", "n3", "n4", "n5"}
    write(cluster, 99)
    cluster.run_until(cluster.now + 500)
    assert cluster.nodes["n5"].sm.read(0) == 99, "the new voter has the whole state"
    for old in ("n1", "n2"):
        change(cluster, "remove", old)
        cluster.crash(old)
    write(cluster, 100)
    cluster.run_until(cluster.now + 1000)
    assert {cluster.nodes[n].sm.read(0) for n in ("n3", "n4", "n5")} == {100}
    assert cluster.observer.violations == []


@pytest.mark.parametrize("seed", range(6))
def test_membership_change_while_the_leader_crashes(seed: int) -> None:
    """Crash the leader right after it proposed a configuration change: the change either
    commits under the next leader or is truncated, and safety holds either way."""
    cluster = SimCluster(["n1", "n2", "n3", "n4"], seed=seed)
    for value in range(5):
        write(cluster, value)
    cluster.add_node("n5")
    cluster.run_until(cluster.now + 300)  # the writes (and the leader's no-op) commit
    leader = leader_of(cluster)
    cluster.with_node(leader, lambda raft: raft.propose_config_change(ConfChange("add_learner", "n5")))
    cluster.run_until(cluster.now + cluster.net_rng.uniform(0.0, 4.0))
    cluster.crash(leader)
    cluster.run_until(cluster.now + 2000)
    cluster.start(leader)
    change(cluster, "add_learner", "n5") if not _applied(cluster, "add_learner", "n5") else None
    change(cluster, "promote", "n5")
    write(cluster, 42)
    cluster.run_until(cluster.now + 1000)
    assert cluster.nodes["n5"].sm.read(0) == 42
    assert cluster.observer.violations == []
