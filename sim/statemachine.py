"""The application side of a simulated node: what `apply` means, and snapshots.

The simulator drives any object with this shape; the scheduler's state machine is one, and
`KVStateMachine` (a register per key, for linearizability checks) is the other.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgpack


class StateMachine(Protocol):
    def apply(self, index: int, data: bytes) -> Any: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


class KVStateMachine:
    """Registers keyed by small ints. Commands are msgpack `[op_id, f, key, value]` with f in
    write | cas (value = [expected, new]) | noop; results are what a client would be told."""

    def __init__(self) -> None:
        self.values: dict[int, int | None] = {}
        self.applied = 0

    def apply(self, index: int, data: bytes) -> Any:
        assert index > self.applied, f"apply out of order: {index} after {self.applied}"
        self.applied = index
        op_id, f, key, value = msgpack.unpackb(data)
        if f == "write":
            self.values[key] = value
            return True
        if f == "cas":
            expected, new = value
            if self.values.get(key) == expected:
                self.values[key] = new
                return True
            return False
        return None

    def read(self, key: int) -> int | None:
        return self.values.get(key)

    def snapshot(self) -> bytes:
        data: bytes = msgpack.packb([self.applied, sorted(self.values.items())])
        return data

    def restore(self, data: bytes) -> None:
        applied, items = msgpack.unpackb(data)
        self.applied = applied
        self.values = {k: v for k, v in items}

    def skip(self, index: int) -> None:
        """A no-op or config entry: it still advances `applied`, so snapshots line up."""
        assert index > self.applied
        self.applied = index
