"""The two error families (h11 + TigerStyle).

`InvariantViolation` (and plain `assert`) means *our* bug: the program must stop. Everything else
here is an operating error that callers handle: a proposal to a follower, a malformed frame from
a peer, a read of a compacted index.
"""

from __future__ import annotations


class InvariantViolation(AssertionError):
    """A Raft invariant broke inside this process: a bug, never bad input."""


class RaftError(Exception):
    """Base of the handled errors."""


class NotLeader(RaftError):
    """A proposal or read reached a node that is not the leader; `leader_hint` may name the leader."""

    def __init__(self, leader_hint: str | None) -> None:
        super().__init__(f"not the leader (leader hint: {leader_hint or 'unknown'})")
        self.leader_hint = leader_hint


class ProposalDropped(RaftError):
    """The leader refused a proposal (e.g. a leadership transfer is in progress, or a limit)."""


class Compacted(RaftError):
    """The requested log index is behind the snapshot: only the snapshot has it now."""


class Unavailable(RaftError):
    """The requested log index is beyond what storage holds."""


class ProtocolError(RaftError):
    """A message or frame is malformed, unknown, or from a stranger; it changed no state."""


class StorageError(RaftError):
    """Durable storage cannot be trusted or used: another cluster's directory, an unsupported
    format, a checksum mismatch, a full map. The message names the path and the problem."""
