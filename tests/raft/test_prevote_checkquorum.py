"""Pre-vote (thesis §9.6), check-quorum (thesis §6.2) and the leader lease on votes (thesis
§4.2.3): the extensions that keep a node on the wrong side of a partition from disrupting a
healthy cluster. Shaped after etcd's `testdata/prevote_checkquorum.txt`.
"""

from __future__ import annotations

from harness import Network

from raft.messages import RequestVote, RequestVoteResponse
from raft.progress import Role


def leader_of(net: Network) -> str:
    [leader] = net.leaders()
    return leader


def settled(size: int, seed: int, **config: object) -> tuple[Network, str, int]:
    net = Network(size, seed=seed, **config)
    net.run(1000)
    leader = leader_of(net)
    return net, leader, net.nodes[leader].term


def is_vote(m: object) -> bool:
    return isinstance(m, (RequestVote, RequestVoteResponse))


# ---- pre-vote --------------------------------------------------------------------------------------

def test_partitioned_node_does_not_raise_its_term() -> None:
    """"In the Pre-Vote algorithm, a candidate only increments its term if it first learns from
    a majority of the cluster that they would be willing to grant the candidate their votes."
    An isolated follower times out again and again, but its term stays put.
    Reference: thesis §9.6"""
    net, leader, term = settled(3, seed=20)
    follower = sorted(set(net.nodes) - {leader})[0]
    net.isolate(follower)
    mark = len(net.sent)

    net.run(3000)

    node = net.nodes[follower]
    assert node.term == term
    assert net.storages[follower].initial_state().term == term
    asks = [m for m in net.sent[mark:] if isinstance(m, RequestVote) and m.src == follower]
    assert len(asks) >= 2 * 5  # it did keep trying...
    assert all(m.pre_vote and m.term == term + 1 for m in asks)  # ...but only ever asked
    assert "candidate" not in net.roles(follower)


def test_partitioned_node_returning_does_not_depose_the_leader() -> None:
    """"The Pre-Vote algorithm solves the issue of a partitioned server disrupting the cluster
    when it rejoins." Here the returning node's pre-vote even reaches the leader before the
    leader's next heartbeat reaches it.
    Reference: thesis §9.6"""
    net, leader, term = settled(3, seed=21)
    follower = sorted(set(net.nodes) - {leader})[0]
    net.isolate(follower)
    net.run(1000)

    net.heal()
    net.campaign(follower)  # it times out just as the partition heals
    net.deliver_all(is_vote)  # its pre-votes (and any answers) overtake the heartbeats
    net.run(2000)

    assert leader_of(net) == leader
    assert {n.term for n in net.nodes.values()} == {term}


def test_without_pre_vote_a_returning_node_disrupts() -> None:
    """"When the partition heals, the server's RequestVote RPCs (or its responses) will carry a
    larger term, causing the leader to step down" — without pre-vote, as here, the isolated
    node's term runs ahead while it is away, and its return costs the cluster a leader.
    Reference: thesis §9.6"""
    net, leader, term = settled(3, seed=22, pre_vote=False, check_quorum=False)
    follower = sorted(set(net.nodes) - {leader})[0]
    net.isolate(follower)
    net.run(1000)
    assert net.nodes[follower].term > term + 2

    net.heal()
    net.run(1000)

    assert min(n.term for n in net.nodes.values()) > term + 2
    assert "follower" in net.roles(leader)[1:]


def test_candidate_whose_election_times_out_starts_over_with_pre_vote() -> None:
    """"a candidate only increments its term if it first learns from a majority of the cluster
    that they would be willing to grant the candidate their votes" — also for its next attempt
    after a split or lost vote.
    Reference: thesis §9.6"""
    net = Network(3)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    net.deliver_all(lambda m: isinstance(m, RequestVote) and m.pre_vote or
                    isinstance(m, RequestVoteResponse) and m.pre_vote)
    assert n1.role is Role.CANDIDATE and n1.term == 1
    net.drop()  # the real votes are lost

    net.campaign("n1")

    assert n1.role is Role.PRE_CANDIDATE and n1.term == 1
    assert [(m.dst, m.term, m.pre_vote) for m in net.pending()] == [("n2", 2, True), ("n3", 2, True)]
    net.deliver_all()
    assert n1.role is Role.LEADER and n1.term == 2


# ---- check-quorum ----------------------------------------------------------------------------------

def test_leader_cut_from_majority_steps_down() -> None:
    """"a leader steps down if an election timeout elapses without a successful round of
    heartbeats to a majority of its cluster; this allows clients to retry their requests with
    another server."
    Reference: thesis §6.2"""
    net, leader, term = settled(5, seed=23)
    others = sorted(set(net.nodes) - {leader})
    net.partition({leader, others[0]}, set(others[1:]))
    cut_at = net.now

    while net.nodes[leader].role is Role.LEADER:
        net.run(10)
        assert net.now - cut_at <= 2 * 300 + 50, "check-quorum did not fire"

    node = net.nodes[leader]
    assert node.role is Role.FOLLOWER and node.term == term and node.leader is None
    [event] = [e for e in net.events[leader] if e.kind == "role" and e.fields["reason"] == "lost quorum"]
    assert event.fields == {"role": "follower", "term": term, "leader": None, "reason": "lost quorum"}
    net.run(1500)
    new = [n for n in net.leaders() if n in others[1:]]
    assert len(new) == 1 and net.nodes[new[0]].term > term


def test_leader_with_majority_keeps_leading() -> None:
    """"a leader steps down if an election timeout elapses without a successful round of
    heartbeats to a majority of its cluster" — and only then: cut off from two of four
    followers, a 5-node leader keeps its majority and its job.
    Reference: thesis §6.2"""
    net, leader, term = settled(5, seed=24)
    others = sorted(set(net.nodes) - {leader})
    net.cut(leader, others[0])
    net.cut(leader, others[1])

    net.run(2000)

    assert net.nodes[leader].role is Role.LEADER and net.nodes[leader].term == term
    assert "lost quorum" not in [e.fields.get("reason") for e in net.events[leader]]


# ---- the lease on votes ----------------------------------------------------------------------------

def test_follower_hearing_from_leader_ignores_higher_term_vote() -> None:
    """"if a server receives a RequestVote request within the minimum election timeout of
    hearing from a current leader, it does not update its term or grant its vote."
    Reference: thesis §4.2.3"""
    net, leader, term = settled(3, seed=25)
    follower, other = sorted(set(net.nodes) - {leader})
    net.drop()
    node = net.nodes[follower]

    node.step(RequestVote(src=other, dst=follower, term=term + 5, last_log_index=99, last_log_term=term),
              net.now)
    net.process([follower])

    assert node.term == term and node.leader == leader and node.vote != other
    assert net.pending() == []


def test_leader_is_not_deposed_by_higher_term_vote_request() -> None:
    """"This does not affect normal elections, where each server waits at least a minimum
    election timeout before starting an election. However, it helps avoid disruptions from
    removed servers: if a leader is able to get heartbeats to its cluster, then it will not be
    deposed by larger term numbers."
    Reference: thesis §4.2.3"""
    net, leader, term = settled(3, seed=26)
    other = sorted(set(net.nodes) - {leader})[0]
    node = net.nodes[leader]
    net.drop()

    for pre_vote in (True, False):
        node.step(RequestVote(src=other, dst=leader, term=term + 1, last_log_index=node.last_index,
                              last_log_term=node.last_term, pre_vote=pre_vote), net.now)
    net.process([leader])

    assert node.role is Role.LEADER and node.term == term
    assert not any(isinstance(m, RequestVoteResponse) and m.granted for m in net.pending())


def test_partial_partition_does_not_disrupt() -> None:
    """"if a server receives a RequestVote request within the minimum election timeout of
    hearing from a current leader, it does not update its term or grant its vote." A node that
    can reach only some followers (not the leader) keeps asking, and nobody listens.
    Reference: thesis §4.2.3, §9.6"""
    for size in (3, 5):
        net, leader, term = settled(size, seed=27)
        lonely = sorted(set(net.nodes) - {leader})[-1]
        net.cut(leader, lonely)  # it still reaches every follower
        mark = len(net.sent)

        net.run(3000)

        assert leader_of(net) == leader
        assert {n.term for n in net.nodes.values()} == {term}
        assert any(isinstance(m, RequestVote) and m.src == lonely for m in net.sent[mark:])
        assert not any(isinstance(m, RequestVote) and not m.pre_vote for m in net.sent[mark:])
        assert not any(isinstance(m, RequestVoteResponse) and m.granted for m in net.sent[mark:])
        # and the cluster still does its work
        index, _ = net.nodes[leader].propose(b"still here")
        net.run(100)
        assert net.nodes[leader].commit_index >= index
