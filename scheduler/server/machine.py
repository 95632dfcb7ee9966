"""`ServerMachine`: the one replicated state machine of a server, made of named parts.

Why parts: the scheduler's state machine and the KV registers are written and tested alone,
but a Raft log has one applier. A command is `msgpack [part, payload]`; the part applies the
payload. The snapshot is every part's snapshot, so one Raft snapshot restores them all.

A part has the runtime's shape minus `skip` (no-ops and configuration entries concern no part).
A command that names no known part, or is not an envelope at all, yields an error result on
every node alike, and changes nothing: the log is shared, so a bad entry must not crash anyone.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgpack

from scheduler.server.kv import KVStore

__all__ = ["KVPart", "Part", "ServerMachine", "envelope"]


class Part(Protocol):
    def apply(self, index: int, data: bytes) -> Any: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


def envelope(part: str, payload: bytes) -> bytes:
    """The log entry for `payload`, addressed to `part`."""
    packed: bytes = msgpack.packb([part, payload], use_bin_type=True)
    return packed


class KVPart:
    """`KVStore` as a part: its snapshot is msgpack of the sorted items."""

    def __init__(self) -> None:
        self.store = KVStore()

    def apply(self, index: int, data: bytes) -> Any:
        return self.store.apply(index, data)

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(self.store.snapshot_state(), use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        self.store.restore_state(msgpack.unpackb(data, raw=False))


class ServerMachine:
    def __init__(self, parts: dict[str, Part]) -> None:
        assert parts, "a machine needs at least one part"
        self.parts = parts
        self.applied = 0

    def apply(self, index: int, data: bytes) -> Any:
        assert index > self.applied, f"apply out of order: {index} after {self.applied}"
        self.applied = index
        try:
            name, payload = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return {"ok": False, "error": "malformed command envelope"}
        part = self.parts.get(name) if isinstance(name, str) else None
        if part is None or not isinstance(payload, bytes):
            return {"ok": False, "error": f"no state machine part {name!r}"}
        return part.apply(index, payload)

    def skip(self, index: int) -> None:
        assert index > self.applied, f"skip out of order: {index} after {self.applied}"
        self.applied = index

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(
            [self.applied, {name: part.snapshot() for name, part in sorted(self.parts.items())}],
            use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        applied, snapshots = msgpack.unpackb(data, raw=False)
        assert set(snapshots) == set(self.parts), "snapshot parts differ from this server's"
        for name, part in self.parts.items():
            part.restore(snapshots[name])
        self.applied = applied
