"""`RaftNode.leader_connection_lost`: a follower that sees its leader's connection close
campaigns within a short turn instead of a randomized election timeout (issue 9 item 3). The
survivors take turns by id: the k-th voter other than the lost leader campaigns after
k·J + U(0, J/2), J = leader_loss_jitter_ms.

The close is evidence, not proof: these tests pin down that it only ever moves a timer. With
lease reads off the follower forgets its lease promise and campaigns within the jitter; with
lease reads on (the default) it waits until the promise expires; a survivor that did not see
the close keeps its promise, so a close with the leader alive cannot depose it.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import Network

from raft.config import RaftConfig
from raft.messages import AppendEntries, RequestVote
from raft.progress import Role

MIN, JITTER = 150.0, 30.0


def settled(seed: int, **config: Any) -> tuple[Network, str, list[str], int]:
    """A 3-node cluster with a leader that just sent a heartbeat everyone received at `now`."""
    net = Network(3, seed=seed, **config)
    net.run(1000)
    [leader] = net.leaders()
    node = net.nodes[leader]
    while not net.pending(lambda m: isinstance(m, AppendEntries)):
        net.tick(max(net.now, node.next_deadline()), [leader])
    net.deliver_all()
    followers = sorted(set(net.nodes) - {leader})
    return net, leader, followers, node.term


def lost_events(net: Network, node_id: str) -> list[dict[str, object]]:
    return [e.fields for e in net.events[node_id] if e.kind == "leader_lost"]


def test_without_lease_reads_survivors_elect_within_the_jitter() -> None:
    """Both survivors saw the close: each forgets its lease promise, so the first one's
    pre-vote is granted by the other and a new leader exists before any election timeout."""
    net, leader, followers, term = settled(1, lease_reads=False)
    net.isolate(leader)  # kill -9: it neither sends nor receives any more
    closed_at = net.now + 0.2
    net.tick(closed_at, followers)
    deadlines = {}
    for turn, follower in enumerate(followers):  # sorted ids: the turn order
        net.nodes[follower].leader_connection_lost(leader, net.now)
        deadlines[follower] = net.nodes[follower].next_deadline()
        assert closed_at + turn * JITTER <= deadlines[follower] <= closed_at + turn * JITTER + JITTER / 2
    net.process()
    for follower in followers:
        assert lost_events(net, follower) == [
            {"leader": leader, "campaign_at": round(deadlines[follower], 3), "lease_kept": False}]
    first = followers[0]
    net.campaign(first)
    net.deliver_all()
    assert net.nodes[first].role is Role.LEADER
    assert net.nodes[first].term == term + 1
    assert net.now <= closed_at + JITTER / 2 < closed_at + MIN


def test_with_lease_reads_the_campaign_waits_for_the_promise_to_expire() -> None:
    """Lease reads on: the leader may be serving reads on the strength of our promise, so the
    campaign starts at last contact + minimum election timeout + U(0, jitter), not before."""
    net, leader, followers, term = settled(2)
    contact = net.now
    net.isolate(leader)
    net.tick(contact + 5.0, followers)
    moved = []
    for turn, follower in enumerate(followers):
        before = net.nodes[follower].next_deadline()
        net.nodes[follower].leader_connection_lost(leader, net.now)
        deadline = net.nodes[follower].next_deadline()
        slot = contact + MIN + turn * JITTER
        if deadline != before:  # a timer already due within its turn is left alone
            assert slot <= deadline <= slot + JITTER / 2
            moved.append(follower)
        else:
            assert deadline <= slot + JITTER / 2
    net.process()
    assert moved, "this seed should move at least one timer"
    assert [(f, e["lease_kept"]) for f in followers for e in lost_events(net, f)] == [(f, True) for f in moved]
    net.tick(contact + MIN - 1.0, followers)  # just before: nobody asks for a vote yet
    net.deliver_all()
    assert not net.pending(lambda m: isinstance(m, RequestVote)) and net.nodes[leader].role is Role.LEADER
    first = min(followers, key=lambda f: net.nodes[f].next_deadline())
    net.campaign(first)
    net.deliver_all()
    assert net.nodes[first].role is Role.LEADER and net.nodes[first].term == term + 1
    assert net.now <= contact + MIN + 1.5 * JITTER


def test_a_survivor_that_did_not_see_the_close_keeps_its_promise() -> None:
    """Only one follower's connection closed, and the leader is alive (a reconnect, a one-way
    fault). The other follower still heard the leader recently and ignores the pre-vote: no
    term moves, the leader stays, and its next heartbeat brings the pre-candidate back."""
    net, leader, followers, term = settled(3, lease_reads=False)
    lonely, other = followers
    net.nodes[lonely].leader_connection_lost(leader, net.now)
    net.campaign(lonely)
    assert net.nodes[lonely].role is Role.PRE_CANDIDATE
    net.deliver_all()
    assert net.nodes[leader].role is Role.LEADER and net.nodes[other].role is Role.FOLLOWER
    net.run(200)
    assert net.leaders() == [leader]
    assert {n.term for n in net.nodes.values()} == {term}
    assert net.nodes[lonely].role is Role.FOLLOWER and net.nodes[lonely].leader == leader


def test_a_heartbeat_before_the_turn_cancels_the_campaign() -> None:
    """The leader is alive after all: its next append resets the timer and the lease."""
    net, leader, followers, term = settled(4, lease_reads=False, leader_loss_jitter_ms=100.0)
    follower = followers[1]  # the second turn: 100 + U(0, 50) ms, after the next heartbeat
    node = net.nodes[follower]
    node.leader_connection_lost(leader, net.now)
    early = node.next_deadline()
    assert net.now + 100.0 <= early <= net.now + 150.0
    while not net.pending(lambda m: isinstance(m, AppendEntries) and m.dst == follower):
        net.tick(max(net.now, net.nodes[leader].next_deadline()), [leader])
    assert net.now < early
    net.deliver_all()
    assert node.next_deadline() >= net.now + MIN
    net.run(500)
    assert net.leaders() == [leader] and node.term == term


@pytest.mark.parametrize("case", ["not the leader", "disabled", "leader itself", "twice"])
def test_ignored_or_idempotent(case: str) -> None:
    jitter = None if case == "disabled" else JITTER
    net, leader, followers, _ = settled(5, lease_reads=False, leader_loss_jitter_ms=jitter)
    follower, other = followers
    target, peer = {"not the leader": (follower, other), "disabled": (follower, leader),
                    "leader itself": (leader, follower), "twice": (follower, leader)}[case]
    node = net.nodes[target]
    if case == "twice":
        node.leader_connection_lost(peer, net.now)
        net.process()
    before = node.next_deadline()
    node.leader_connection_lost(peer, net.now + 1.0)
    net.process()
    assert node.next_deadline() == before
    assert len(lost_events(net, target)) == (1 if case == "twice" else 0)


def test_without_lease_reads_the_leader_never_answers_from_a_lease() -> None:
    """Followers may drop their promise, so the lease read must go through a quorum round."""
    net, leader, _, _ = settled(6, lease_reads=False)
    node = net.nodes[leader]
    assert not node.lease_valid()
    node.read_index(1, lease=True)
    net.process([leader])
    assert net.read_states[leader] == []  # waits for the round
    net.deliver_all()
    assert [r.context for r in net.read_states[leader]] == [1]


def test_with_lease_reads_the_leader_answers_from_its_lease() -> None:
    net, leader, _, _ = settled(6)
    node = net.nodes[leader]
    assert node.lease_valid()
    node.read_index(1, lease=True)
    net.process([leader])
    assert [r.context for r in net.read_states[leader]] == [1]


def test_jitter_must_be_finite_and_not_negative() -> None:
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            RaftConfig(node_id="n1", peers=frozenset({"n1"}), leader_loss_jitter_ms=bad)
