"""Safety: the election restriction (§5.4.1), committing entries from previous terms (§5.4.2,
Figure 8), the Figure 7 follower logs, and State Machine Safety under partitions.

The Figure 8 test is built step by step as in the paper's caption; run once correctly and
once with `RaftConfig(bugs=frozenset({"commit-old-term"}))` it shows what the rule prevents.
"""

from __future__ import annotations

import random

import pytest
from harness import Network, stored

from raft.messages import AppendEntries, AppendEntriesResponse, Entry, RequestVote, RequestVoteResponse
from raft.errors import RaftError
from raft.node import ConfChange
from raft.progress import Role

PAPER = dict(pre_vote=False, check_quorum=False)


def is_vote(m: object) -> bool:
    return isinstance(m, (RequestVote, RequestVoteResponse))


def applied(net: Network, node_id: str) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in net.applied[node_id]]


def assert_state_machine_safety(net: Network) -> None:
    """No two servers applied different entries at the same index (Fig. 3)."""
    seen: dict[int, tuple[int, bytes, str]] = {}
    for node_id in net.nodes:
        for entry in net.applied[node_id]:
            first = seen.setdefault(entry.index, (entry.term, entry.data, node_id))
            assert first[:2] == (entry.term, entry.data), (
                f"index {entry.index}: {first[2]} applied term {first[0]}, {node_id} applied term {entry.term}")


# ---- §5.4.1 election restriction ------------------------------------------------------------------

@pytest.mark.parametrize(
    "voter_log, candidate_last, granted",
    [
        # same last term: the longer (or equal) log wins
        ([(1, 1)], (1, 1), True),
        ([(1, 1)], (2, 1), True),
        ([(1, 1), (2, 1)], (1, 1), False),
        # the candidate's last term is later: it is more up-to-date, however short
        ([(1, 1)], (1, 2), True),
        ([(1, 1), (2, 1)], (1, 2), True),
        # the voter's last term is later: no vote, however long the candidate's log
        ([(1, 2)], (1, 1), False),
        ([(1, 2)], (5, 1), False),
        ([(1, 2), (2, 2)], (9, 1), False),
    ],
)
def test_voter_denies_candidate_with_less_up_to_date_log(voter_log: list[tuple[int, int]],
                                                         candidate_last: tuple[int, int],
                                                         granted: bool) -> None:
    """"the voter denies its vote if its own log is more up-to-date than that of the candidate.
    ... If the logs have last entries with different terms, then the log with the later term is
    more up-to-date. If the logs end with the same term, then whichever log is longer is more
    up-to-date."
    Reference: §5.4.1"""
    for bugs, expect in [(frozenset(), granted), (frozenset({"vote-any-log"}), True)]:
        net = Network(3, storages={"n1": stored(voter_log, term=2)}, bugs=bugs, **PAPER)
        index, term = candidate_last
        net.nodes["n1"].step(RequestVote(src="n2", dst="n1", term=3, last_log_index=index,
                                         last_log_term=term), net.now)
        net.process(["n1"])
        [reply] = net.pending()
        assert isinstance(reply, RequestVoteResponse)
        assert reply.granted is expect, f"bugs={set(bugs)}"
        assert reply.term == 3


def test_candidate_with_stale_log_cannot_win() -> None:
    """"A candidate must contact a majority of the cluster in order to be elected, which means
    that every committed entry must be present in at least one of those servers."
    Reference: §5.4.1"""
    majority_log = [(1, 1), (2, 2)]
    net = Network(3, storages={"n1": stored([(1, 1)], term=2), "n2": stored(majority_log, term=2, commit=2),
                               "n3": stored(majority_log, term=2, commit=2)}, **PAPER)
    net.campaign("n1")
    net.deliver_all()
    assert net.nodes["n1"].role is not Role.LEADER
    assert net.nodes["n1"].term == 3


# ---- §5.4.2 committing entries from previous terms ------------------------------------------------

@pytest.mark.parametrize(
    "acked_index, commit, commit_with_bug",
    [(1, 0, 1), (2, 0, 2), (3, 3, 3)],
)
def test_leader_only_commits_entries_of_its_term_by_counting(acked_index: int, commit: int,
                                                              commit_with_bug: int) -> None:
    """"Raft never commits log entries from previous terms by counting replicas. Only log
    entries from the leader's current term are committed by counting replicas; once an entry
    from the current term has been committed in this way, then all prior entries are committed
    indirectly because of the Log Matching Property."
    Reference: §5.4.2"""
    log = [(1, 1), (2, 2)]
    for bugs, expect in [(frozenset(), commit), (frozenset({"commit-old-term"}), commit_with_bug)]:
        net = Network(3, storages={n: stored(log, term=2) for n in ("n1", "n2", "n3")}, bugs=bugs, **PAPER)
        n1 = net.nodes["n1"]
        net.campaign("n1")
        net.deliver_all(is_vote)
        assert n1.role is Role.LEADER and n1.term == 3 and n1.last_index == 3
        net.drop()

        n1.step(AppendEntriesResponse(src="n2", dst="n1", term=3, success=True, match_index=acked_index), net.now)

        assert n1.commit_index == expect, f"bugs={set(bugs)}"


def deliver_except(net: Network, unwanted: object) -> None:
    """Deliver everything, throwing away each message `unwanted` matches as it shows up."""
    net.process()
    while True:
        net.drop(unwanted)  # type: ignore[arg-type]
        if net.deliver_one() is None:
            return


def carries_term(term: int) -> object:
    return lambda m: isinstance(m, AppendEntries) and any(e.term == term for e in m.entries)


def figure_8_up_to_c(bugs: frozenset[str]) -> Network:
    """Figure 8 (a)–(c): S1..S5 are n1..n5; every server starts with entry 1 of term 1."""
    net = Network(5, storages={n: stored([(1, 1)], term=1, commit=1) for n in ("n1", "n2", "n3", "n4", "n5")},
                  entries_per_message_max=1, bugs=bugs, **PAPER)
    n1, n5 = net.nodes["n1"], net.nodes["n5"]

    # (a) S1 is leader in term 2 and replicates the entry at index 2 to S2 only.
    net.campaign("n1")
    net.deliver_all(is_vote)
    assert n1.role is Role.LEADER and n1.term == 2
    for other in ("n3", "n4", "n5"):
        net.cut("n1", other)
    net.deliver_all()
    assert net.log("n1") == net.log("n2") == [(1, 1), (2, 2)]
    assert n1.commit_index == 1

    # (b) S1 crashes; S5 is elected leader for term 3 with votes from S3, S4 and itself, and
    # accepts a different entry at log index 2.
    net.heal()
    net.isolate("n1")
    net.campaign("n5")
    net.deliver_all(is_vote)
    assert n5.role is Role.LEADER and n5.term == 3
    net.isolate("n5")
    net.deliver_all()
    assert net.log("n5") == [(1, 1), (2, 3)]
    assert net.log("n3") == net.log("n4") == [(1, 1)]

    # (c) S5 crashes; S1 restarts, is elected leader (term 4), and continues replication. The
    # entry from term 2 is replicated on a majority of the servers (S1, S2, S3)...
    net.heal()
    net.isolate("n5")
    n1 = net.restart("n1")
    net.campaign("n1")  # term 3: S3 and S4 already voted for S5 in term 3
    net.deliver_all(is_vote)
    net.campaign("n1")  # term 4
    net.deliver_all(is_vote)
    assert n1.role is Role.LEADER and n1.term == 4 and net.log("n1") == [(1, 1), (2, 2), (3, 4)]
    net.cut("n1", "n4")
    # ...while its own term-4 entry has reached no one yet. S1's first append to S3 (prev = 2/2,
    # carrying 4/3) is let through: S3 lacks index 2 and rejects it, which is how S1 learns to
    # send S3 entry 2 on its own.
    let_through: list[object] = []

    def unwanted(m: object) -> bool:
        if not carries_term(4)(m):  # type: ignore[operator]
            return False
        if not let_through and getattr(m, "dst", None) == "n3":
            let_through.append(m)  # the first probe only
        return not (let_through and m is let_through[0])

    deliver_except(net, unwanted)
    assert net.log("n2") == net.log("n3") == [(1, 1), (2, 2)]
    # S2 already held entry 2, but S1's only append to it (prev = 2/2) carried the term-4 entry
    # and was lost, and a probe ends only on its own reply: S2's truthful acknowledgement of
    # entry 2 is what tells S1 that entry 2 sits on a majority (S1, S2, S3).
    net.nodes["n1"].step(AppendEntriesResponse(src="n2", dst="n1", term=4, success=True, match_index=2), net.now)
    net.process(["n1"])
    deliver_except(net, unwanted)
    return net


@pytest.mark.parametrize("bugs", [frozenset(), frozenset({"commit-old-term"})], ids=["correct", "commit-old-term"])
def test_figure_8_old_term_entry_on_majority_is_not_committed(bugs: frozenset[str]) -> None:
    """"a leader cannot immediately conclude that an entry from a previous term is committed once
    it is stored on a majority of servers. Figure 8 illustrates a situation where an old log
    entry is stored on a majority of servers, yet can still be overwritten by a future leader."
    With the `commit-old-term` bug switch, S1 commits and applies entry 2 of term 2, S5 later
    commits a different entry 2, and two state machines disagree.
    Reference: §5.4.2, Figure 8"""
    net = figure_8_up_to_c(bugs)
    n1, n5 = net.nodes["n1"], net.nodes["n5"]
    buggy = "commit-old-term" in bugs
    assert n1.commit_index == (2 if buggy else 1)
    assert ((2, 2) in applied(net, "n1")) is buggy

    # (d) S1 crashes; S5 could be elected leader (with votes from S2, S3, and S4) and overwrite
    # the entry with its own entry from term 3.
    net.heal()
    net.isolate("n1")
    n5 = net.restart("n5")
    net.campaign("n5")  # term 4: everyone already voted for S1
    net.deliver_all(is_vote)
    assert n5.role is Role.FOLLOWER
    net.campaign("n5")  # term 5
    net.deliver_all(is_vote)
    assert n5.role is Role.LEADER and n5.term == 5
    net.deliver_all()
    net.tick(net.now + 50, ["n5"])  # a heartbeat tells the followers the new commit index
    net.deliver_all()
    for node_id in ("n2", "n3", "n4", "n5"):
        assert net.log(node_id) == [(1, 1), (2, 3), (3, 5)]
        assert (2, 3) in applied(net, node_id)

    if buggy:
        with pytest.raises(AssertionError, match="index 2"):
            assert_state_machine_safety(net)
        return
    assert_state_machine_safety(net)
    net.heal()
    net.restart("n1")
    net.tick(net.now + 50, ["n5"])
    net.deliver_all()
    assert net.log("n1") == [(1, 1), (2, 3), (3, 5)]
    assert_state_machine_safety(net)


def test_figure_8_current_term_entry_commits_the_old_one() -> None:
    """"However, if S1 replicates an entry from its current term on a majority of the servers
    before crashing, as in (e), then this entry is committed (S5 cannot win an election). At
    this point all preceding entries in the log are committed as well."
    Reference: §5.4.2, Figure 8"""
    net = figure_8_up_to_c(frozenset())
    n1, n5 = net.nodes["n1"], net.nodes["n5"]
    for _ in range(3):  # (e): S1 retries, and its term-4 entry now reaches S2 and S3 as well
        net.tick(net.now + 50, ["n1"])
        net.deliver_all()
    assert net.log("n2") == net.log("n3") == [(1, 1), (2, 2), (3, 4)]
    assert n1.commit_index == 3
    assert applied(net, "n1") == [(1, 1), (2, 2), (3, 4)]

    net.heal()
    net.isolate("n1")
    n5 = net.restart("n5")
    for _ in range(3):
        net.campaign("n5")
        net.deliver_all(is_vote)
        assert n5.role is not Role.LEADER


# ---- Figure 7: the follower logs a new leader may meet ------------------------------------------

FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7 = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def as_log(terms: list[int]) -> list[tuple[int, int]]:
    return [(i, t) for i, t in enumerate(terms, start=1)]


@pytest.mark.parametrize("case", sorted(FIGURE_7))
def test_figure_7_follower_accepts_only_a_matching_prefix(case: str) -> None:
    """"When the leader at the top comes to power, it is possible that any of scenarios (a–f)
    could occur in follower logs." The term-8 leader's next entry (index 11) follows (10, 6):
    only followers (c) and (d) hold that entry, and they drop what follows it.
    Reference: §5.3, Figure 7"""
    net = Network(3, storages={"n2": stored(as_log(FIGURE_7[case]), term=7)}, **PAPER)
    n2 = net.nodes["n2"]
    n2.step(AppendEntries(src="n1", dst="n2", term=8, prev_log_index=10, prev_log_term=6,
                          entries=(Entry(index=11, term=8),), commit=0), net.now)
    net.process(["n2"])
    [reply] = net.pending()
    assert isinstance(reply, AppendEntriesResponse)
    if case in ("c", "d"):
        assert reply.success and reply.match_index == 11
        assert net.log("n2") == as_log(FIGURE_7_LEADER + [8])
    else:
        assert not reply.success
        assert net.log("n2") == as_log(FIGURE_7[case])


@pytest.mark.parametrize("case", sorted(FIGURE_7))
def test_figure_7_leader_forces_follower_log_to_match(case: str) -> None:
    """"In Raft, the leader handles inconsistencies by forcing the followers' logs to duplicate
    its own. ... the leader must find the latest log entry where the two logs agree, delete any
    entries in the follower's log after that point, and send the follower all of the leader's
    entries after that point."
    Reference: §5.3, Figure 7"""
    leader_log = as_log(FIGURE_7_LEADER)
    net = Network(3, storages={"n1": stored(leader_log, term=7), "n2": stored(as_log(FIGURE_7[case]), term=7),
                               "n3": stored(leader_log, term=7)}, **PAPER)
    n1 = net.elect("n1")
    assert n1.term == 8
    net.deliver_all()
    net.tick(net.now + 50, ["n1"])
    net.deliver_all()

    assert net.log("n2") == net.log("n1") == as_log(FIGURE_7_LEADER + [8])
    assert net.nodes["n2"].commit_index == n1.commit_index == 11
    storage = net.storages["n2"]
    assert [storage.term(i) for i in range(1, storage.last_index() + 1)] == FIGURE_7_LEADER + [8]


# ---- §5.4.3 State Machine Safety, under random partitions ---------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_state_machine_safety_under_partitions(seed: int) -> None:
    """"if a server has applied a log entry at a given index to its state machine, no other
    server will ever apply a different log entry for the same index."
    Reference: §5.4.3"""
    net = Network(5, seed=seed)
    chooser = random.Random(seed)
    proposed = 0
    for _ in range(12):
        net.heal()
        if chooser.random() < 0.7:
            side = chooser.sample(sorted(net.nodes), chooser.choice([1, 2]))
            net.partition(side, set(net.nodes) - set(side))
        for leader in net.leaders():
            for _ in range(chooser.randint(0, 3)):
                net.nodes[leader].propose(f"v{proposed}".encode())
                proposed += 1
        net.run(chooser.choice([100, 300, 700]))
        assert_state_machine_safety(net)
    net.heal()
    net.run(1500)
    [leader] = net.leaders()
    net.nodes[leader].propose(b"last")
    net.run(200)
    assert_state_machine_safety(net)
    assert {len(net.applied[n]) for n in net.nodes} == {net.nodes[leader].commit_index}


def rough_step(net: Network, chooser: random.Random, step: int, reads: dict[tuple[str, int], int]) -> None:
    """One step of a rough schedule: maybe a fault or a request, then time, then a delivery
    round that loses, reorders and duplicates messages."""
    roll = chooser.random()
    leaders = net.leaders()
    try:
        if roll < 0.05:
            net.heal()
            side = chooser.sample(sorted(net.nodes), chooser.randint(1, len(net.nodes) // 2))
            net.partition(side, set(net.nodes) - set(side))
        elif roll < 0.08:
            net.heal()
        elif roll < 0.10:
            net.restart(chooser.choice(sorted(net.nodes)))
        elif roll < 0.25 and leaders:
            net.nodes[leaders[0]].propose(f"v{step}".encode())
        elif roll < 0.27:
            for node_id, node in net.nodes.items():
                if node.applied_index > node.snapshot_index:
                    net.storages[node_id].compact(node.compact(node.applied_index, b"state" * 3))
        elif roll < 0.28 and leaders:
            action = chooser.choice(["remove", "add_voter"])
            net.nodes[leaders[0]].propose_config_change(ConfChange(action, chooser.choice(sorted(net.nodes))))
        elif roll < 0.31 and leaders:
            net.nodes[leaders[0]].read_index(step)
            reads[(leaders[0], step)] = max(n.commit_index for n in net.nodes.values())
        elif roll < 0.32 and leaders:
            net.nodes[leaders[0]].transfer_leadership(chooser.choice(sorted(net.nodes)))
    except RaftError:
        pass  # refused (not leader, change in progress, ...): a client would retry
    net.tick(net.now + chooser.choice([1, 5, 10, 30]))
    for _ in range(chooser.randint(0, 2 * len(net.queue) + 1)):
        if not net.queue:
            break
        message = net.queue[chooser.randrange(len(net.queue)) if chooser.random() < 0.3 else 0]
        if chooser.random() < 0.05:
            net.drop(lambda m: m is message)
            continue
        if chooser.random() < 0.02:
            net.queue.append(message)  # delivered twice
        net.deliver_one(lambda m: m is message)


@pytest.mark.parametrize("seed", range(16))
def test_figure_3_properties_under_a_rough_schedule(seed: int, bugs: frozenset[str] = frozenset()) -> None:
    """Figure 3: "Election Safety: at most one leader can be elected in a given term." ...
    "State Machine Safety: if a server has applied a log entry at a given index to its state
    machine, no other server will ever apply a different log entry for the same index." Checked
    after every step of a schedule that loses, reorders and duplicates messages, partitions,
    restarts, compacts, changes membership, transfers leadership and reads (a read point must
    cover every entry known committed when the read was asked). Afterwards, healed, the
    cluster must elect one leader and commit again.
    Reference: §5.4.3, Figure 3"""
    chooser = random.Random(seed)
    net = Network(3 + seed % 3, seed=seed, snapshot_chunk_bytes=7, bugs=bugs,
                  entries_per_message_max=chooser.choice([1, 3, 256]))
    leader_of_term: dict[int, str] = {}
    reads: dict[tuple[str, int], int] = {}
    for step in range(500):
        rough_step(net, chooser, step, reads)
        assert_state_machine_safety(net)
        for node_id, node in net.nodes.items():
            if node.role is Role.LEADER:
                assert leader_of_term.setdefault(node.term, node_id) == node_id, f"two leaders in term {node.term}"
        for node_id, states in net.read_states.items():
            assert all(state.index >= reads[(node_id, state.context)] for state in states), "stale read"

    net.heal()
    net.drop()
    net.run(3000)
    [leader] = net.leaders()
    index, _ = net.nodes[leader].propose(b"final")
    net.run(1000)
    assert_state_machine_safety(net)
    for member in net.nodes[leader].config.members:
        assert net.nodes[member].commit_index >= index
