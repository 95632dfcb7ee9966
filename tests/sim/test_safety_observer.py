"""`SafetyObserver` flags each Raft safety property when fed a hand-built violation.

Every checker must be able to fail (DESIGN.md: "Every guarantee has a checker that can fail, and
a test that shows it failing on a history that violates it"). The observer reads only a node's
role, term, commit index, snapshot index and `log_term`, plus the Ready it just processed, so a
small stand-in node and hand-made Readys reach every branch without a cluster.
Reference: Raft paper Figure 3; DESIGN.md guarantee 1.
"""

from __future__ import annotations

from raft.messages import Entry, EntryKind, Snapshot, SnapshotMeta, Configuration
from raft.progress import Role
from raft.ready import Ready, TraceEvent
from sim.checkers import SafetyObserver


class StandIn:
    """What the observer looks at on a node: its log's terms by index, role, term, commit."""

    def __init__(self, terms: list[int], *, role: Role = Role.FOLLOWER, term: int = 1, commit: int = 0,
                 snapshot_index: int = 0) -> None:
        self.terms = terms  # terms[i - 1] is the term of index i
        self.role, self.term, self.commit_index, self.snapshot_index = role, term, commit, snapshot_index

    def log_term(self, index: int) -> int | None:
        if index == 0:
            return 0
        return self.terms[index - 1] if index <= len(self.terms) else None


def entry(index: int, term: int, data: bytes = b"", kind: EntryKind = EntryKind.NORMAL) -> Entry:
    return Entry(index=index, term=term, kind=kind, data=data)


def became_leader(term: int) -> TraceEvent:
    return TraceEvent("role", {"role": "leader", "term": term, "leader": None, "reason": "won election"})


def feed(observer: SafetyObserver, node_id: str, node: StandIn, ready: Ready, *, lifetime: int = 1,
         step: int = 1) -> None:
    observer.on_ready(node_id, lifetime, node, ready, step, float(step))  # type: ignore[arg-type]


def kinds(observer: SafetyObserver) -> list[str]:
    return [violation.kind for violation in observer.violations]


# ---- a clean history stays clean ---------------------------------------------------------------------
def test_a_correct_history_has_no_violations() -> None:
    observer = SafetyObserver()
    leader = StandIn([1], role=Role.LEADER, term=1)
    feed(observer, "n1", leader, Ready(entries=[entry(1, 1, kind=EntryKind.NOOP)], events=[became_leader(1)]))
    follower = StandIn([1])
    feed(observer, "n2", follower, Ready(entries=[entry(1, 1, kind=EntryKind.NOOP)]), step=2)
    leader.terms.append(1)
    feed(observer, "n1", leader, Ready(entries=[entry(2, 1, b"x")]), step=3)
    leader.commit_index = 2
    feed(observer, "n1", leader, Ready(committed_entries=[entry(1, 1, kind=EntryKind.NOOP), entry(2, 1, b"x")]),
         step=4)
    follower.terms.append(1)
    follower.commit_index = 2
    feed(observer, "n2", follower, Ready(entries=[entry(2, 1, b"x")],
                                         committed_entries=[entry(1, 1, kind=EntryKind.NOOP), entry(2, 1, b"x")]),
         step=5)
    later = StandIn([1, 1, 2], role=Role.LEADER, term=2, commit=2)
    feed(observer, "n2", later, Ready(entries=[entry(3, 2, kind=EntryKind.NOOP)], events=[became_leader(2)]), step=6)
    assert observer.violations == []
    assert observer.normal_committed == 1, "the no-op is not a client command"


# ---- Election Safety ------------------------------------------------------------------------------------
def test_two_leaders_in_one_term_are_flagged() -> None:
    """"Election Safety: at most one leader can be elected in a given term." Reference: Figure 3"""
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([], role=Role.LEADER, term=3), Ready(events=[became_leader(3)]))
    feed(observer, "n1", StandIn([], role=Role.LEADER, term=3), Ready(events=[became_leader(3)]), step=2)
    assert observer.violations == [], "the same leader reported twice is still one leader"
    feed(observer, "n2", StandIn([], role=Role.LEADER, term=4), Ready(events=[became_leader(4)]), step=3)
    assert observer.violations == [], "one leader per term, different terms"
    feed(observer, "n3", StandIn([], role=Role.LEADER, term=3), Ready(events=[became_leader(3)]), step=4)
    assert kinds(observer) == ["election_safety"]
    assert "two leaders in term 3: n1 and n3" in observer.violations[0].detail
    assert observer.violations[0].node == "n3" and observer.violations[0].step == 4


# ---- Leader Append-Only -----------------------------------------------------------------------------------
def test_a_leader_overwriting_its_own_entry_is_flagged() -> None:
    """"Leader Append-Only: a leader never overwrites or deletes entries in its log." Reference: Figure 3"""
    observer = SafetyObserver()
    leader = StandIn([2, 2], role=Role.LEADER, term=2)
    feed(observer, "n1", leader, Ready(entries=[entry(1, 2), entry(2, 2, b"a")]))
    feed(observer, "n1", leader, Ready(entries=[entry(3, 2, b"b")]), step=2)
    assert observer.violations == []
    feed(observer, "n1", leader, Ready(entries=[entry(2, 2, b"c")]), step=3)
    assert "leader_append_only" in kinds(observer)


def test_a_follower_truncating_its_log_is_not_a_leader_rewrite() -> None:
    observer = SafetyObserver()
    follower = StandIn([1, 1])
    feed(observer, "n2", follower, Ready(entries=[entry(1, 1), entry(2, 1, b"old")]))
    follower.terms[1] = 2
    feed(observer, "n2", follower, Ready(entries=[entry(2, 2, b"new")]), step=2)
    assert observer.violations == []


# ---- Log Matching ---------------------------------------------------------------------------------------------
def test_two_different_entries_with_one_index_and_term_are_flagged() -> None:
    """"Log Matching: if two logs contain an entry with the same index and term, then the logs are
    identical in all entries up through the given index." Reference: Figure 3, §5.3"""
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([1, 1]), Ready(entries=[entry(1, 1), entry(2, 1, b"a")]))
    feed(observer, "n2", StandIn([1, 1]), Ready(entries=[entry(1, 1), entry(2, 1, b"b")]), step=2)
    assert kinds(observer) == ["log_matching"]
    assert "index 2 term 1" in observer.violations[0].detail


def test_equal_entries_on_different_prefixes_are_flagged() -> None:
    """Same (index, term) and same command, but one log has term 1 before it and the other term 2:
    the logs are not identical up to that index."""
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([1, 3]), Ready(entries=[entry(2, 3, b"x")]))
    feed(observer, "n2", StandIn([2, 3]), Ready(entries=[entry(2, 3, b"x")]), step=2)
    assert kinds(observer) == ["log_matching"]
    assert "follows term 2 here, 1 elsewhere" in observer.violations[0].detail


# ---- Leader Completeness ----------------------------------------------------------------------------------------
def test_a_new_leader_missing_a_committed_entry_is_flagged() -> None:
    """"Leader Completeness: if a log entry is committed in a given term, then that entry will be
    present in the logs of the leaders for all higher-numbered terms." Reference: Figure 3, §5.4"""
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([1, 1], commit=2),
         Ready(committed_entries=[entry(1, 1), entry(2, 1, b"committed")]))
    feed(observer, "n3", StandIn([1, 1, 3], role=Role.LEADER, term=3), Ready(events=[became_leader(3)]), step=2)
    assert observer.violations == [], "this leader has both committed entries"
    feed(observer, "n2", StandIn([1, 2, 4], role=Role.LEADER, term=4), Ready(events=[became_leader(4)]), step=3)
    assert kinds(observer) == ["leader_completeness"]
    assert "lacks entry 2 (term 1) committed in term 1, has term 2" in observer.violations[0].detail


def test_a_leader_of_an_older_term_elected_late_is_not_bound_by_newer_commits() -> None:
    """Leader Completeness binds "leaders for all higher-numbered terms" only. A candidate of
    term 5 paused with its votes queued can resume and win after term 6 committed an entry it
    lacks (found by the swarm, seed 1799): no violation, since it can commit nothing. A leader of
    term 7 lacking that entry is one."""
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([4, 6], role=Role.LEADER, term=6, commit=2),
         Ready(committed_entries=[entry(1, 4), entry(2, 6, b"x")]))
    feed(observer, "n2", StandIn([4, 5], role=Role.LEADER, term=5), Ready(events=[became_leader(5)]), step=2)
    assert observer.violations == []
    feed(observer, "n3", StandIn([4, 7], role=Role.LEADER, term=7), Ready(events=[became_leader(7)]), step=3)
    assert kinds(observer) == ["leader_completeness"]
    assert "committed in term 6" in observer.violations[0].detail


def test_the_commit_term_is_the_first_committers_term() -> None:
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([2, 2], role=Role.LEADER, term=2, commit=2), Ready())
    feed(observer, "n2", StandIn([2, 2], term=3, commit=2), Ready(), step=2)
    assert observer.commit_terms == {1: 2, 2: 2}


def test_a_leader_whose_snapshot_covers_committed_entries_is_complete() -> None:
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([1, 1], commit=2), Ready(committed_entries=[entry(1, 1), entry(2, 1, b"x")]))
    compacted = StandIn([1, 1, 2], role=Role.LEADER, term=2, snapshot_index=2)
    compacted.log_term = lambda index: {2: 1, 3: 2}.get(index)  # type: ignore[method-assign]
    feed(observer, "n2", compacted, Ready(events=[became_leader(2)]), step=2)
    assert observer.violations == []


# ---- State Machine Safety -----------------------------------------------------------------------------------------
def test_two_different_applies_at_one_index_are_flagged() -> None:
    """"State Machine Safety: if a server has applied a log entry at a given index to its state
    machine, no other server will ever apply a different log entry for the same index." Figure 3"""
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([1]), Ready(committed_entries=[entry(1, 1, b"a")]))
    feed(observer, "n2", StandIn([1]), Ready(committed_entries=[entry(1, 1, b"a")]), step=2)
    assert observer.violations == [], "the same entry applied twice (two nodes) is fine"
    feed(observer, "n3", StandIn([2]), Ready(committed_entries=[entry(1, 2, b"b")]), step=3)
    assert kinds(observer) == ["state_machine_safety"]
    assert observer.normal_committed == 1


def test_the_same_term_with_another_command_at_one_index_is_flagged() -> None:
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([1]), Ready(committed_entries=[entry(1, 1, b"a")]))
    feed(observer, "n2", StandIn([1]), Ready(committed_entries=[entry(1, 1, b"z")]), step=2)
    assert kinds(observer) == ["state_machine_safety"]


# ---- commit index monotonic --------------------------------------------------------------------------------------
def test_a_commit_index_going_back_within_one_lifetime_is_flagged() -> None:
    """DESIGN.md guarantee 1: "a node's commit index never goes backwards within one lifetime"."""
    observer = SafetyObserver()
    feed(observer, "n1", StandIn([1, 1, 1], commit=3), Ready())
    feed(observer, "n1", StandIn([1, 1, 1], commit=1), Ready(), lifetime=2, step=2)
    assert observer.violations == [], "a restart may come back with a lower (persisted) commit index"
    feed(observer, "n1", StandIn([1, 1, 1], commit=0), Ready(), lifetime=2, step=3)
    assert kinds(observer) == ["commit_monotonic"]
    assert "from 1 to 0" in observer.violations[0].detail


def test_a_snapshot_raises_the_committed_frontier() -> None:
    observer = SafetyObserver()
    meta = SnapshotMeta(index=5, term=2, config=Configuration(voters=frozenset({"n1"})))
    feed(observer, "n1", StandIn([], commit=5, snapshot_index=5), Ready(snapshot=Snapshot(meta=meta, data=b"")))
    assert observer.max_committed == 5 and observer.violations == []


def test_violations_are_capped_and_serialise() -> None:
    observer = SafetyObserver(max_violations=2)
    for step in range(5):
        feed(observer, f"n{step}", StandIn([], role=Role.LEADER, term=7), Ready(events=[became_leader(7)]),
             step=step)
    assert len(observer.violations) == 2
    record = observer.violations[0].to_json()
    assert record["kind"] == "election_safety" and {"detail", "node", "step", "true_ms"} <= record.keys()
