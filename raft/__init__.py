"""raft: a sans-IO Raft (leader election, replication, snapshots, membership, pre-vote,
check-quorum, leadership transfer, ReadIndex) plus the adapters that give it I/O.

Rules:
  1. The core (`node`, `log`, `progress`, `messages`, `ready`, `config`) never imports trio,
     socket, time, random's global functions, or lmdb; `tests/raft/test_sans_io.py` checks it.
  2. Time and randomness are inputs; the same inputs give the same outputs, byte for byte.
  3. Storage writes happen in the driver, per the Ready contract (`raft.ready`).
"""

from raft.config import KNOWN_BUGS as KNOWN_BUGS, RaftConfig as RaftConfig
from raft.errors import (
    Compacted as Compacted,
    InvariantViolation as InvariantViolation,
    NotLeader as NotLeader,
    ProposalDropped as ProposalDropped,
    ProtocolError as ProtocolError,
    Unavailable as Unavailable,
)
from raft.messages import (
    Configuration as Configuration,
    Entry as Entry,
    EntryKind as EntryKind,
    HardState as HardState,
    Snapshot as Snapshot,
    SnapshotMeta as SnapshotMeta,
)
from raft.node import ConfChange as ConfChange, RaftNode as RaftNode
from raft.progress import Role as Role
from raft.ready import ReadState as ReadState, Ready as Ready, TraceEvent as TraceEvent
from raft.storage import MemoryStorage as MemoryStorage, Storage as Storage

__all__ = [
    "KNOWN_BUGS", "Compacted", "ConfChange", "Configuration", "Entry", "EntryKind", "HardState",
    "InvariantViolation", "MemoryStorage", "NotLeader", "ProposalDropped", "ProtocolError",
    "RaftConfig", "RaftNode", "ReadState", "Ready", "Role", "Snapshot", "SnapshotMeta", "Storage",
    "TraceEvent", "Unavailable",
]
