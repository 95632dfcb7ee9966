"""`Ready`: everything a node wants done after some inputs, handed out in one value.

The contract (etcd-raft `doc.go`), which `raft.driver.handle_ready` implements once for every
runtime: (1) save hard state, entries and snapshot to storage atomically and sync; (2) only
then send `messages`; (3) restore `snapshot` into the state machine if there is one, then apply
`committed_entries` in order; (4) call `node.advance(ready)`.
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


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing worth a line in the trace; the runtime adds node id and times."""

    kind: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Ready:
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    events: list[TraceEvent] = field(default_factory=list)

    @property
    def must_sync(self) -> bool:
        """Entries, a snapshot, or a changed term/vote must hit the disk before messages go out."""
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
