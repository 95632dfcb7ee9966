"""The node's view of its log: everything after the last snapshot, in memory.

Unlike etcd-raft we keep the whole post-snapshot log in one list (storage is for durability,
and snapshots keep the list short). What etcd splits into stable/unstable we track with one
number, `stable`: entries up to it are in storage, later ones still have to be handed out
in a Ready.

Invariants (asserted in `check()`):
    snapshot_index <= applied <= committed <= last_index
    snapshot_index <= stable <= last_index
    entries[i].index == snapshot_index + 1 + i
"""

from __future__ import annotations

from collections.abc import Sequence

from raft.messages import Entry
from raft.storage import _limit_bytes


class RaftLog:
    __slots__ = ("snapshot_index", "snapshot_term", "entries", "committed", "applied", "stable")

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = []
        self.committed = snapshot_index
        self.applied = snapshot_index  # last index handed to the application in a Ready
        self.stable = snapshot_index  # last index known to be in storage

    # ---- reading -----------------------------------------------------------------------------
    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """The term at `index`, or None when it is compacted away or beyond the log."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_term
        if offset < 0 or offset > len(self.entries):
            return None
        return self.entries[offset - 1].term

    def entry(self, index: int) -> Entry:
        assert self.snapshot_index < index <= self.last_index, f"no entry {index} in memory"
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries in `[lo, hi)`; with `bytes_max`, at least one and as many as fit."""
        assert self.snapshot_index < lo <= hi <= self.snapshot_index + len(self.entries) + 1, f"bad slice [{lo}, {hi})"
        chosen = self.entries[lo - self.snapshot_index - 1 : hi - self.snapshot_index - 1]
        # One entry is always kept (see `_limit_bytes`): a single new entry is the common case.
        return chosen if bytes_max is None or len(chosen) <= 1 else _limit_bytes(chosen, bytes_max)

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """"If the logs have last entries with different terms, then the log with the later term
        is more up-to-date. If the logs end with the same term, then whichever log is longer is
        more up-to-date." Reference: §5.4.1"""
        if last_term != self.last_term:
            return last_term > self.last_term
        return last_index >= self.last_index

    def first_index_of_term(self, index: int) -> int:
        """The first index of the run of entries that share the term at `index` (for fast backoff)."""
        term = self.term(index)
        assert term is not None
        while index - 1 > self.snapshot_index and self.term(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int) -> int:
        """The last index holding `term`, or 0 when the log has no such term (leader's backoff)."""
        for entry in reversed(self.entries):
            if entry.term == term:
                return entry.index
            if entry.term < term:
                break
        return 0

    # ---- writing -----------------------------------------------------------------------------
    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first entry that is new or conflicts ("same index but different terms"),
        or 0 when all are already in the log. The only path to truncation (see `append`)."""
        for entry in entries:
            term = self.term(entry.index)
            if term is None and entry.index <= self.snapshot_index:
                continue  # compacted, hence committed, hence matching (Log Matching)
            if term != entry.term:
                return entry.index
        return 0

    def append(self, entries: Sequence[Entry], *, truncate: bool = True) -> int:
        """Append `entries`, replacing a conflicting suffix; returns the first index written or 0."""
        if entries and entries[0].index == self.snapshot_index + len(self.entries) + 1:
            # Right after our last entry (a follower that keeps up): `find_conflict` would
            # name the first, nothing is truncated and every entry is new.
            self.entries.extend(entries)
            return entries[0].index
        conflict = self.find_conflict(entries)
        if conflict == 0:
            return 0
        assert conflict > self.committed, f"conflict at {conflict} would overwrite committed {self.committed}"
        new = [e for e in entries if e.index >= conflict]
        if truncate:
            del self.entries[conflict - self.snapshot_index - 1 :]
            self.stable = min(self.stable, conflict - 1)
            self.entries.extend(new)
        else:  # the `no-truncate` bug: overwrite in place, keep whatever follows
            for entry in new:
                offset = entry.index - self.snapshot_index - 1
                if offset < len(self.entries):
                    self.entries[offset] = entry
                else:
                    self.entries.append(entry)
            self.stable = min(self.stable, conflict - 1)
        return conflict

    def append_new(self, entry: Entry) -> None:
        assert entry.index == self.snapshot_index + len(self.entries) + 1, f"leader appends {entry.index} after {self.last_index}"
        self.entries.append(entry)

    def commit_to(self, index: int) -> bool:
        """Raise the commit index (never lower it); True when it moved."""
        if index <= self.committed:
            return False
        assert index <= self.snapshot_index + len(self.entries), f"commit {index} beyond last index {self.last_index}"
        self.committed = index
        return True

    def unstable(self) -> list[Entry]:
        return self.entries[self.stable - self.snapshot_index :]

    def next_committed(self) -> list[Entry]:
        if self.committed <= self.applied:
            return []
        return self.slice(self.applied + 1, self.committed + 1)

    def compact(self, index: int, term: int) -> None:
        """Drop entries up to `index`, which a snapshot now covers."""
        assert index <= self.applied, f"compacting {index} beyond applied {self.applied}"
        assert self.term(index) == term
        if index <= self.snapshot_index:
            return
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = index, term

    def restore(self, index: int, term: int) -> None:
        """Reset to a snapshot received from the leader, keeping a matching suffix (Fig. 13 rule 6)."""
        if self.match_term(index, term) and index > self.snapshot_index:
            del self.entries[: index - self.snapshot_index]
        else:
            self.entries = []
        self.snapshot_index, self.snapshot_term = index, term
        self.committed = max(self.committed, index)
        self.applied = max(self.applied, index)
        self.stable = max(self.stable, index) if self.entries else index

    def check(self) -> None:
        last = self.snapshot_index + len(self.entries)  # runs on every advance: no property calls
        assert self.snapshot_index <= self.applied, (self.snapshot_index, self.applied)
        assert self.applied <= self.committed, (self.applied, self.committed)
        assert self.committed <= last, (self.committed, last)
        assert self.snapshot_index <= self.stable <= last, (self.stable, last)
        if self.entries:
            assert self.entries[0].index == self.snapshot_index + 1
