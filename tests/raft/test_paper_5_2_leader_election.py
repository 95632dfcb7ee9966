"""Leader election, one paper sentence per test (etcd-io/raft `raft_paper_test.go` style).

Each test: init -> step -> check the outgoing messages and the node's state. The pure-paper
tests switch pre-vote and check-quorum off, because those extensions (thesis §9.6, §6.2) add a
pre-candidate step the paper's §5.2 does not have; the 6.5840-style scenarios at the bottom
run with the defaults.
"""

from __future__ import annotations

import random

import pytest
from harness import Network

from raft.messages import AppendEntries, AppendEntriesResponse, HardState, RequestVote, RequestVoteResponse
from raft.progress import Role
from raft.storage import MemoryStorage

PAPER = dict(pre_vote=False, check_quorum=False)


def is_vote(m: object) -> bool:
    return isinstance(m, RequestVote)


def test_start_as_follower() -> None:
    """"When servers start up, they begin as followers."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    for node_id, node in net.nodes.items():
        assert node.role is Role.FOLLOWER
        assert node.term == 0
        assert node.leader is None
        net.process()
        assert net.roles(node_id) == ["follower"]  # the start is traced as a role event
    assert net.pending() == []


def test_follower_starts_election_after_election_timeout() -> None:
    """"If a follower receives no communication over a period of time called the election
    timeout, then it assumes there is no viable leader and begins an election to choose a new
    leader. To begin an election, a follower increments its current term and transitions to
    candidate state. It then votes for itself and issues RequestVote RPCs in parallel to each of
    the other servers in the cluster."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    n1 = net.nodes["n1"]
    deadline = n1.next_deadline()
    net.tick(deadline - 1, ["n1"])
    assert n1.role is Role.FOLLOWER and net.pending() == []

    net.tick(deadline, ["n1"])

    assert n1.role is Role.CANDIDATE
    assert n1.term == 1
    assert n1.vote == "n1"
    assert net.storages["n1"].initial_state() == HardState(term=1, vote="n1", commit=0)
    assert net.pending() == [
        RequestVote(src="n1", dst="n2", term=1, last_log_index=0, last_log_term=0),
        RequestVote(src="n1", dst="n3", term=1, last_log_index=0, last_log_term=0),
    ]
    assert net.roles("n1") == ["follower", "candidate"]


def test_follower_stays_follower_while_it_hears_from_a_leader() -> None:
    """"A server remains in follower state as long as it receives valid RPCs from a leader or
    candidate. Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries)
    to all followers in order to maintain their authority."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    leader = net.elect("n1")
    for _ in range(40):  # 2 s of heartbeats, far beyond the 300 ms maximum election timeout
        net.run(50)
    assert net.leaders() == ["n1"]
    assert {node.term for node in net.nodes.values()} == {leader.term}
    heartbeats = [m for m in net.sent if isinstance(m, AppendEntries) and not m.entries]
    assert {m.dst for m in heartbeats} == {"n2", "n3"}
    assert len([m for m in net.sent if is_vote(m)]) == 2  # only the first election's two asks


def test_leader_broadcasts_heartbeat_every_interval() -> None:
    """"Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries) to all
    followers in order to maintain their authority."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    leader = net.elect("n1")
    net.drop()
    start = net.now

    net.tick(start + 49, ["n1"])
    assert net.pending() == []
    net.tick(start + 50, ["n1"])

    beats = net.pending()
    assert sorted(m.dst for m in beats) == ["n2", "n3"]
    for m in beats:
        assert isinstance(m, AppendEntries)
        assert m.entries == () and m.term == leader.term and m.commit == leader.commit_index


@pytest.mark.parametrize(
    "size, votes, expected",
    [
        (1, {}, Role.LEADER),
        (3, {"n2": True, "n3": True}, Role.LEADER),
        (3, {"n2": True}, Role.LEADER),
        (5, {"n2": True, "n3": True, "n4": True, "n5": True}, Role.LEADER),
        (5, {"n2": True, "n3": True}, Role.LEADER),
        (3, {}, Role.CANDIDATE),
        (5, {"n2": True}, Role.CANDIDATE),
        (5, {"n2": False, "n3": False}, Role.CANDIDATE),
        (5, {}, Role.CANDIDATE),
        (3, {"n2": False, "n3": False}, Role.FOLLOWER),  # a majority said no: the election is lost
        (5, {"n2": False, "n3": False, "n4": False}, Role.FOLLOWER),
    ],
)
def test_candidate_wins_with_majority_of_votes(size: int, votes: dict[str, bool], expected: Role) -> None:
    """"A candidate wins an election if it receives votes from a majority of the servers in the
    full cluster for the same term."
    Reference: §5.2"""
    net = Network(size, **PAPER)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    net.drop()

    for voter, granted in votes.items():
        n1.step(RequestVoteResponse(src=voter, dst="n1", term=1, granted=granted), net.now)

    assert n1.role is expected
    assert n1.term == 1


def test_votes_from_another_term_do_not_count() -> None:
    """"A candidate wins an election if it receives votes from a majority of the servers in the
    full cluster for the same term."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    net.campaign("n1")  # split vote: a second election at term 2
    assert n1.term == 2

    n1.step(RequestVoteResponse(src="n2", dst="n1", term=1, granted=True), net.now)

    assert n1.role is Role.CANDIDATE


@pytest.mark.parametrize(
    "voted_for, candidate, granted",
    [
        (None, "n2", True),
        (None, "n3", True),
        ("n2", "n2", True),
        ("n3", "n3", True),
        ("n2", "n3", False),
        ("n3", "n2", False),
    ],
)
def test_follower_votes_at_most_once_per_term(voted_for: str | None, candidate: str, granted: bool) -> None:
    """"Each server will vote for at most one candidate in a given term, on a first-come-first-
    served basis."
    Reference: §5.2"""
    storage = MemoryStorage()
    storage.save(HardState(term=1, vote=voted_for), [], None)
    net = Network(3, storages={"n1": storage}, **PAPER)
    n1 = net.nodes["n1"]

    n1.step(RequestVote(src=candidate, dst="n1", term=1, last_log_index=0, last_log_term=0), net.now)
    net.process(["n1"])

    assert net.pending() == [RequestVoteResponse(src="n1", dst=candidate, term=1, granted=granted)]
    assert n1.vote == (candidate if granted else voted_for)
    assert net.storages["n1"].initial_state().vote == n1.vote  # persisted before the reply left


def test_first_come_first_served_within_a_term() -> None:
    """"Each server will vote for at most one candidate in a given term, on a first-come-first-
    served basis."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    n1 = net.nodes["n1"]
    for candidate in ("n2", "n3"):
        n1.step(RequestVote(src=candidate, dst="n1", term=1, last_log_index=0, last_log_term=0), net.now)
    net.process(["n1"])
    assert [(m.dst, m.granted) for m in net.pending()] == [("n2", True), ("n3", False)]


@pytest.mark.parametrize("leader_term, expected_role", [(1, Role.FOLLOWER), (2, Role.FOLLOWER)])
def test_candidate_falls_back_to_legitimate_leader(leader_term: int, expected_role: Role) -> None:
    """"While waiting for votes, a candidate may receive an AppendEntries RPC from another server
    claiming to be leader. If the leader's term (included in its RPC) is at least as large as the
    candidate's current term, then the candidate recognizes the leader as legitimate and returns
    to follower state."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    net.drop()

    n1.step(AppendEntries(src="n2", dst="n1", term=leader_term, prev_log_index=0, prev_log_term=0,
                          entries=(), commit=0), net.now)

    assert n1.role is expected_role
    assert n1.term == leader_term
    assert n1.leader == "n2"
    net.process(["n1"])
    assert net.roles("n1")[-1] == "follower"


def test_candidate_rejects_append_from_stale_leader() -> None:
    """"If the term in the RPC is smaller than the candidate's current term, then the candidate
    rejects the RPC and continues in candidate state."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    net.campaign("n1")
    net.drop()
    assert n1.term == 2

    n1.step(AppendEntries(src="n2", dst="n1", term=1, prev_log_index=0, prev_log_term=0,
                          entries=(), commit=0), net.now)
    net.process(["n1"])

    assert n1.role is Role.CANDIDATE and n1.term == 2
    [reply] = net.pending()
    assert isinstance(reply, AppendEntriesResponse)
    assert reply.dst == "n2" and reply.term == 2 and not reply.success


def test_candidate_starts_new_election_after_split_vote() -> None:
    """"The third possible outcome is that a candidate neither wins nor loses the election ...
    When this happens, each candidate will time out and start a new election by incrementing its
    term and initiating another round of RequestVote RPCs."
    Reference: §5.2"""
    net = Network(3, **PAPER)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    n1.step(RequestVoteResponse(src="n2", dst="n1", term=1, granted=False), net.now)
    net.drop()
    assert n1.role is Role.CANDIDATE

    net.campaign("n1")

    assert n1.role is Role.CANDIDATE and n1.term == 2 and n1.vote == "n1"
    assert [(m.dst, m.term) for m in net.pending() if is_vote(m)] == [("n2", 2), ("n3", 2)]


def test_election_timeouts_are_randomized() -> None:
    """"Raft uses randomized election timeouts to ensure that split votes are rare and that they
    are resolved quickly. To prevent split votes in the first place, election timeouts are chosen
    randomly from a fixed interval (e.g., 150–300ms)."
    Reference: §5.2"""
    deadlines = []
    for seed in range(20):
        net = Network(3, seed=seed, **PAPER)
        for node in net.nodes.values():
            assert 150 <= node.next_deadline() <= 300
            deadlines.append(node.next_deadline())
    assert len(set(deadlines)) == len(deadlines)
    # The timer is drawn again for each new election, from the time it starts.
    net = Network(3, **PAPER)
    net.campaign("n1")
    start = net.now
    assert start + 150 <= net.nodes["n1"].next_deadline() <= start + 300


def test_same_seed_same_elections() -> None:
    """"Raft uses randomized election timeouts" — and since the randomness is injected, the same
    seed gives the same run, message for message.
    Reference: §5.2"""
    runs = []
    for _ in range(2):
        net = Network(5, seed=7)
        net.run(1500)
        runs.append(net.sent)
    assert runs[0] == runs[1] and runs[0]


# ---- §5.1: terms ------------------------------------------------------------------------------

@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
def test_higher_term_turns_anyone_into_follower(role: Role) -> None:
    """"Current terms are exchanged whenever servers communicate; if one server's current term is
    smaller than the other's, then it updates its current term to the larger value. If a
    candidate or leader discovers that its term is out of date, it immediately reverts to
    follower state."
    Reference: §5.1"""
    net = Network(3, **PAPER)
    n1 = net.nodes["n1"]
    if role is Role.CANDIDATE:
        net.campaign("n1")
    elif role is Role.LEADER:
        net.elect("n1")
    net.drop()
    assert n1.role is role

    n1.step(AppendEntriesResponse(src="n2", dst="n1", term=5, success=False, reject_index=-1), net.now)

    assert n1.role is Role.FOLLOWER
    assert n1.term == 5 and n1.vote is None
    net.process(["n1"])
    assert net.storages["n1"].initial_state().term == 5


def test_stale_term_request_is_rejected() -> None:
    """"If a server receives a request with a stale term number, it rejects the request."
    Reference: §5.1"""
    storage = MemoryStorage()
    storage.save(HardState(term=3), [], None)
    net = Network(3, storages={"n1": storage}, **PAPER)
    n1 = net.nodes["n1"]

    n1.step(RequestVote(src="n2", dst="n1", term=2, last_log_index=9, last_log_term=2), net.now)
    n1.step(AppendEntries(src="n3", dst="n1", term=2, prev_log_index=0, prev_log_term=0, entries=(),
                          commit=0), net.now)
    net.process(["n1"])

    assert n1.term == 3 and n1.vote is None and n1.leader is None
    [reply] = net.pending()  # the stale vote request is dropped, the stale leader learns the term
    assert isinstance(reply, AppendEntriesResponse) and reply.term == 3 and not reply.success


# ---- 6.5840 lab 3A scenarios, at the unit level ------------------------------------------------

def one_leader(net: Network, among: set[str] | None = None) -> str:
    leaders = [i for i in net.leaders() if among is None or i in among]
    assert len(leaders) == 1, f"expected one leader among {among}, got {leaders}"
    terms = {}
    for node_id, node in net.nodes.items():
        if node.role is Role.LEADER:
            assert terms.setdefault(node.term, node_id) == node_id, "two leaders in one term"
    return leaders[0]


def test_initial_election() -> None:
    """"When servers start up, they begin as followers ... If a follower receives no
    communication over a period of time called the election timeout, then it ... begins an
    election" — and with no failures, the term then stays put (6.5840 TestInitialElection).
    Reference: §5.2"""
    net = Network(3, seed=1)
    net.run(1000)
    leader = one_leader(net)
    term = net.nodes[leader].term
    assert term >= 1
    assert {n.term for n in net.nodes.values()} == {term}
    net.run(2000)
    assert one_leader(net) == leader
    assert {n.term for n in net.nodes.values()} == {term}


def test_re_election_after_leader_loss() -> None:
    """"If a follower receives no communication over a period of time called the election
    timeout, then it assumes there is no viable leader and begins an election to choose a new
    leader." (6.5840 TestReElection: new leader; old leader rejoins without disruption; no
    quorum, no leader; quorum restored, a leader.)
    Reference: §5.2"""
    net = Network(3, seed=2)
    net.run(1000)
    first = one_leader(net)

    net.isolate(first)
    net.run(1000)
    others = set(net.nodes) - {first}
    second = one_leader(net, others)
    term = net.nodes[second].term
    assert net.nodes[first].role is not Role.LEADER  # check-quorum deposed it meanwhile

    net.heal()
    net.run(1000)
    assert one_leader(net) == second and net.nodes[second].term == term

    third_party = sorted(others - {second})[0]
    net.isolate(second)
    net.isolate(third_party)
    net.run(2000)
    assert net.leaders() == []

    net.heal()
    net.isolate(second)  # restore a quorum without the last leader
    net.run(1000)
    one_leader(net, set(net.nodes) - {second})


def test_many_elections() -> None:
    """"Raft uses randomized election timeouts to ensure that split votes are rare and that they
    are resolved quickly." (6.5840 TestManyElections: 7 servers, 9 rounds of 3 disconnected.)
    Reference: §5.2"""
    net = Network(7, seed=3)
    net.run(1000)
    one_leader(net)
    chooser = random.Random(3)
    for _ in range(9):
        net.heal()
        gone = chooser.sample(sorted(net.nodes), 3)
        for node_id in gone:
            net.isolate(node_id)
        net.run(1500)
        one_leader(net, set(net.nodes) - set(gone))
    net.heal()
    net.run(1000)
    one_leader(net)


def test_idle_leader_sends_only_heartbeats() -> None:
    """"Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries) to all
    followers in order to maintain their authority." An idle second costs one heartbeat per
    follower per interval, and nobody campaigns (6.5840 TestCount).
    Reference: §5.2"""
    net = Network(3, seed=4)
    net.elect("n1")
    assert len(net.sent) <= 30  # the election itself, replies included (TestCount: <= 30 RPCs)
    net.run(100)
    start = len(net.sent)

    net.run(1000)

    idle = net.sent[start:]
    appends = [m for m in idle if isinstance(m, AppendEntries)]
    assert all(m.src == "n1" and m.entries == () for m in appends)
    assert len(appends) <= 2 * (1000 // 50 + 1)
    assert len(appends) >= 2 * (1000 // 50 - 1)
    assert not any(isinstance(m, (RequestVote, RequestVoteResponse)) for m in idle)
