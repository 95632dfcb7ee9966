"""Log replication, one paper sentence per test (etcd-io/raft `raft_paper_test.go` style), then
the 6.5840 lab 3B scenarios at the unit level. Figure 7 lives in test_paper_5_4_safety.py.
"""

from __future__ import annotations

import pytest
from harness import Network, stored

from raft.errors import NotLeader, ProposalDropped
from raft.messages import AppendEntries, AppendEntriesResponse, Entry, EntryKind
from raft.progress import Role

PAPER = dict(pre_vote=False, check_quorum=False)


def leader_with_noop_committed(size: int = 3, **config: object) -> tuple[Network, str]:
    net = Network(size, **dict(PAPER, **config))
    net.elect("n1")
    net.deliver_all()
    assert net.nodes["n1"].commit_index == 1
    return net, "n1"


def rejections(messages: list[object]) -> list[AppendEntriesResponse]:
    return [m for m in messages if isinstance(m, AppendEntriesResponse) and not m.success
            and m.reject_index >= 0]


# ---- the leader --------------------------------------------------------------------------------

def test_leader_appends_then_replicates_in_parallel() -> None:
    """"The leader appends the command to its log as a new entry, then issues AppendEntries RPCs
    in parallel to each of the other servers to replicate the entry."
    Reference: §5.3"""
    net, _ = leader_with_noop_committed()
    n1 = net.nodes["n1"]
    net.drop()

    index, term = n1.propose(b"x")
    net.process(["n1"])

    assert (index, term) == (2, 1)
    assert n1.log_entry(2) == Entry(term=1, index=2, data=b"x")
    assert net.storages["n1"].last_index() == 2  # persisted before the RPCs left
    assert net.pending() == [
        AppendEntries(src="n1", dst=peer, term=1, prev_log_index=1, prev_log_term=1,
                      entries=(Entry(term=1, index=2, data=b"x"),), commit=1)
        for peer in ("n2", "n3")
    ]


def test_leader_commits_and_applies_then_tells_followers() -> None:
    """"When the entry has been safely replicated (as described below), the leader applies the
    entry to its state machine ... The leader keeps track of the highest index it knows to be
    committed, and it includes that index in future AppendEntries RPCs (including heartbeats)
    so that the other servers eventually find out."
    Reference: §5.3"""
    net, _ = leader_with_noop_committed()
    n1 = net.nodes["n1"]
    n1.propose(b"x")
    net.deliver_all()

    assert n1.commit_index == 2
    assert [e.data for e in net.applied["n1"]] == [b"", b"x"]
    assert net.nodes["n2"].commit_index < 2  # followers have not heard yet

    net.tick(net.now + 50)
    beats = [m for m in net.pending() if isinstance(m, AppendEntries)]
    assert beats and all(m.commit == 2 and m.entries == () for m in beats)
    net.deliver_all()
    for follower in ("n2", "n3"):
        assert net.nodes[follower].commit_index == 2
        assert [e.data for e in net.applied[follower]] == [b"", b"x"]


@pytest.mark.parametrize(
    "size, acceptors, committed",
    [
        (1, set(), True),
        (3, set(), False),
        (3, {"n2"}, True),
        (3, {"n2", "n3"}, True),
        (5, set(), False),
        (5, {"n2"}, False),
        (5, {"n2", "n3"}, True),
        (5, {"n2", "n3", "n4", "n5"}, True),
    ],
)
def test_entry_committed_once_on_a_majority(size: int, acceptors: set[str], committed: bool) -> None:
    """"A log entry is committed once the leader that created the entry has replicated it on a
    majority of the servers."
    Reference: §5.3"""
    net, _ = leader_with_noop_committed(size)
    n1 = net.nodes["n1"]
    net.drop()
    index, term = n1.propose(b"x")
    net.process(["n1"])
    net.drop()

    for peer in sorted(acceptors):
        n1.step(AppendEntriesResponse(src=peer, dst="n1", term=term, success=True, match_index=index), net.now)

    assert (n1.commit_index >= index) is committed


@pytest.mark.parametrize("prior", [[], [(1, 2)], [(1, 1), (2, 2)], [(1, 1)]])
def test_leader_commits_preceding_entries(prior: list[tuple[int, int]]) -> None:
    """"When the leader commits an entry, it also commits all preceding entries in the leader's
    log, including entries created by previous leaders."
    Reference: §5.3"""
    net = Network(3, storages={n: stored(prior, term=2) for n in ("n1", "n2", "n3")}, **PAPER)
    n1 = net.elect("n1")
    net.deliver_all()

    noop = len(prior) + 1
    assert n1.term == 3 and n1.log_entry(noop).kind is EntryKind.NOOP
    assert n1.commit_index == noop
    assert [(e.index, e.term) for e in net.applied["n1"]] == prior + [(noop, 3)]


# ---- the follower ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "entries, commit, applied",
    [
        ([(1, 1)], 1, [1]),
        ([(1, 1), (2, 1)], 1, [1]),
        ([(1, 1), (2, 1)], 2, [1, 2]),
        ([(1, 1), (2, 1)], 9, [1, 2]),  # never beyond the last new entry (Fig. 2, rule 5)
    ],
)
def test_follower_applies_committed_entries_in_order(entries: list[tuple[int, int]], commit: int,
                                                     applied: list[int]) -> None:
    """"Once a follower learns that a log entry is committed, it applies the entry to its local
    state machine (in log order)."
    Reference: §5.3"""
    net = Network(3, **PAPER)
    n2 = net.nodes["n2"]
    n2.step(AppendEntries(src="n1", dst="n2", term=1, prev_log_index=0, prev_log_term=0,
                          entries=tuple(Entry(index=i, term=t) for i, t in entries), commit=commit), net.now)
    net.process(["n2"])

    assert [e.index for e in net.applied["n2"]] == applied
    assert n2.commit_index == applied[-1]
    [reply] = net.pending()
    assert reply.success and reply.match_index == len(entries)


@pytest.mark.parametrize(
    "prev_index, prev_term, accepted, conflict_index, conflict_term",
    [
        (0, 0, True, 0, 0),
        (1, 1, True, 0, 0),
        (2, 2, True, 0, 0),
        (1, 2, False, 1, 1),  # same index, other term: hint the start of our term-1 run
        (2, 3, False, 2, 2),
        (3, 3, False, 3, 0),  # beyond our log: hint our end
    ],
)
def test_follower_checks_previous_entry(prev_index: int, prev_term: int, accepted: bool,
                                        conflict_index: int, conflict_term: int) -> None:
    """"When sending an AppendEntries RPC, the leader includes the index and term of the entry
    in its log that immediately precedes the new entries. If the follower does not find an entry
    in its log with the same index and term, then it refuses the new entries."
    Reference: §5.3"""
    net = Network(3, storages={"n2": stored([(1, 1), (2, 2)], term=2)}, **PAPER)
    n2 = net.nodes["n2"]
    n2.step(AppendEntries(src="n1", dst="n2", term=2, prev_log_index=prev_index, prev_log_term=prev_term,
                          entries=(Entry(index=prev_index + 1, term=2),), commit=0), net.now)
    net.process(["n2"])

    [reply] = net.pending()
    assert isinstance(reply, AppendEntriesResponse) and reply.success is accepted
    if accepted:
        assert reply.match_index == prev_index + 1
    else:
        assert (reply.reject_index, reply.conflict_index, reply.conflict_term) == (
            prev_index, conflict_index, conflict_term)
        assert net.log("n2") == [(1, 1), (2, 2)]


@pytest.mark.parametrize(
    "prev_index, prev_term, entries, expected",
    [
        (2, 2, [(3, 3)], [(1, 1), (2, 2), (3, 3)]),
        (1, 1, [(2, 3), (3, 4)], [(1, 1), (2, 3), (3, 4)]),
        (0, 0, [(1, 1)], [(1, 1), (2, 2)]),  # a stale, shorter RPC must not truncate (rafto pitfall)
        (0, 0, [(1, 3)], [(1, 3)]),
    ],
)
def test_follower_deletes_conflicting_suffix(prev_index: int, prev_term: int,
                                             entries: list[tuple[int, int]],
                                             expected: list[tuple[int, int]]) -> None:
    """"If an existing entry conflicts with a new one (same index but different terms), delete
    the existing entry and all that follow it; append any new entries not already in the log."
    Reference: §5.3"""
    net = Network(3, storages={"n2": stored([(1, 1), (2, 2)], term=2)}, **PAPER)
    n2 = net.nodes["n2"]
    n2.step(AppendEntries(src="n1", dst="n2", term=4, prev_log_index=prev_index, prev_log_term=prev_term,
                          entries=tuple(Entry(index=i, term=t) for i, t in entries), commit=0), net.now)
    net.process(["n2"])

    assert net.log("n2") == expected
    storage = net.storages["n2"]
    assert [(i, storage.term(i)) for i in range(1, storage.last_index() + 1)] == expected


def test_no_truncate_bug_switch_keeps_a_stale_suffix() -> None:
    """"If an existing entry conflicts with a new one (same index but different terms), delete
    the existing entry and all that follow it" — the `no-truncate` bug switch overwrites in
    place instead, and a stale entry of term 2 survives after the new term-3 entry.
    Reference: §5.3"""
    for bugs, expected in [(frozenset(), [(1, 1), (2, 3)]),
                           (frozenset({"no-truncate"}), [(1, 1), (2, 3), (3, 2)])]:
        net = Network(3, storages={"n2": stored([(1, 1), (2, 2), (3, 2)], term=2)}, bugs=bugs, **PAPER)
        net.nodes["n2"].step(AppendEntries(src="n1", dst="n2", term=3, prev_log_index=1, prev_log_term=1,
                                           entries=(Entry(index=2, term=3),), commit=0), net.now)
        net.process(["n2"])
        assert net.log("n2") == expected


def test_leader_retries_lost_append_entries() -> None:
    """"If followers crash or run slowly, or if network packets are lost, the leader retries
    AppendEntries RPCs indefinitely (even after it has responded to the client) until all
    followers eventually store all log entries." Here one AppendEntries is lost while
    heartbeats keep flowing, and no further proposal comes to expose the gap.
    Reference: §5.3"""
    net = Network(3, seed=6)
    net.elect("n1")
    net.run(100)
    n1 = net.nodes["n1"]
    n1.propose(b"x")
    net.process()
    lost = net.drop(lambda m: isinstance(m, AppendEntries) and m.dst == "n2" and bool(m.entries))
    assert lost

    net.run(1000)

    assert net.log("n2") == net.log("n1")
    assert net.nodes["n2"].commit_index == n1.commit_index == n1.last_index


@pytest.mark.parametrize(
    "leader_log, follower_log, conflicting_terms",
    [
        # the leader never had the follower's term: skip straight to its first index
        ([(1, 1)] + [(i, 3) for i in range(2, 52)], [(1, 1)] + [(i, 2) for i in range(2, 52)], 1),
        # the follower's older term is one the leader has too: jump to the leader's last of it
        ([(1, 1)] + [(i, 2) for i in range(2, 12)] + [(i, 4) for i in range(12, 52)],
         [(1, 1)] + [(i, 2) for i in range(2, 22)] + [(i, 3) for i in range(22, 52)], 2),
        # a follower that is merely short: one rejection, however short
        ([(1, 1)] + [(i, 2) for i in range(2, 52)], [(1, 1)], 1),
    ],
)
def test_fast_backup_skips_a_term_per_rejection(leader_log: list[tuple[int, int]],
                                                follower_log: list[tuple[int, int]],
                                                conflicting_terms: int) -> None:
    """"when rejecting an AppendEntries request, the follower can include the term of the
    conflicting entry and the first index it stores for that term. With this information, the
    leader can decrement nextIndex to bypass all of the conflicting entries in that term; one
    AppendEntries RPC will be required for each term with conflicting entries, rather than one
    RPC per entry."
    Reference: §5.3"""
    term = 4
    net = Network(3, storages={"n1": stored(leader_log, term), "n2": stored(follower_log, term),
                               "n3": stored(leader_log, term)}, **PAPER)
    net.campaign("n1")
    # Heartbeats to n2 would reveal its commit point (0) and sidestep the backoff: drop them so
    # only the probe-and-hint exchange can repair n2's log.
    heartbeat_to_n2 = lambda m: isinstance(m, AppendEntries) and m.dst == "n2" and not m.entries  # noqa: E731
    net.process()
    while True:
        net.drop(heartbeat_to_n2)
        if net.deliver_one() is None:
            break

    assert net.nodes["n1"].role is Role.LEADER
    assert net.log("n2") == net.log("n1")
    assert 1 <= len(rejections(net.sent)) <= conflicting_terms  # not one per entry


# ---- 6.5840 lab 3B scenarios, at the unit level ------------------------------------------------

def leader_of(net: Network) -> str:
    [leader] = net.leaders()
    return leader


def assert_logs_agree(net: Network, node_ids: list[str] | None = None) -> None:
    node_ids = node_ids or sorted(net.nodes)
    logs = {n: [(i, e) for i, e in net.log(n)] for n in node_ids}
    assert len({tuple(v) for v in logs.values()}) == 1, logs
    commits = {n: net.nodes[n].commit_index for n in node_ids}
    assert len(set(commits.values())) == 1, commits


def test_basic_agreement() -> None:
    """"Once a leader has been elected, it begins servicing client requests ... A log entry is
    committed once the leader that created the entry has replicated it on a majority of the
    servers." Nothing commits before it is proposed (6.5840 TestBasicAgree).
    Reference: §5.3"""
    net = Network(3, seed=8)
    net.run(1000)
    leader = net.nodes[leader_of(net)]
    base = leader.commit_index
    for k in range(3):
        assert all(len(net.applied[n]) == base + k for n in net.nodes)
        index, _ = leader.propose(f"cmd{k}".encode())
        assert index == base + k + 1
        net.run(60)
        for node_id in net.nodes:
            assert net.applied[node_id][-1].data == f"cmd{k}".encode()


def test_follower_failure_and_rejoin() -> None:
    """"If followers crash or run slowly ... the leader retries AppendEntries RPCs indefinitely
    ... until all followers eventually store all log entries." (6.5840 TestFailAgree, and
    TestFollowerFailure: progress with one follower down, none with two down.)
    Reference: §5.3"""
    net = Network(3, seed=9)
    net.run(1000)
    leader_id = leader_of(net)
    leader = net.nodes[leader_id]
    f1, f2 = sorted(set(net.nodes) - {leader_id})

    net.isolate(f1)
    for k in range(5):
        leader.propose(f"a{k}".encode())
    net.run(200)
    assert leader.commit_index == leader.last_index
    net.heal()
    net.run(200)
    assert_logs_agree(net)

    net.isolate(f1)
    net.isolate(f2)
    index, _ = leader.propose(b"lonely")
    net.run(200)
    assert leader.commit_index < index


def test_no_agreement_without_quorum() -> None:
    """"A log entry is committed once the leader that created the entry has replicated it on a
    majority of the servers." With 3 of 5 followers gone, nothing commits; after repair the
    cluster moves on (6.5840 TestFailNoAgree).
    Reference: §5.3"""
    net = Network(5, seed=10)
    net.run(1000)
    leader_id = leader_of(net)
    leader = net.nodes[leader_id]
    leader.propose(b"ten")
    net.run(100)
    followers = sorted(set(net.nodes) - {leader_id})
    for gone in followers[:3]:
        net.isolate(gone)

    index, _ = leader.propose(b"twenty")
    net.run(250)  # shorter than the check-quorum window: still leader, still no commit
    assert leader.role is Role.LEADER
    assert leader.commit_index < index
    assert all(e.data != b"twenty" for n in net.nodes for e in net.applied[n])

    net.heal()
    net.run(1500)
    new_leader = net.nodes[leader_of(net)]
    new_index, _ = new_leader.propose(b"thirty")
    net.run(200)
    assert new_leader.commit_index >= new_index
    assert_logs_agree(net)


def test_concurrent_proposals_commit_in_one_term() -> None:
    """"The leader appends the command to its log as a new entry, then issues AppendEntries RPCs
    in parallel" — five proposals made back to back all commit, in order, in the same term
    (6.5840 TestConcurrentStarts).
    Reference: §5.3"""
    net = Network(3, seed=11)
    net.run(1000)
    leader = net.nodes[leader_of(net)]
    term = leader.term
    placed = [leader.propose(f"c{k}".encode()) for k in range(5)]

    net.run(100)

    assert [t for _, t in placed] == [term] * 5
    indexes = [i for i, _ in placed]
    assert indexes == list(range(indexes[0], indexes[0] + 5))
    for node_id in net.nodes:
        assert [e.data for e in net.applied[node_id][-5:]] == [f"c{k}".encode() for k in range(5)]


def test_rejoin_of_partitioned_leader_with_uncommitted_entries() -> None:
    """"In Raft, the leader handles inconsistencies by forcing the followers' logs to duplicate
    its own. This means that conflicting entries in follower logs will be overwritten with
    entries from the leader's log." An old leader, cut off with three uncommitted entries,
    comes back and loses them (6.5840 TestRejoin).
    Reference: §5.3"""
    net = Network(3, seed=12)
    net.run(1000)
    old = leader_of(net)
    net.nodes[old].propose(b"101")
    net.run(100)

    net.isolate(old)
    for cmd in (b"102", b"103", b"104"):
        net.nodes[old].propose(cmd)
    net.run(1000)
    new = leader_of(net)
    assert new != old
    net.nodes[new].propose(b"103")
    net.run(100)

    net.heal()
    net.isolate(new)
    net.run(1500)
    third = leader_of(net)
    assert third not in (old, new)  # the old leader's log is behind: it cannot win
    net.nodes[third].propose(b"104")
    net.run(100)

    net.heal()
    net.run(1000)
    net.nodes[leader_of(net)].propose(b"105")
    net.run(200)
    assert_logs_agree(net)
    data = [e.data for e in net.applied[old] if e.kind is EntryKind.NORMAL]
    assert data == [b"101", b"103", b"104", b"105"]


def test_backup_over_long_divergent_logs() -> None:
    """"one AppendEntries RPC will be required for each term with conflicting entries, rather
    than one RPC per entry." 50 + 50 conflicting entries across partitions are reconciled with a
    number of rejections bounded by the terms involved (6.5840 TestBackup).
    Reference: §5.3"""
    net = Network(5, seed=13)
    net.run(1000)
    leader1 = leader_of(net)
    net.nodes[leader1].propose(b"start")
    net.run(100)
    others = sorted(set(net.nodes) - {leader1})
    partner = others[0]

    # leader1 + one follower: 50 entries that cannot commit
    net.partition({leader1, partner}, set(others[1:]))
    for k in range(50):
        net.nodes[leader1].propose(f"lost-a{k}".encode())
    net.deliver_all()
    net.run(1000)
    leader2 = leader_of(net) if len(net.leaders()) == 1 else next(
        n for n in net.leaders() if n in others[1:])
    assert leader2 in others[1:]
    for k in range(50):
        net.nodes[leader2].propose(f"kept-b{k}".encode())
    net.run(100)

    # leader2 + one follower: 50 more that cannot commit
    other2 = next(n for n in others[1:] if n != leader2)
    last = next(n for n in others[1:] if n not in (leader2, other2))
    net.heal()
    net.partition({leader2, other2}, {leader1, partner, last})
    for k in range(50):
        net.nodes[leader2].propose(f"lost-c{k}".encode())
    net.deliver_all()

    # the original pair comes back with the third server of the old majority
    mark = len(net.sent)
    net.run(1500)
    leader3 = [n for n in net.leaders() if n in (leader1, partner, last)]
    assert leader3 == [last]
    for k in range(50):
        net.nodes[last].propose(f"kept-d{k}".encode())
    net.run(200)

    net.heal()
    net.run(1500)
    final = net.nodes[leader_of(net)]
    index, _ = final.propose(b"final")
    net.run(200)
    assert final.commit_index >= index
    assert_logs_agree(net)
    kept = [e.data for e in net.applied[leader1] if e.kind is EntryKind.NORMAL]
    assert kept == ([b"start"] + [f"kept-b{k}".encode() for k in range(50)]
                    + [f"kept-d{k}".encode() for k in range(50)] + [b"final"])
    # Four followers had 50 wrong entries each; backing off one entry at a time would take
    # 200 rejections. Per follower it must be O(terms), i.e. a handful.
    assert len(rejections(net.sent[mark:])) <= 4 * 3


def test_message_count_for_ten_commands() -> None:
    """"The leader appends the command to its log as a new entry, then issues AppendEntries RPCs
    in parallel to each of the other servers to replicate the entry." So ten commands cost about
    ten AppendEntries per follower, plus heartbeats (6.5840 TestCount: <= (10+1+3)*3 RPCs).
    Reference: §5.3"""
    net = Network(3, seed=14)
    net.run(1000)
    leader = net.nodes[leader_of(net)]
    start = len(net.sent)
    for k in range(10):
        leader.propose(f"n{k}".encode())
        net.deliver_all()
    net.run(50)
    appends = [m for m in net.sent[start:] if isinstance(m, AppendEntries)]
    assert len(appends) <= (10 + 1 + 3) * 3
    assert leader.commit_index == leader.last_index


def test_each_command_sent_to_each_peer_once() -> None:
    """"issues AppendEntries RPCs in parallel to each of the other servers to replicate the
    entry" — once each, not again and again (6.5840 TestRPCBytes).
    Reference: §5.3"""
    net = Network(3, seed=15)
    net.run(1000)
    leader = net.nodes[leader_of(net)]
    start = len(net.sent)
    for k in range(10):
        leader.propose(bytes([k]) * 5000)
        net.run(20)
    sent_bytes = sum(len(e.data) for m in net.sent[start:] if isinstance(m, AppendEntries) for e in m.entries)
    assert sent_bytes == 2 * 10 * 5000


def test_propose_many_appends_in_order_up_to_the_uncommitted_limit() -> None:
    """`propose_many` is `propose` for a group: the same entries in the same order, but only as
    many as the uncommitted-entry limit leaves room for; refused like `propose` when none fit
    and on a follower."""
    net, _ = leader_with_noop_committed(uncommitted_entries_max=4)
    n1 = net.nodes["n1"]
    net.drop()
    assert n1.propose_many([b"a", b"b"]) == (2, 1, 2)
    assert n1.propose_many([b"c", b"d", b"e"]) == (4, 1, 2)  # 2 uncommitted + 2 = the limit
    assert [n1.log_entry(i) for i in range(2, 6)] == [
        Entry(term=1, index=i, data=d) for i, d in zip(range(2, 6), (b"a", b"b", b"c", b"d"))]
    with pytest.raises(ProposalDropped, match="uncommitted"):
        n1.propose_many([b"f"])
    with pytest.raises(NotLeader):
        net.nodes["n2"].propose_many([b"g"])
