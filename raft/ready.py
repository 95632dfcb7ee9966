"""`Ready`: everything a node wants done after some inputs, handed out in one value.

The contract (etcd-raft `doc.go`), which `raft.driver.handle_ready` implements once for every
runtime: (1) save hard state, entries and snapshot to storage atomically and sync; (2) only
then send `messages`; (3) restore `snapshot` into the state machine if there is one, then apply
`committed_entries` in order; (4) call `node.advance(ready)`.

`hard_state` is set only when something must be synced anyway: the term or vote changed, or
entries or a snapshot are in this Ready. It always carries the node's latest commit index, but
a commit index that alone moved hands out no hard state: in Raft it is volatile (Figure 2),
etcd does not sync for it either (`MustSync`), and one fsync fewer per write is a third of the
write path. So the stored commit may lag the real one after a crash: a restarted node replays
only up to it and learns the rest from the leader, and an application that must tell replayed
entries from new ones cannot use it as the boundary (the server uses the stored last index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raft.messages import Entry, HardState, Message, Snapshot


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied `index` (§6.4)."""

    context: int
    index: int


@dataclass(slots=True, init=False)  # immutable by convention, as raft/messages.py's messages
class TraceEvent:
    """One thing worth a line in the trace; the runtime adds node id and times.

    Not `frozen`: a frozen `__init__` sets each field through `object.__setattr__`, and a
    simulated cluster builds five of these per proposal (every node's `commit`). Its
    `__init__`, like `Ready`'s, is written out so that mypyc compiles it (sim/native.py)."""

    kind: str
    fields: dict[str, Any]

    def __init__(self, kind: str, fields: dict[str, Any]) -> None:
        self.kind, self.fields = kind, fields


@dataclass(slots=True, init=False)
class Ready:
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    events: list[TraceEvent] = field(default_factory=list)

    def __init__(
        self,
        hard_state: HardState | None = None,
        entries: list[Entry] | None = None,
        snapshot: Snapshot | None = None,
        messages: list[Message] | None = None,
        committed_entries: list[Entry] | None = None,
        read_states: list[ReadState] | None = None,
        events: list[TraceEvent] | None = None,
    ) -> None:
        # Written out (one Ready per node per step; see TraceEvent); None means a fresh list,
        # as the declared default factories do (tests/raft/test_ready_init.py checks both).
        self.hard_state, self.snapshot = hard_state, snapshot
        self.entries = [] if entries is None else entries
        self.messages = [] if messages is None else messages
        self.committed_entries = [] if committed_entries is None else committed_entries
        self.read_states = [] if read_states is None else read_states
        self.events = [] if events is None else events

    @property
    def must_sync(self) -> bool:
        """Entries, a snapshot, or a changed term/vote must hit the disk before messages go out
        (a hard state is handed out only then, so its presence means a sync)."""
        return bool(self.entries) or self.snapshot is not None or self.hard_state is not None

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.entries
            or self.snapshot
            or self.messages
            or self.committed_entries
            or self.read_states
            or self.events
        )
