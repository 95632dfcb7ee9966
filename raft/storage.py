"""The storage contract (etcd-raft's `Storage`, plus the writes the driver makes) and `MemoryStorage`.

Raft's core only *reads* storage (at start-up, and to fetch a snapshot for a lagging follower,
one chunk at a time: `snapshot_meta()` and `snapshot_chunk()` never need the whole snapshot in
memory, so a durable storage can leave the bytes on disk between reads).
The driver writes it, following the Ready contract: `save()` is one atomic, synced write of
hard state, new entries (which replace any conflicting suffix) and snapshot, and it happens
*before* the messages of the same Ready are sent.

Index conventions: the log holds `[first_index(), last_index()]`; `term(i)` is valid from
`first_index() - 1` (the snapshot's index) to `last_index()`; `entries(lo, hi)` is half-open.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Final, Protocol

from raft.errors import Compacted, Unavailable
from raft.messages import Configuration, Entry, HardState, Snapshot, SnapshotMeta


class Storage(Protocol):
    def initial_state(self) -> HardState: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def term(self, index: int) -> int: ...
    def entries(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]: ...
    def snapshot(self) -> Snapshot | None: ...
    def snapshot_meta(self) -> SnapshotMeta | None: ...
    def snapshot_chunk(self, offset: int, size: int) -> tuple[bytes, bool]: ...
    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None) -> None: ...
    def compact(self, snapshot: Snapshot) -> None: ...


_ENTRY_OVERHEAD: Final = 16
_DATA: Final = operator.attrgetter("data")


def entry_size(entry: Entry) -> int:
    """An estimate of an entry's wire size, for byte limits; cheap, never exact."""
    return len(entry.data) + _ENTRY_OVERHEAD


class MemoryStorage:
    """The reference `Storage`: everything in lists. In the simulator it plays the disk, so a
    crash keeps exactly what `save()` stored."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._offset = 0  # index of the snapshot (0 when none); _log[i] has index _offset + 1 + i
        self._offset_term = 0
        self._log: list[Entry] = []
        self.saves = 0

    def initial_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._offset + 1

    def last_index(self) -> int:
        return self._offset + len(self._log)

    def term(self, index: int) -> int:
        if index < self._offset:
            raise Compacted(f"index {index} is behind the snapshot at {self._offset}")
        if index > self.last_index():
            raise Unavailable(f"index {index} is beyond the last index {self.last_index()}")
        if index == self._offset:
            return self._offset_term
        return self._log[index - self._offset - 1].term

    def entries(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        if lo <= self._offset:
            raise Compacted(f"index {lo} is compacted (snapshot at {self._offset})")
        if hi > self.last_index() + 1 or lo > hi:
            raise Unavailable(f"range [{lo}, {hi}) is outside [1, {self.last_index() + 1})")
        chosen = self._log[lo - self._offset - 1 : hi - self._offset - 1]
        if bytes_max is None:
            return list(chosen)
        return _limit_bytes(chosen, bytes_max)

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot.meta if self._snapshot is not None else None

    def snapshot_chunk(self, offset: int, size: int) -> tuple[bytes, bool]:
        """`snapshot().data[offset:offset + size]` and whether that chunk reaches the end."""
        assert self._snapshot is not None, "no snapshot to send"
        data = self._snapshot.data
        chunk = data[offset : offset + size]
        return chunk, offset + len(chunk) >= len(data)

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self._install(snapshot)
        if entries:
            self._append(entries)
        if hard_state is not None:
            self._hard_state = hard_state
        self.saves += 1

    def compact(self, snapshot: Snapshot) -> None:
        """Keep `snapshot` and drop the log up to its index (the state machine has applied it)."""
        index = snapshot.meta.index
        assert index <= self.last_index(), "cannot compact beyond the log"
        if index <= self._offset:
            return
        self._log = self._log[index - self._offset :]
        self._offset, self._offset_term = index, snapshot.meta.term
        self._snapshot = snapshot

    def _install(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        keep: list[Entry] = []
        if self._offset < meta.index <= self.last_index() and self.term(meta.index) == meta.term:
            keep = self._log[meta.index - self._offset :]  # Fig. 13 rule 6: retain the suffix
        self._log, self._offset, self._offset_term = keep, meta.index, meta.term
        self._snapshot = snapshot

    def _append(self, entries: Sequence[Entry]) -> None:
        first, offset, log = entries[0].index, self._offset, self._log  # once per saved Ready
        assert first > offset, "appending entries that are already in the snapshot"
        assert first <= offset + len(log) + 1, f"gap in the log: {first} after {self.last_index()}"
        del log[first - offset - 1 :]  # the new entries replace any conflicting suffix
        log.extend(entries)
        assert log[-1].index == offset + len(log)


def check_append(entries: Sequence[Entry], snapshot_index: int, last_index: int) -> None:
    """The caller's side of `save`'s contract for disk storages (docs/storage.md): the new
    entries are contiguous and start in [snapshot_index + 1, last_index + 1]. A breach is the
    caller's bug, so an AssertionError, as in MemoryStorage."""
    first = entries[0].index
    assert first > snapshot_index, "appending entries that are already in the snapshot"
    assert first <= last_index + 1, f"gap in the log: {first} after {last_index}"
    for offset, entry in enumerate(entries):
        assert entry.index == first + offset, f"entries not contiguous at {entry.index}"


def _limit_bytes(chosen: Sequence[Entry], bytes_max: int) -> list[Entry]:
    """At least one entry, then as many as fit in `bytes_max` (etcd's `limitSize`). All of
    them usually fit: that is checked first in one pass without a call per entry (a leader
    slices its log once per follower per Ready)."""
    if sum(map(len, map(_DATA, chosen))) + _ENTRY_OVERHEAD * len(chosen) <= bytes_max:
        return list(chosen)
    result: list[Entry] = []
    total = 0
    for entry in chosen:
        total += entry_size(entry)
        if result and total > bytes_max:
            break
        result.append(entry)
    return result


def empty_snapshot_meta(config: Configuration) -> SnapshotMeta:
    return SnapshotMeta(index=0, term=0, config=config)
