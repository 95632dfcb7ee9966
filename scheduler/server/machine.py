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


def _map_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x80 | count])
    return b"\xde" + count.to_bytes(2, "big") if count < 1 << 16 else b"\xdf" + count.to_bytes(4, "big")


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    return b"\xc5" + size.to_bytes(2, "big") if size < 1 << 16 else b"\xc6" + size.to_bytes(4, "big")


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
        """msgpack `[applied, {name: part snapshot}]`, byte for byte what `packb` writes, but
        joined from the parts' bytes in one copy: packb would copy each part into a growing
        buffer and that buffer into the result (a 200 MB scheduler snapshot peaked at 3x)."""
        pieces: list[bytes] = [b"\x92", msgpack.packb(self.applied),
                               _map_header(len(self.parts))]
        for name, part in sorted(self.parts.items()):
            data = part.snapshot()
            pieces += [msgpack.packb(name, use_bin_type=True), _bin_header(len(data)), data]
        return b"".join(pieces)

    def restore(self, data: bytes) -> None:
        applied, snapshots = msgpack.unpackb(data, raw=False)
        assert set(snapshots) == set(self.parts), "snapshot parts differ from this server's"
        for name, part in self.parts.items():
            part.restore(snapshots[name])
        self.applied = applied
