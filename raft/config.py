"""Tunables of one Raft node. Times are milliseconds of the node's own clock (floats allowed)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

KNOWN_BUGS: frozenset[str] = frozenset(
    {
        "commit-old-term",  # count replicas for entries of earlier terms (the Figure 8 bug)
        "vote-any-log",  # grant votes without the up-to-date log check (§5.4.1)
        "no-truncate",  # append without truncating a conflicting suffix (the rafto pitfall)
        "stale-read",  # serve reads without confirming leadership (§8)
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    node_id: str
    # Bootstrap voters, including node_id; the log's config wins later. Empty means "joining":
    # the node knows no configuration, never campaigns, and learns one from the leader's log.
    peers: frozenset[str]
    election_timeout_ms_min: float = 150.0
    election_timeout_ms_max: float = 300.0
    heartbeat_interval_ms: float = 50.0
    pre_vote: bool = True
    check_quorum: bool = True
    entries_per_message_max: int = 256
    bytes_per_message_max: int = 1 << 20
    inflight_messages_max: int = 64
    snapshot_chunk_bytes: int = 64 * 1024
    uncommitted_entries_max: int = 10_000
    keep_timer_on_higher_term: bool = False  # Figure 2's timer rule instead of etcd's (docs/raft.md)
    clock_drift_rate_max: float = 0.001  # lease reads assume every clock's rate is within 1 ± this
    # Whether any node of the cluster may answer `read_index(lease=True)` from its lease. Set it
    # alike on every node. False lets a follower forget its lease promise when its leader's
    # connection closes, and the leader then never answers from a lease (docs/raft.md).
    lease_reads: bool = True
    # `leader_connection_lost`: the survivors campaign in turns of this many ms, by id (the k-th
    # after k·J + U(0, J/2)), from the close (lease_reads off) or from the lease promise's
    # expiry (on); None ignores the signal. Turns keep survivors that saw the same close at the
    # same instant from splitting the vote; J must exceed a pre-vote round trip to help.
    leader_loss_jitter_ms: float | None = 30.0
    bugs: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.peers and self.node_id not in self.peers:
            raise ValueError(f"node {self.node_id!r} must be one of its bootstrap peers {sorted(self.peers)}")
        if not 0 < self.election_timeout_ms_min <= self.election_timeout_ms_max:
            raise ValueError("need 0 < election_timeout_ms_min <= election_timeout_ms_max")
        if not 0 < self.heartbeat_interval_ms < self.election_timeout_ms_min:
            raise ValueError("the heartbeat interval must be shorter than the election timeout (§5.6)")
        if self.leader_loss_jitter_ms is not None and not 0.0 <= self.leader_loss_jitter_ms < math.inf:
            raise ValueError("leader_loss_jitter_ms must be None or a finite number >= 0")
        if not 0.0 <= self.clock_drift_rate_max < 1.0:
            raise ValueError("clock_drift_rate_max must be within [0, 1)")
        unknown = self.bugs - KNOWN_BUGS
        if unknown:
            raise ValueError(f"unknown bug switches {sorted(unknown)}; known: {sorted(KNOWN_BUGS)}")
        for name in ("entries_per_message_max", "bytes_per_message_max", "inflight_messages_max",
                     "snapshot_chunk_bytes", "uncommitted_entries_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
