"""What a leader knows about each follower's log (etcd's `Progress`), and the quorum arithmetic."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable

from raft.messages import SnapshotMeta


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class ReplicationState(enum.Enum):
    PROBE = "probe"  # one append in flight until we learn where the follower's log matches
    REPLICATE = "replicate"  # matching point known: stream appends, up to the inflight bound
    SNAPSHOT = "snapshot"  # sending a snapshot in chunks; appends wait


class Progress:
    __slots__ = (
        "next", "match", "state", "probe_sent", "inflight", "acked",
        "recent_active", "snapshot_meta", "snapshot_offset",
    )

    def __init__(self, next_index: int) -> None:
        self.next = next_index
        self.match = 0
        self.state = ReplicationState.PROBE
        self.probe_sent = False
        self.inflight: deque[int] = deque()  # last index of each unacknowledged append
        self.acked = True  # heard back since the last heartbeat round
        self.recent_active = True  # heard back within the check-quorum window
        self.snapshot_meta: SnapshotMeta | None = None
        self.snapshot_offset = 0

    def become_probe(self) -> None:
        self.state = ReplicationState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()
        self.snapshot_meta = None

    def become_replicate(self) -> None:
        self.state = ReplicationState.REPLICATE
        self.next = self.match + 1
        self.inflight.clear()

    def ack(self, match_index: int) -> bool:
        """Record that the follower's log matches ours up to `match_index`; True if that is news."""
        while self.inflight and self.inflight[0] <= match_index:
            self.inflight.popleft()
        if match_index <= self.match:
            return False
        self.match = match_index
        self.next = max(self.next, match_index + 1)
        return True


def quorum_size(voters: int) -> int:
    assert voters >= 1
    return voters // 2 + 1


def quorum_commit_index(match_indexes: Iterable[int]) -> int:
    """The highest index that a majority of the given voters hold (Fig. 2, "Rules for Leaders")."""
    ordered = sorted(match_indexes, reverse=True)
    assert ordered, "a configuration has at least one voter"
    return ordered[quorum_size(len(ordered)) - 1]
