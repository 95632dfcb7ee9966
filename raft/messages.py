"""Log entries, hard state and the messages Raft nodes exchange.

All are slotted, keyword-only dataclasses (h11 `_events.py` style), validated where the paper
gives a rule. Entries, configurations and snapshots are frozen: they live in logs and storage
for a long time. Messages and `HardState` are immutable *by convention* only (not
`frozen=True`, but hashable and compared by value): a frozen dataclass's `__init__` goes
through `object.__setattr__` once per field, 2.5x the cost of a plain one, and a simulated
cluster builds ~8 messages and ~6 hard states per proposal (papers/perf/README.md, "sim").
Nothing mutates them after construction; build a new one (`dataclasses.replace`) instead.
Node ids are short strings ("n1"). Terms and indexes are ints; index 0 / term 0 is the empty
log's sentinel.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EntryKind(enum.IntEnum):
    """Why an entry is in the log: the application's command, the leader's no-op, or a config."""

    NORMAL = 0
    NOOP = 1  # "each leader commit a blank no-op entry into the log at the start of its term" (§8)
    CONFIG = 2  # a membership change (thesis §4.1); data is the encoded Configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def __post_init__(self) -> None:
        if self.term < 1 or self.index < 1:
            raise ValueError(f"entry needs term >= 1 and index >= 1, got {self.term}/{self.index}")


@dataclass(slots=True, kw_only=True, unsafe_hash=True, init=False)  # immutable by convention
class HardState:
    """What must survive a crash: "Updated on stable storage before responding to RPCs" (Fig. 2)."""

    term: int = 0
    vote: str | None = None
    commit: int = 0

    def __init__(self, *, term: int = 0, vote: str | None = None, commit: int = 0) -> None:
        self.term, self.vote, self.commit = term, vote, commit  # written out: see _HOT_INIT


@dataclass(frozen=True, slots=True, kw_only=True)
class Configuration:
    """Cluster membership: voters decide; learners only receive the log (thesis §4.2.1)."""

    voters: frozenset[str]
    learners: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.voters & self.learners:
            raise ValueError(f"a node cannot be voter and learner: {sorted(self.voters & self.learners)}")

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    index: int
    term: int
    config: Configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


# ---- messages -------------------------------------------------------------------------------
# _HOT_INIT: the three classes built most often (two per message pair, one hard state per
# Ready) write their `__init__` out (`init=False`): mypyc compiles a written-out `__init__`,
# never a dataclass-generated one (sim/native.py). tests/raft/test_messages_init.py checks
# that each sets every field, so a field added here cannot be forgotten there.

@dataclass(slots=True, kw_only=True, unsafe_hash=True)  # immutable by convention
class RequestVote:
    """"Invoked by candidates to gather votes" (Fig. 2). `pre_vote` asks without raising terms
    (thesis §9.6); `transfer` marks a vote caused by TimeoutNow, which may disturb a live leader."""

    src: str
    dst: str
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(slots=True, kw_only=True, unsafe_hash=True)  # immutable by convention
class RequestVoteResponse:
    src: str
    dst: str
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(slots=True, kw_only=True, unsafe_hash=True)  # immutable by convention
class AppendEntries:
    """"Invoked by leader to replicate log entries; also used as heartbeat" (Fig. 2).
    `read_context` > 0 piggybacks a ReadIndex confirmation round (thesis §6.4)."""

    src: str
    dst: str
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    commit: int
    read_context: int = 0

    def __init__(self, *, src: str, dst: str, term: int, prev_log_index: int, prev_log_term: int,
                 entries: tuple[Entry, ...], commit: int, read_context: int = 0) -> None:
        self.src, self.dst, self.term = src, dst, term  # written out: see _HOT_INIT
        self.prev_log_index, self.prev_log_term, self.entries = prev_log_index, prev_log_term, entries
        self.commit, self.read_context = commit, read_context


@dataclass(slots=True, kw_only=True, unsafe_hash=True)  # immutable by convention
class AppendEntriesResponse:
    """On rejection, `conflict_index`/`conflict_term` let the leader skip a whole term at once
    (the "accelerated log backtracking" of §5.3)."""

    src: str
    dst: str
    term: int
    success: bool
    match_index: int = 0
    reject_index: int = 0  # the prev_log_index that was rejected, to discard stale rejections
    conflict_index: int = 0
    conflict_term: int = 0
    read_context: int = 0

    def __init__(self, *, src: str, dst: str, term: int, success: bool, match_index: int = 0,
                 reject_index: int = 0, conflict_index: int = 0, conflict_term: int = 0,
                 read_context: int = 0) -> None:
        self.src, self.dst, self.term, self.success = src, dst, term, success  # see _HOT_INIT
        self.match_index, self.reject_index = match_index, reject_index
        self.conflict_index, self.conflict_term, self.read_context = conflict_index, conflict_term, read_context


@dataclass(slots=True, kw_only=True, unsafe_hash=True)  # immutable by convention
class InstallSnapshot:
    """One chunk of a snapshot (Fig. 13); `done` marks the last chunk."""

    src: str
    dst: str
    term: int
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(slots=True, kw_only=True, unsafe_hash=True)  # immutable by convention
class InstallSnapshotResponse:
    src: str
    dst: str
    term: int
    index: int  # the snapshot index this answers
    next_offset: int  # where the follower wants the next chunk; -1 after `done` was applied
    success: bool = True


@dataclass(slots=True, kw_only=True, unsafe_hash=True)  # immutable by convention
class TimeoutNow:
    """Leadership transfer: "causes the target server to start an election" (thesis §3.10)."""

    src: str
    dst: str
    term: int


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)

MESSAGE_TYPES: tuple[type, ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
)
