"""`WalStorage`: an `LmdbStorage` behind a write-ahead log, so an ordinary save is ONE flush.

A synced LMDB commit flushes twice (the data pages, then the meta page). Here a save appends
one checksummed record to a preallocated file (`wal`, next to data.mdb) and calls fdatasync:
the blocks were written once at creation, so the flush carries data only, no journal commit.
The record's effect lives in an in-memory overlay (the newest hard state; the entries from
the lowest index rewritten since the last checkpoint) that every read merges over LMDB.
LMDB is written only by a checkpoint (one ordinary synced save of the whole overlay), by
snapshot saves and by compaction, each preceded by a checkpoint; so LMDB always sits at a
durable state, and the WAL's current generation holds exactly what happened since.

Why replay is idempotent: the records are folded in memory into one overlay first (entries
from index m on, the last hard state), then applied as ONE save at m. The log below m is the
same before and after a checkpoint, so a crash between the checkpoint's LMDB commit and the
new generation's header just applies the same fold to a log that already holds it.
docs/storage.md ("The write-ahead log") has the format and the crash cases.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import msgpack

from raft.codec import decode_entry, decode_hard_state, encode_entry, encode_hard_state, pack
from raft.errors import Compacted, ProtocolError, StorageError, Unavailable
from raft.lmdb_storage import MAP_SIZE_DEFAULT, LmdbStorage, sealed_entry
from raft.messages import Entry, HardState, Snapshot, SnapshotMeta
from raft.storage import check_append, entry_size

__all__ = ["WAL_BYTES_DEFAULT", "WAL_FILE", "WAL_FORMAT", "Limits", "WalStorage", "open_storage"]

WAL_FILE: Final = "wal"
WAL_FORMAT: Final = 1
WAL_BYTES_DEFAULT: Final = 16 << 20  # 4x Limits.bytes: a checkpoint comes before it is full
_MAGIC: Final = b"RCRFTWAL"
_SLOT_BYTES: Final = 2048  # two header slots (generation g lives in slot g % 2), like LMDB's metas
_RECORDS_AT: Final = 4096  # records start on their own page, never sharing one with a header
_HEADER: Final = struct.Struct(">8sIQH")  # magic, format, generation, ids length; ids; crc32
_RECORD: Final = struct.Struct(">IIQQ")  # length, crc32, generation, sequence; then payload
_ENTRY_BYTES_MAX: Final = 1 << 31  # entries were checked by whoever sent them; no frame limit
_ZEROS: Final = bytes(1 << 20)


@dataclass(frozen=True, slots=True)
class Limits:
    """When to checkpoint: the overlay's entries and bytes, or the records in the generation.
    The overlay lives in memory, so these bound memory and the checkpoint's pause."""

    entries: int = 1024  # a checkpoint of 4,096 one-entry saves paused a save 7-60 ms here
    bytes: int = 4 << 20
    records: int = 2048


# One record as replay reads it: the hard state, the entries, and their LMDB values.
_Record = tuple[HardState | None, list[Entry], list[bytes]]


@dataclass(frozen=True, slots=True)
class _Overlay:
    """What the WAL's current generation adds to LMDB. Replaced whole, never mutated, so a
    reader on another thread sees the state before a save or after it, never a mix.
    `entries` are contiguous from `entries[0].index`, which replaces LMDB's log from there;
    `values` are their LMDB values (`sealed_entry`), made when each was encoded for its
    record, so the checkpoint encodes nothing."""

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    values: tuple[bytes, ...] = ()
    entry_bytes: int = 0
    records: int = 0

    def with_save(self, hard_state: HardState | None, entries: Sequence[Entry],
                  values: Sequence[bytes]) -> _Overlay:
        kept, kept_values, size = self.entries, self.values, self.entry_bytes
        if entries:
            start = kept[0].index if kept else entries[0].index
            cut = max(0, entries[0].index - start)
            size += (sum(entry_size(e) for e in entries)
                     - sum(entry_size(e) for e in kept[cut:]))  # usually nothing is replaced
            kept = kept[:cut] + tuple(entries)  # a copy: readers on other threads keep theirs
            kept_values = kept_values[:cut] + tuple(values)
        return _Overlay(hard_state if hard_state is not None else self.hard_state, kept,
                        kept_values, size, self.records + 1)


class WalStorage:
    """Durable `Storage`: `LmdbStorage` plus a WAL that makes each ordinary save one
    fdatasync. Build it with `WalStorage.open(...)`; the inner storage is owned by it."""

    def __init__(self, inner: LmdbStorage, descriptor: int, path: str, ids: bytes,
                 capacity: int, generation: int, limits: Limits) -> None:
        """Private: use `open()`, which replays the WAL and starts a new generation."""
        self._inner = inner
        self._fd: int | None = descriptor
        self._wal_path = path
        self._ids = ids
        self._capacity = capacity
        self._generation = generation
        self._limits = limits
        self._tail = _RECORDS_AT
        self._sequence = 0
        self._overlay = _Overlay()
        self._broken: str | None = None  # set when a WAL write failed: its state is unknown
        self.saves = 0
        self.checkpoints = 0

    # ---- lifecycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, cluster_id: str, node_id: str,
             map_size: int = MAP_SIZE_DEFAULT, wal_bytes: int = WAL_BYTES_DEFAULT,
             limits: Limits | None = None) -> WalStorage:
        """Open (or create) the storage of `node_id` in `cluster_id` at `path`, replay the
        WAL's current generation onto LMDB and start the next generation."""
        if wal_bytes < _RECORDS_AT + 4096:
            raise ValueError(f"wal_bytes must be at least {_RECORDS_AT + 4096}")
        inner = LmdbStorage.open(path, cluster_id=cluster_id, node_id=node_id, map_size=map_size,
                                 beside_wal=True)
        descriptor: int | None = None
        try:
            wal_path = os.path.join(inner.path, WAL_FILE)
            ids = _ids(cluster_id, node_id)
            if not os.path.exists(wal_path):
                _create_wal(wal_path, ids, wal_bytes)
            descriptor = os.open(wal_path, os.O_RDWR)
            capacity = os.fstat(descriptor).st_size
            if capacity < _RECORDS_AT + _RECORD.size:
                raise StorageError(f"{wal_path} is truncated ({capacity} bytes): not a WAL "
                                   f"this build wrote, or a damaged one")
            generation = _read_generation(descriptor, wal_path, ids)
            storage = cls(inner, descriptor, wal_path, ids, capacity, generation,
                          limits or Limits())
            storage._overlay = storage._replay(_read_records(descriptor, wal_path, generation,
                                                              capacity))
            storage._checkpoint()
            storage._start_generation(force=True)  # never append after a tail we did not write
        except OSError as exc:
            if descriptor is not None:
                os.close(descriptor)
            inner.close()
            raise StorageError(f"cannot open the WAL in {inner.path}: {exc}") from exc
        except BaseException:
            if descriptor is not None:
                os.close(descriptor)
            inner.close()
            raise
        return storage

    def close(self) -> None:
        """Checkpoint (so the directory alone, read by `LmdbStorage`, is complete) and close.
        A failure to checkpoint loses nothing: the WAL still holds it for the next open."""
        if self._fd is None:
            return
        try:
            if self._broken is None:
                with contextlib.suppress(StorageError):
                    self._checkpoint()
        finally:
            os.close(self._fd)
            self._fd = None
            self._inner.close()

    def crash(self) -> None:
        """Testing: close without a checkpoint, as a killed process would leave the files."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._inner.close()

    def __enter__(self) -> WalStorage:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def path(self) -> str:
        return self._inner.path

    # ---- reads: the overlay over LMDB ------------------------------------------------------
    def initial_state(self) -> HardState:
        hard = self._overlay.hard_state
        return hard if hard is not None else self._inner.initial_state()

    def first_index(self) -> int:
        return self._inner.first_index()

    def last_index(self) -> int:
        entries = self._overlay.entries
        return entries[-1].index if entries else self._inner.last_index()

    def term(self, index: int) -> int:
        entries = self._overlay.entries
        if entries:
            snapshot_index = self._inner.first_index() - 1
            start, last = entries[0].index, entries[-1].index
            if index < snapshot_index:
                raise Compacted(f"index {index} is behind the snapshot at {snapshot_index}")
            if index > last:
                raise Unavailable(f"index {index} is beyond the last index {last}")
            if index >= start:
                return entries[index - start].term
        return self._inner.term(index)

    def entries(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries in [lo, hi): LMDB's below the overlay, the overlay's from its first index."""
        overlay = self._overlay.entries
        if not overlay:
            return self._inner.entries(lo, hi, bytes_max)
        snapshot_index = self._inner.first_index() - 1
        start, last = overlay[0].index, overlay[-1].index
        if lo <= snapshot_index:
            raise Compacted(f"index {lo} is compacted (snapshot at {snapshot_index})")
        if hi > last + 1 or lo > hi:
            raise Unavailable(f"range [{lo}, {hi}) is outside [1, {last + 1})")
        result: list[Entry] = []
        if lo == hi:
            return result
        if lo < start:
            result = self._inner.entries(lo, min(hi, start), bytes_max)
            if result[-1].index + 1 < min(hi, start) or hi <= start:
                return result  # the byte limit stopped inside LMDB, or the range ends there
        total = sum(entry_size(e) for e in result) if bytes_max is not None else 0
        for entry in overlay[max(lo, start) - start : hi - start]:
            total += entry_size(entry)
            if bytes_max is not None and result and total > bytes_max:
                break
            result.append(entry)
        return result

    def snapshot(self) -> Snapshot | None:
        return self._inner.snapshot()

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._inner.snapshot_meta()

    def snapshot_chunk(self, offset: int, size: int) -> tuple[bytes, bool]:
        return self._inner.snapshot_chunk(offset, size)

    # ---- writes ------------------------------------------------------------------------------
    def save(self, hard_state: HardState | None, entries: Sequence[Entry],
             snapshot: Snapshot | None) -> None:
        """Durable when it returns (the Ready contract). Ordinarily one WAL record and one
        fdatasync; with a snapshot, or when the overlay is full, synced LMDB commits instead."""
        self._check_usable("save")
        if snapshot is not None:
            self._checkpoint()
            self._inner.save(hard_state, entries, snapshot)
            self.saves += 1
            return
        if not entries and hard_state is None:
            self.saves += 1
            return
        if entries:
            check_append(entries, self.first_index() - 1, self.last_index())
        encoded = [encode_entry(entry) for entry in entries]
        after = self._overlay.with_save(hard_state, entries, [sealed_entry(e) for e in encoded])
        record = _payload(hard_state, encoded)
        limits = self._limits
        if (len(after.entries) > limits.entries or after.entry_bytes > limits.bytes
                or after.records > limits.records
                or self._tail + _RECORD.size + len(record) > self._capacity):
            self._checkpoint(after)  # this save rides in the checkpoint's LMDB commit
        else:
            self._append(record)
            self._overlay = after
        self.saves += 1

    def compact(self, snapshot: Snapshot) -> None:
        """Checkpoint, then let LMDB compact: compaction never happens inside a generation."""
        self._check_usable("compact")
        assert snapshot.meta.index <= self.last_index(), "cannot compact beyond the log"
        if snapshot.meta.index <= self.first_index() - 1:
            return
        self._checkpoint()
        self._inner.compact(snapshot)

    def checkpoint(self) -> None:
        """Write the overlay to LMDB and start a new, empty WAL generation."""
        self._check_usable("checkpoint")
        self._checkpoint()

    # ---- the WAL -----------------------------------------------------------------------------
    def _append(self, payload: bytes) -> None:
        assert self._fd is not None
        sequence = self._sequence + 1
        body = struct.pack(">QQ", self._generation, sequence) + payload
        length = _RECORD.size + len(payload)
        crc = zlib.crc32(body, zlib.crc32(length.to_bytes(4, "big")))
        record = length.to_bytes(4, "big") + crc.to_bytes(4, "big") + body
        try:
            written = os.pwrite(self._fd, record, self._tail)
            if written != len(record):
                raise OSError(f"short write: {written} of {len(record)} bytes")
            os.fdatasync(self._fd)
        except OSError as exc:
            # After a failed write or fdatasync the file's state is unknown (the kernel may have
            # dropped the dirty pages): refuse every later write rather than build on it.
            self._broken = f"a WAL write failed: {exc}"
            raise StorageError(f"save failed in {self._wal_path}: {exc}") from exc
        self._tail += len(record)
        self._sequence = sequence

    def _checkpoint(self, overlay: _Overlay | None = None) -> None:
        """One synced LMDB save of the overlay (the fold of this generation's records), then a
        new generation. Without a pending overlay there is nothing to write."""
        overlay = overlay or self._overlay
        if overlay.hard_state is None and not overlay.entries:
            return
        self._inner.save_sealed(overlay.hard_state, overlay.entries, overlay.values)
        self._overlay = _Overlay()
        self.checkpoints += 1
        self._start_generation()

    def _start_generation(self, force: bool = False) -> None:
        """Write the next generation's header in its slot and flush it; records start over."""
        if self._sequence == 0 and not force:
            return  # this generation holds no records yet: it can serve on
        assert self._fd is not None
        generation = self._generation + 1
        slot = _header(generation, self._ids)
        try:
            os.pwrite(self._fd, slot, (generation % 2) * _SLOT_BYTES)
            os.fdatasync(self._fd)
        except OSError as exc:
            self._broken = f"a WAL header write failed: {exc}"
            raise StorageError(f"cannot start a WAL generation in {self._wal_path}: {exc}") from exc
        self._generation, self._tail, self._sequence = generation, _RECORDS_AT, 0

    def _replay(self, records: list[_Record]) -> _Overlay:
        """Fold the records into one overlay and check that it fits on LMDB's log."""
        overlay = _Overlay()
        for hard_state, entries, values in records:
            if entries and overlay.entries and not (
                    entries[0].index <= overlay.entries[-1].index + 1):
                raise StorageError(f"corrupt WAL {self._wal_path}: a record starts at "
                                   f"{entries[0].index}, after the log's end "
                                   f"{overlay.entries[-1].index}")
            overlay = overlay.with_save(hard_state, entries, values)
        if overlay.entries:
            start = overlay.entries[0].index
            if not self._inner.first_index() <= start <= self._inner.last_index() + 1:
                raise StorageError(
                    f"the WAL in {self._inner.path} does not fit its LMDB log: it rewrites the "
                    f"log from {start}, LMDB holds [{self._inner.first_index()}, "
                    f"{self._inner.last_index()}] (was the directory written without the WAL?)")
        return overlay

    def _check_usable(self, what: str) -> None:
        if self._fd is None:
            raise StorageError(f"{what}: storage at {self._inner.path} is closed")
        if self._broken is not None:
            raise StorageError(f"{what}: storage at {self._inner.path} refuses writes: "
                               f"{self._broken}; restart the process to replay the WAL")


def open_storage(path: str | os.PathLike[str], *, cluster_id: str, node_id: str,
                 wal: bool) -> LmdbStorage | WalStorage:
    """The server's storage: `WalStorage` when `wal`, else `LmdbStorage`. Turning the WAL
    off replays a WAL left by an earlier run into LMDB first, then removes it: opening LMDB
    alone over it would forget saves that were acknowledged."""
    if wal:
        return WalStorage.open(path, cluster_id=cluster_id, node_id=node_id)
    wal_path = os.path.join(os.fspath(path), WAL_FILE)
    if os.path.exists(wal_path):
        WalStorage.open(path, cluster_id=cluster_id, node_id=node_id).close()
        try:
            os.unlink(wal_path)
            _fsync_directory(os.fspath(path))
        except OSError as exc:
            raise StorageError(f"cannot remove the WAL {wal_path}: {exc}") from exc
    return LmdbStorage.open(path, cluster_id=cluster_id, node_id=node_id)


# ---- the file's format -------------------------------------------------------------------------

def _ids(cluster_id: str, node_id: str) -> bytes:
    ids: bytes = msgpack.packb([cluster_id, node_id])
    if _HEADER.size + len(ids) + 4 > _SLOT_BYTES:
        raise ValueError(f"cluster id and node id are too long for the WAL header "
                         f"({len(ids)} bytes)")
    return ids


def _header(generation: int, ids: bytes) -> bytes:
    body = _HEADER.pack(_MAGIC, WAL_FORMAT, generation, len(ids)) + ids
    return body + zlib.crc32(body).to_bytes(4, "big")


def _create_wal(path: str, ids: bytes, size: int) -> None:
    """Write the whole file once (header of generation 1, then zeros) under a temporary name,
    fsync, rename, fsync the directory. Written, not fallocated: an unwritten extent turns
    written on the first write to it, a metadata change that fdatasync would have to journal."""
    temporary = path + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        first = (bytes(_SLOT_BYTES) + _header(1, ids)).ljust(_RECORDS_AT, b"\0")  # slot 1 % 2
        os.write(descriptor, first)
        left = size - len(first)
        while left > 0:
            left -= os.write(descriptor, _ZEROS[: min(left, len(_ZEROS))])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    _fsync_directory(os.path.dirname(path))


def _read_generation(descriptor: int, path: str, ids: bytes) -> int:
    """The newest valid header's generation, after checking it is ours. Two slots: a torn
    header write leaves the other slot, one generation older, whose records LMDB already has."""
    headers = []
    magics = set()
    for slot in range(2):
        raw = os.pread(descriptor, _SLOT_BYTES, slot * _SLOT_BYTES)
        magics.add(raw[:8])
        parsed = _parse_header(raw)
        if parsed is not None:
            headers.append(parsed)
    if not headers:
        if _MAGIC not in magics:
            raise StorageError(f"{path} is not a raftcron WAL (it starts with "
                               f"{sorted(magics)[0][:8]!r}); move it away if it is not needed")
        raise StorageError(f"{path} has no valid header (both checksums fail): the WAL is "
                           f"damaged and the saves it holds cannot be trusted")
    for version, generation, stored in headers:
        if version != WAL_FORMAT:
            raise StorageError(f"{path} has WAL format {version}; this build reads format "
                               f"{WAL_FORMAT} only")
        if stored != ids:
            cluster, node = _decode_ids(stored)
            mine = _decode_ids(ids)
            raise StorageError(f"{path} belongs to cluster {cluster!r} node {node!r}, not "
                               f"cluster {mine[0]!r} node {mine[1]!r}")
    return max(generation for _, generation, _ in headers)


def _parse_header(raw: bytes) -> tuple[int, int, bytes] | None:
    """(format, generation, ids) of a slot whose magic and checksum hold, else None."""
    magic, version, generation, length = _HEADER.unpack_from(raw)
    end = _HEADER.size + length
    if magic != _MAGIC or end + 4 > len(raw):
        return None
    if zlib.crc32(raw[:end]) != int.from_bytes(raw[end : end + 4], "big"):
        return None
    return version, generation, raw[_HEADER.size : end]


def _decode_ids(ids: bytes) -> tuple[str, str]:
    try:
        cluster, node = msgpack.unpackb(ids, raw=False)
        return str(cluster), str(node)
    except (ValueError, TypeError, msgpack.UnpackException):
        return "?", "?"


def _payload(hard_state: HardState | None, encoded: list[bytes]) -> bytes:
    """A record's payload: [hard state or nil, [each entry's `encode_entry` bytes]]."""
    return pack([encode_hard_state(hard_state) if hard_state is not None else None, encoded])


def _read_records(descriptor: int, path: str, generation: int,
                  capacity: int) -> list[_Record]:
    """The records of `generation`, in order, up to the first that is not whole (a torn
    tail: its save never returned). A bad record followed by a good one of the next sequence
    is not a torn tail (that one was written only after the bad one was flushed): rot."""
    records: list[_Record] = []
    offset, sequence = _RECORDS_AT, 1
    while True:
        record = _record_at(descriptor, offset, generation, sequence, capacity)
        if record is None:
            break
        payload, length = record
        if payload is None:
            following = _record_at(descriptor, offset + length, generation, sequence + 1, capacity)
            if following is not None and following[0] is not None:
                raise StorageError(f"corrupt WAL {path}: record {sequence} at byte {offset} "
                                   f"fails its checksum but record {sequence + 1} after it is "
                                   f"whole; saves after it were acknowledged, refusing to "
                                   f"start without them")
            break
        records.append(_decode_payload(payload, path, sequence))
        offset, sequence = offset + length, sequence + 1
    return records


def _record_at(descriptor: int, offset: int, generation: int, sequence: int,
               capacity: int) -> tuple[bytes | None, int] | None:
    """(payload, length) of the record at `offset`; (None, length) when its length, generation
    and sequence are right but the checksum fails; None when no record of ours starts there."""
    if offset + _RECORD.size > capacity:
        return None
    head = os.pread(descriptor, _RECORD.size, offset)
    length, crc, found_generation, found_sequence = _RECORD.unpack(head)
    if (length < _RECORD.size or offset + length > capacity or found_generation != generation
            or found_sequence != sequence):
        return None
    body = os.pread(descriptor, length - 8, offset + 8)
    if len(body) != length - 8 or zlib.crc32(body, zlib.crc32(head[:4])) != crc:
        return None, length
    return body[16:], length


def _decode_payload(payload: bytes, path: str, sequence: int) -> _Record:
    """A record whose checksum held but whose payload does not decode is a bug or rot: refuse."""
    try:
        hard, raw_entries = msgpack.unpackb(payload, raw=False)
        hard_state = decode_hard_state(hard) if hard is not None else None
        entries = [decode_entry(raw, _ENTRY_BYTES_MAX) for raw in raw_entries]
    except (ValueError, TypeError, ProtocolError, msgpack.UnpackException) as exc:
        raise StorageError(f"corrupt WAL {path}: record {sequence} does not decode: {exc}") from exc
    return hard_state, entries, [sealed_entry(raw) for raw in raw_entries]


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
