"""Leadership transfer (thesis §3.10) and ReadIndex reads (thesis §6.4, paper §8), including the
`stale-read` bug switch that answers a read without confirming leadership.
"""

from __future__ import annotations

import pytest
from harness import Network

from raft.errors import NotLeader, ProposalDropped
from raft.messages import AppendEntries, AppendEntriesResponse, RequestVote, RequestVoteResponse, TimeoutNow
from raft.node import ConfChange
from raft.progress import Role
from raft.ready import ReadState


def settled(size: int = 3, seed: int = 30, **config: object) -> tuple[Network, str]:
    net = Network(size, seed=seed, **config)
    net.run(1000)
    [leader] = net.leaders()
    return net, leader


def followers(net: Network, leader: str) -> list[str]:
    return sorted(set(net.nodes) - {leader})


# ---- leadership transfer ---------------------------------------------------------------------------

def test_transfer_sends_timeout_now_and_target_wins_at_once() -> None:
    """"The prior leader sends a TimeoutNow request to the target server. This request has the
    same effect as the target server's election timer firing: the target server starts a new
    election (incrementing its term and becoming a candidate)."
    Reference: thesis §3.10"""
    net, leader = settled()
    target, other = followers(net, leader)
    term = net.nodes[leader].term
    net.drop()

    net.nodes[leader].transfer_leadership(target)
    net.process([leader])

    assert net.pending() == [TimeoutNow(src=leader, dst=target, term=term)]
    net.deliver_one()
    asks = [m for m in net.pending() if isinstance(m, RequestVote)]
    # no pre-vote round, and the `transfer` flag lets the vote through the followers' lease
    assert [(m.dst, m.term, m.pre_vote, m.transfer) for m in asks] == [
        (n, term + 1, False, True) for n in sorted({leader, other})]
    net.deliver_all()

    assert net.leaders() == [target]
    assert net.nodes[target].term == term + 1
    assert net.nodes[leader].role is Role.FOLLOWER and net.nodes[leader].leader in (None, target)
    assert any(e.kind == "transfer" and e.fields["target"] == target for e in net.events[leader])
    assert any(e.kind == "timeout_now" for e in net.events[target])
    [became] = [e for e in net.events[target] if e.kind == "role" and e.fields["role"] == "candidate"]
    assert became.fields["reason"] == "leadership transfer"


def test_transfer_first_brings_target_up_to_date() -> None:
    """"The prior leader ... transfers all of its log entries to the target server ... Once the
    target server has caught up, the prior leader sends a TimeoutNow request" — so the target
    wins with every committed entry.
    Reference: thesis §3.10"""
    net, leader = settled(seed=31)
    target, _ = followers(net, leader)
    net.isolate(target)
    for k in range(3):
        net.nodes[leader].propose(f"t{k}".encode())
    net.run(100)
    commit = net.nodes[leader].commit_index
    net.heal()

    net.nodes[leader].transfer_leadership(target)
    net.process([leader])
    assert not any(isinstance(m, TimeoutNow) for m in net.pending())

    net.run(300)
    assert net.leaders() == [target]
    timeout_now = [i for i, m in enumerate(net.sent) if isinstance(m, TimeoutNow)]
    caught_up = [i for i, m in enumerate(net.sent) if m.src == target and getattr(m, "match_index", 0) >= commit]
    assert len(timeout_now) == 1 and caught_up and caught_up[0] < timeout_now[0]
    data = [e.data for e in net.applied[target] if e.data]
    assert data == [b"t0", b"t1", b"t2"]


def test_leader_refuses_proposals_during_transfer_then_aborts() -> None:
    """"the prior leader stops accepting new client requests" during the transfer, and "If the
    transfer does not complete within an election timeout, the prior leader aborts the transfer
    and resumes accepting client requests."
    Reference: thesis §3.10"""
    net, leader = settled(seed=32)
    target, _ = followers(net, leader)
    net.isolate(target)  # the TimeoutNow will never arrive
    node = net.nodes[leader]

    node.transfer_leadership(target)
    with pytest.raises(ProposalDropped, match="transfer"):
        node.propose(b"during")
    net.run(310)

    assert node.role is Role.LEADER
    assert any(e.kind == "transfer_aborted" for e in net.events[leader])
    index, _ = node.propose(b"after")
    net.run(50)
    assert node.commit_index >= index


def test_transfer_needs_a_leader_and_another_voter() -> None:
    """"The prior leader sends a TimeoutNow request to the target server" — so only a leader can
    transfer, and only to another voter.
    Reference: thesis §3.10"""
    net, leader = settled(seed=33)
    follower = followers(net, leader)[0]
    with pytest.raises(NotLeader) as caught:
        net.nodes[follower].transfer_leadership(leader)
    assert caught.value.leader_hint == leader
    for target in (leader, "n9"):
        with pytest.raises(ProposalDropped):
            net.nodes[leader].transfer_leadership(target)


# ---- ReadIndex -------------------------------------------------------------------------------------

def test_read_index_needs_a_quorum_round() -> None:
    """"The leader needs to make sure it hasn't been superseded by a newer leader of which it is
    unaware. It issues a new round of heartbeats and waits for their acknowledgments from a
    majority of the cluster." No log entry is written for the read.
    Reference: thesis §6.4"""
    net, leader = settled(seed=34)
    node = net.nodes[leader]
    net.drop()
    commit, last = node.commit_index, node.last_index

    node.read_index(7)
    net.process([leader])

    assert net.read_states[leader] == []
    beats = net.pending()
    assert sorted(m.dst for m in beats) == followers(net, leader)
    assert all(isinstance(m, AppendEntries) and m.read_context > 0 and m.entries == () for m in beats)
    first = followers(net, leader)[0]
    net.deliver_one(lambda m: m.dst == first)  # one follower's heartbeat...
    assert net.read_states[leader] == []
    net.deliver_one(lambda m: m.dst == leader)  # ...and its ack: with the leader, a majority of 3
    assert net.read_states[leader] == [ReadState(7, commit)]
    assert node.last_index == last


def test_read_index_waits_for_the_leaders_noop_to_commit() -> None:
    """"If the leader has not yet marked an entry from its current term committed, it waits until
    it has done so. The Leader Completeness Property guarantees that a leader has all committed
    entries, but at the start of its term, it may not know which those are." (§8: "each leader
    commit a blank no-op entry into the log at the start of its term")
    Reference: thesis §6.4, §8"""
    net = Network(3, seed=35)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    net.deliver_all(lambda m: isinstance(m, (RequestVote, RequestVoteResponse)))
    assert n1.role is Role.LEADER and n1.commit_index == 0
    noop = n1.last_index

    n1.read_index(1)
    net.process(["n1"])

    # Heartbeat rounds (empty appends) may be acknowledged by a quorum before the no-op is:
    # that confirms leadership, yet the read must still wait for the no-op to commit.
    net.deliver_all(lambda m: (isinstance(m, AppendEntries) and not m.entries)
                    or isinstance(m, AppendEntriesResponse) and m.match_index < noop)
    assert n1.commit_index < noop
    assert net.read_states["n1"] == []
    net.deliver_all()
    [state] = net.read_states["n1"]
    assert state.context == 1 and state.index >= noop


def test_read_index_from_a_deposed_leader_never_answers() -> None:
    """"a leader ... may have been deposed by a newer leader of which it is unaware ... It
    issues a new round of heartbeats and waits for their acknowledgments from a majority" — a
    leader cut off from its cluster gets no majority, so it gives no read point. With the
    `stale-read` bug switch it answers at once, with an index that misses a committed write.
    Reference: thesis §6.4, paper §8"""
    for bugs in (frozenset(), frozenset({"stale-read"})):
        net, old = settled(seed=36, bugs=bugs)
        rest = followers(net, old)
        net.isolate(old)
        while not [n for n in net.leaders() if n != old]:  # time passes for everybody else
            net.tick(net.now + 10, rest)
            net.deliver_all()
        [new] = [n for n in net.leaders() if n != old]
        index, _ = net.nodes[new].propose(b"write")
        for _ in range(10):
            net.tick(net.now + 10, rest)
            net.deliver_all()
        assert net.nodes[new].commit_index >= index
        assert net.nodes[old].role is Role.LEADER  # it has not noticed yet

        net.nodes[old].read_index(9)
        net.deliver_all()

        if "stale-read" in bugs:
            [state] = net.read_states[old]
            assert state.index < index  # a linearizability violation: the write is invisible
        else:
            assert net.read_states[old] == []


def test_read_index_on_a_follower_raises_not_leader() -> None:
    """"Read-only operations ... must be handled by the leader" in this design: a follower
    answers with a hint instead.
    Reference: thesis §6.4"""
    net, leader = settled(seed=37)
    follower = followers(net, leader)[0]
    with pytest.raises(NotLeader) as caught:
        net.nodes[follower].read_index(1)
    assert caught.value.leader_hint == leader


def test_single_node_read_needs_no_round() -> None:
    """"The leader needs to make sure it hasn't been superseded" — a single voter is its own
    majority, so once its no-op committed, the read point is immediate.
    Reference: thesis §6.4"""
    net = Network(1)
    net.elect("n1")
    net.nodes["n1"].read_index(3)
    net.process()
    assert net.read_states["n1"] == [ReadState(3, net.nodes["n1"].commit_index)]
    assert net.pending() == []


def test_reads_are_released_in_order() -> None:
    """"The leader waits for its state machine to advance at least as far as the readIndex" —
    and a later read never overtakes an earlier one: an acknowledgment of the later round
    confirms both.
    Reference: thesis §6.4"""
    net, leader = settled(5, seed=38)
    node = net.nodes[leader]
    net.drop()
    node.read_index(1)
    net.process([leader])
    net.drop()  # the first round is lost entirely
    node.read_index(2)
    net.deliver_all()
    assert [s.context for s in net.read_states[leader]] == [1, 2]


def test_leader_outside_its_configuration_still_confirms_reads() -> None:
    """"The leader needs to make sure it hasn't been superseded by a newer leader of which it is
    unaware." A leader that is removing itself (Cnew = {n2}, not yet committed) is not the
    single voter of its configuration, so it cannot skip the heartbeat round: n2 may already
    lead alone and have committed writes.
    Reference: thesis §6.4, §4.2.2"""
    net = Network(2, seed=39)
    net.run(1000)
    [old] = net.leaders()
    [new] = followers(net, old)
    net.nodes[old].propose_config_change(ConfChange("remove", old))
    net.process([old])
    net.deliver_all(lambda m: m.dst == new)  # n2 gets Cnew; the acknowledgments are lost
    net.drop()
    net.isolate(old)
    while net.leaders() != sorted([old, new]):  # time passes for n2 only
        net.tick(net.now + 10, [new])
        net.deliver_all()
    index, _ = net.nodes[new].propose(b"write")
    net.process([new])
    assert net.nodes[new].commit_index >= index

    net.nodes[old].read_index(5)
    net.deliver_all()

    assert net.read_states[old] == []


@pytest.mark.parametrize("seed", range(50, 56))
def test_lease_read_survives_a_follower_restart(seed: int) -> None:
    """Lease reads rest on the voters' side of the lease: "if a server receives a RequestVote
    request within the minimum election timeout of hearing from a current leader, it does not
    update its term or grant its vote." A follower that restarts inside that window cannot
    remember when it last heard from the leader, so it must keep the promise anyway; else two
    servers that never heard the leader elect a third leader with its vote, while the old
    leader still answers lease reads without the new commits.
    Reference: thesis §6.4.1, §4.2.3"""
    net = Network(5, seed=seed)
    net.run(1000)
    [old] = net.leaders()
    a, b, c, d = followers(net, old)
    net.cut(old, c)  # c and d cannot reach the leader: they keep asking for pre-votes, and a
    net.cut(old, d)  # and b, hearing from the leader, refuse
    net.run(500)
    assert net.leaders() == [old]
    net.tick(net.now + 50)  # a heartbeat round that a and b acknowledge: the lease starts
    net.deliver_all()
    leader = net.nodes[old]
    assert leader.lease_valid()

    net.restart(a)
    net.cut(old, a)
    net.cut(old, b)
    while leader.lease_valid():
        net.tick(net.now + 2)
        net.deliver_all()
        others = [n for n in net.leaders() if n != old]
        assert not others or net.nodes[others[0]].commit_index <= leader.commit_index, (
            f"{others[0]} leads and committed past {leader.commit_index} inside {old}'s lease")
