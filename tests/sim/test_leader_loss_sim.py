"""Failover with "connection closed" notifications in the simulator (issue 9 item 3).

`SimCluster(notify_closed_connections=True)` tells every peer of a crashed node, one network
latency later, that its connection closed; the survivors' cores then campaign early
(`RaftNode.leader_connection_lost`). Over many seeds, with a client writing throughout and the
safety observer watching every Ready: failover is faster than the randomized timer, the split
vote rate stays low, and nothing unsafe ever happens. A close while the leader is alive (a
transport restart, a one-way fault) costs at most an election.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from typing import Any

import msgpack
import pytest

from raft.errors import NotLeader, ProposalDropped
from raft.messages import AppendEntries, Message
from sim.cluster import RaftTimings, SimCluster
from sim.network import NetworkOptions
from sim.trace import TraceWriter

SEEDS = range(100)
IDS = ["n1", "n2", "n3"]


class _NullTrace(TraceWriter):
    def write(self, *args: Any, **kwargs: Any) -> None:
        pass


def _cluster(seed: int, *, notify: bool, lease_reads: bool, size: int = 3) -> SimCluster:
    timings = RaftTimings(150.0, 300.0, 50.0, lease_reads=lease_reads, leader_loss_jitter_ms=30.0)
    return SimCluster([f"n{i + 1}" for i in range(size)], seed=seed, timings=timings,
                      network=NetworkOptions(latency_ms_min=0.1, latency_ms_max=1.0),
                      trace=_NullTrace(), notify_closed_connections=notify)


def _write_every(cluster: SimCluster, period_ms: float, until_ms: float) -> None:
    """A client proposing on whichever node leads, every `period_ms`."""
    counter = [0]

    def write() -> None:
        leader = cluster.leader()
        if leader is not None:
            counter[0] += 1
            try:
                cluster.propose(leader, msgpack.packb([counter[0], "write", 1, counter[0]]))
            except (NotLeader, ProposalDropped):
                pass
        if cluster.now + period_ms <= until_ms:
            cluster.call_at(cluster.now + period_ms, write)

    cluster.call_at(cluster.now, write)


def failover(seed: int, *, notify: bool, lease_reads: bool, size: int = 3) -> tuple[float, bool]:
    """Crash a settled leader; ms until a new leader's append reached a survivor, and whether
    more than one real candidacy happened (a split vote)."""
    cluster = _cluster(seed, notify=notify, lease_reads=lease_reads, size=size)
    cluster.run_until(1500.0)
    old = cluster.leader()
    assert old is not None
    old_term = cluster.nodes[old].raft.term  # type: ignore[union-attr]
    _write_every(cluster, 5.0, 4000.0)
    crash_at = cluster.now + random.Random(seed).uniform(0.0, 50.0)
    cluster.run_until(crash_at)
    cluster.crash(old)
    done: list[float] = []
    candidacies = [0]

    def on_role(node: str, role: str, term: int) -> None:
        candidacies[0] += role == "candidate"

    def on_deliver(message: Message) -> None:
        if isinstance(message, AppendEntries) and message.term > old_term and not done:
            done.append(cluster.now - crash_at)

    cluster.on_role, cluster.on_deliver = on_role, on_deliver
    cluster.run_until(crash_at + 1000.0)
    assert cluster.observer.violations == [], cluster.observer.violations[:3]
    assert cluster.observer.normal_committed > 0
    return (done[0] if done else math.inf), candidacies[0] > 1


def _summary(runs: list[tuple[float, bool]]) -> tuple[float, float, float]:
    times = sorted(ms for ms, _ in runs)
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], sum(s for _, s in runs) / len(runs)


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[float, float, float]]:
    out = {}
    for name, notify, lease in (("baseline", False, True), ("lease-expiry", True, True),
                                ("drop-lease", True, False)):
        out[name] = _summary([failover(seed, notify=notify, lease_reads=lease) for seed in SEEDS])
    return out


def test_dropping_the_lease_on_a_close_makes_failover_an_order_faster(results: dict[str, Any]) -> None:
    base_median, base_p90, _ = results["baseline"]
    median, p90, split = results["drop-lease"]
    assert base_median >= 150.0  # the timer floor: no survivor times out before the minimum
    assert median < 30.0 and p90 < 60.0
    assert split <= 0.02, f"split vote rate {split:.1%}"


def test_keeping_the_lease_still_cuts_the_tail(results: dict[str, Any]) -> None:
    base_median, base_p90, _ = results["baseline"]
    median, p90, split = results["lease-expiry"]
    assert median < base_median and p90 < base_p90
    assert p90 <= 150.0 + 45.0 + 50.0 + 10.0  # promise expiry + both turns, a heartbeat phase, RTTs
    assert split <= 0.02, f"split vote rate {split:.1%}"


def test_five_servers_stay_safe_and_fast_with_a_close() -> None:
    runs = [failover(seed, notify=True, lease_reads=False, size=5) for seed in range(40)]
    median, _, split = _summary(runs)
    assert median < 30.0 and split <= 0.05


@pytest.mark.parametrize("lease_reads", [False, True])
def test_closes_while_the_leader_lives_never_hurt_safety(lease_reads: bool) -> None:
    """Spurious closes (one follower, or every follower at once, as a leader's transport
    restart would do) at random moments with the leader alive and a client writing: the
    safety observer stays quiet, and a close costs at most one election."""
    elections_per_close = []
    for seed in range(40):
        cluster = _cluster(seed, notify=True, lease_reads=lease_reads)
        cluster.run_until(1500.0)
        _write_every(cluster, 5.0, 6000.0)
        rng = random.Random(seed)
        closes = 0
        changes = [0]
        cluster.on_role = lambda node, role, term: changes.__setitem__(0, changes[0] + (role == "leader"))
        for _ in range(8):
            cluster.run_until(cluster.now + rng.uniform(100.0, 500.0))
            leader = cluster.leader()
            if leader is None:
                continue
            followers = [n for n in cluster.ids if n != leader]
            chosen = followers if rng.random() < 0.5 else [rng.choice(followers)]
            for follower in chosen:
                cluster.call_at(cluster.now + rng.uniform(0.0, 1.0),
                                functools.partial(cluster.connection_closed, follower, leader))
            closes += 1
        cluster.run_until(cluster.now + 1000.0)
        assert cluster.observer.violations == [], cluster.observer.violations[:3]
        assert cluster.leader() is not None
        elections_per_close.append(changes[0] / max(1, closes))
    assert max(elections_per_close) <= 1.0
