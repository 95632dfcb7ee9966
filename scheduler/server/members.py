"""`MembersPart`: the replicated address book of nodes that joined after bootstrap (agents).

Why replicated: whichever server leads must reach a learner to replicate to it, and every
server must accept the learner's replies, so every server needs its Raft address; and the
log is the one thing every server reads in the same order. Bootstrap servers stay in their
`--peers` option and never appear here.

A command is msgpack `["join", node, raft "HOST:PORT", http "HOST:PORT"]`. Applying it calls
`on_join(node, raft, http)` on every server (the transport adds the peer), also on replay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgpack

__all__ = ["MEMBERS_MAX", "MembersPart", "encode_join"]

MEMBERS_MAX: Final = 1_000
ADDRESS_CHARS_MAX: Final = 300


def encode_join(node: str, raft: str, http: str) -> bytes:
    packed: bytes = msgpack.packb(["join", node, raft, http], use_bin_type=True)
    return packed


class MembersPart:
    def __init__(self, on_join: Callable[[str, str, str], None]) -> None:
        self.addresses: dict[str, tuple[str, str]] = {}  # node -> (raft, http)
        self._on_join = on_join

    def apply(self, index: int, data: bytes) -> dict[str, Any]:
        try:
            op, node, raft, http = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return {"ok": False, "error": "malformed members command"}
        texts = (node, raft, http)
        if op != "join" or not all(isinstance(t, str) and 0 < len(t) <= ADDRESS_CHARS_MAX for t in texts):
            return {"ok": False, "error": "a join needs a node, a Raft and an HTTP address"}
        if node not in self.addresses and len(self.addresses) >= MEMBERS_MAX:
            return {"ok": False, "error": f"at most {MEMBERS_MAX} joined members"}
        self.addresses[node] = (raft, http)
        self._on_join(node, raft, http)
        return {"ok": True, "node": node}

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(sorted([n, r, h] for n, (r, h) in self.addresses.items()),
                                      use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        self.addresses = {}
        for node, raft, http in msgpack.unpackb(data, raw=False):
            self.addresses[node] = (raft, http)
            self._on_join(node, raft, http)
