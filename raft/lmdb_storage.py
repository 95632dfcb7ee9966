"""`LmdbStorage`: the `Storage` contract on one LMDB environment, for real nodes.

Layout (one environment, four named databases; `docs/storage.md` has the full picture):
  meta  b"format" -> b"1", b"cluster_id" -> utf-8, b"node_id" -> utf-8
  hard  b"state"  -> sealed [term, vote, commit]
  log   8-byte big-endian index -> sealed [term, index, kind, data]  (so keys sort by index)
  snap  b"meta" -> sealed [index, term, voters, learners], b"file" -> sealed [name, size, crc32]
"Sealed" means a 4-byte big-endian CRC32 of the payload, then the payload (raft.codec's msgpack).
The snapshot bytes live in their own file next to data.mdb (`snap-<index>-<term>-<crc>.snap`,
like etcd's .snap files), written with fsync + rename + directory fsync *before* the LMDB
transaction that names it commits; files LMDB does not name are leftovers of a crash and are
removed on open. Why a file: read() leaves the bytes in the page cache, not in the process's
RSS as LMDB's map would (a 200 MB snapshot read once kept 200 MB resident), and nothing keeps
the bytes after a read: the core asks for chunks (`snapshot_chunk`), the driver for the whole
snapshot once at start-up. Format 1 kept the bytes in LMDB (`b"data"`); open migrates it.

Why it is safe: every `save()` and `compact()` is one LMDB write transaction, and with
`sync=True` (the default) LMDB fsyncs before the commit returns. So after a crash the
directory holds exactly the state after some completed `save()`, and never loses one that
returned. A checksum on every value catches a flipped bit or a misdirected write on read
(TigerStyle: checked before the put, verified after the get).

Why it is fast enough: first/last index and the terms at both ends live in memory (`_Bounds`),
so `term()` at the edges, `first_index()` and `last_index()` never touch the disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import lmdb
import msgpack

from raft.codec import (
    decode_entry,
    decode_hard_state,
    decode_snapshot_meta,
    encode_entry,
    encode_hard_state,
    encode_snapshot_meta,
)
from raft.errors import Compacted, ProtocolError, StorageError, Unavailable
from raft.messages import Entry, HardState, Snapshot, SnapshotMeta
from raft.storage import check_append, entry_size

__all__ = ["FORMAT_VERSION", "MAP_SIZE_DEFAULT", "LmdbStorage", "sealed_entry"]

FORMAT_VERSION: Final = 2
_FORMATS_READ: Final = (b"1", b"2")  # 1: snapshot bytes inside LMDB, migrated on open
MAP_SIZE_DEFAULT: Final = 1 << 30  # LMDB maps the file sparsely: this is a ceiling, not a cost
_DATABASES: Final = (b"meta", b"hard", b"log", b"snap")
_KEY_FORMAT, _KEY_CLUSTER, _KEY_NODE = b"format", b"cluster_id", b"node_id"
_KEY_HARD, _KEY_SNAP_META, _KEY_SNAP_DATA = b"state", b"meta", b"data"
_KEY_SNAP_FILE = b"file"
_SNAP_PREFIX, _SNAP_SUFFIX, _TMP_PREFIX = "snap-", ".snap", ".snap-new-"
_READ_BLOCK: Final = 1 << 20  # streaming CRC checks read this much at a time
_CRC_BYTES: Final = 4
_Raw = bytes | memoryview | None  # what lmdb hands back (always bytes here: buffers=False)


def _key(index: int) -> bytes:
    return index.to_bytes(8, "big")


def _seal(payload: bytes) -> bytes:
    return zlib.crc32(payload).to_bytes(_CRC_BYTES, "big") + payload


def sealed_entry(encoded: bytes) -> bytes:
    """The value the log database stores for an entry, from `codec.encode_entry`'s bytes: lets
    a caller that encoded the entry already (WalStorage, for its record) hand both to
    `save_sealed` instead of having it encoded twice."""
    return _seal(encoded)


@dataclass(frozen=True, slots=True)
class _SnapFile:
    """Where the snapshot bytes are: a file name in the storage directory, its size and CRC32."""

    name: str
    size: int
    crc: int

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb([self.name, self.size, self.crc])
        return packed


@dataclass(frozen=True, slots=True)
class _Bounds:
    """What the log looks like, cached: the snapshot's index/term and the last entry's.
    Invariant: snapshot_index <= last_index; the log holds exactly (snapshot_index, last_index]."""

    snapshot_index: int
    snapshot_term: int
    last_index: int
    last_term: int

    def __post_init__(self) -> None:
        assert self.snapshot_index <= self.last_index, self
        assert self.snapshot_term <= self.last_term, self


class LmdbStorage:
    """Durable `Storage`. Build it with `LmdbStorage.open(...)`; one instance per directory
    per process (LMDB forbids opening one environment twice in a process)."""

    def __init__(self, env: lmdb.Environment, path: str, map_size: int, sync: bool = True) -> None:
        """Private: use `open()`, which checks the directory belongs to this node."""
        self._env: lmdb.Environment | None = env
        self._path = path
        self._map_size = map_size
        self._sync = sync
        self._meta_db, self._hard_db, self._log_db, self._snap_db = (
            env.open_db(name, create=False) for name in _DATABASES)
        self._hard_state = HardState()
        self._bounds = _Bounds(0, 0, 0, 0)
        self._snapshot_meta: SnapshotMeta | None = None
        self._snap_file: _SnapFile | None = None  # set with _snapshot_meta (format 2)
        # CRC32 of each prefix [0, end) of the snapshot file that chunk reads reached, so a
        # transfer checks the whole file before its last chunk leaves (reset per snapshot).
        self._prefix_crcs: dict[int, int] = {0: 0}
        self.saves = 0

    # ---- lifecycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, cluster_id: str, node_id: str,
             map_size: int = MAP_SIZE_DEFAULT, sync: bool = True,
             beside_wal: bool = False) -> LmdbStorage:
        """Open the storage of `node_id` in `cluster_id` at `path`, creating it if the path does
        not exist (or is an empty directory). `sync=False` skips fsync: a crash may then lose
        or tear saves the caller believed durable, so use it only for benchmarks and tests.

        A directory with a write-ahead log (`wal`, raft/wal_storage.py) is refused unless
        `beside_wal` (the WAL's owner, or a test that means to look under it): LMDB alone may
        lack acknowledged saves that are only in the WAL, and a write to it could be undone
        by the next replay."""
        if not cluster_id or not node_id:
            raise ValueError("cluster_id and node_id must be non-empty")
        path = os.fspath(path)
        if not beside_wal and os.path.exists(os.path.join(path, "wal")):
            raise StorageError(f"{path} holds a write-ahead log ({os.path.join(path, 'wal')}): open "
                               f"it with raft.wal_storage.open_storage (a server with --no-wal folds "
                               f"the log into LMDB and removes it)")
        if not os.path.exists(os.path.join(path, "data.mdb")):
            _create(path, cluster_id, node_id, map_size)
        env = _open_environment(path, map_size, sync)
        try:
            _check_databases(env, path)
            storage = cls(env, path, map_size, sync)
            storage._check_meta(cluster_id, node_id)
            storage._load()
            storage._migrate_format_1()
            storage._remove_orphans()
        except lmdb.Error as exc:
            env.close()
            raise StorageError(f"cannot read raftcron storage at {path}: {exc}") from exc
        except BaseException:
            env.close()
            raise
        return storage

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> LmdbStorage:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def path(self) -> str:
        return self._path

    # ---- reads (the etcd-raft Storage contract) --------------------------------------------
    def initial_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._bounds.snapshot_index + 1

    def last_index(self) -> int:
        return self._bounds.last_index

    def term(self, index: int) -> int:
        bounds = self._bounds
        if index < bounds.snapshot_index:
            raise Compacted(f"index {index} is behind the snapshot at {bounds.snapshot_index}")
        if index > bounds.last_index:
            raise Unavailable(f"index {index} is beyond the last index {bounds.last_index}")
        if index == bounds.last_index:  # also covers an empty log, where last == snapshot
            return bounds.last_term
        if index == bounds.snapshot_index:
            return bounds.snapshot_term
        with self._transaction("read term", write=False) as txn:
            return self._read_entry(txn, index).term

    def entries(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries in [lo, hi); with `bytes_max`, at least one and as many as fit."""
        bounds = self._bounds
        if lo <= bounds.snapshot_index:
            raise Compacted(f"index {lo} is compacted (snapshot at {bounds.snapshot_index})")
        if hi > bounds.last_index + 1 or lo > hi:
            raise Unavailable(f"range [{lo}, {hi}) is outside [1, {bounds.last_index + 1})")
        result: list[Entry] = []
        if lo == hi:
            return result
        total = 0
        with self._transaction("read entries", write=False) as txn:
            cursor = txn.cursor(self._log_db)
            cursor.set_key(_key(lo))
            for index in range(lo, hi):  # bounded by the range, whatever the disk says
                entry = self._unseal_entry(cursor.key(), cursor.value(), index)
                total += entry_size(entry)
                if bytes_max is not None and result and total > bytes_max:
                    break
                result.append(entry)
                cursor.next()
        assert result, "a non-empty range returns at least one entry"
        assert result[0].index == lo
        return result

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot_meta

    def snapshot(self) -> Snapshot | None:
        """The whole snapshot, read from its file and checked (size, CRC) on every call: it is
        never cached, so call it once (the driver, at start-up) and let it go."""
        if self._snapshot_meta is None:
            return None
        file = self._snap_file
        assert file is not None, "format 2 storage has a snapshot file for its snapshot meta"
        try:
            with open(os.path.join(self._path, file.name), "rb") as handle:
                data = handle.read(file.size + 1)
        except OSError as exc:
            raise StorageError(f"cannot read snapshot file {file.name} in {self._path}: "
                               f"{exc}") from exc
        if len(data) != file.size or zlib.crc32(data) != file.crc:
            raise StorageError(f"corrupt snapshot data in {self._path}: {file.name} has "
                               f"{len(data)} bytes, expected {file.size}, or a checksum mismatch")
        return Snapshot(meta=self._snapshot_meta, data=data)

    def snapshot_chunk(self, offset: int, size: int) -> tuple[bytes, bool]:
        """`snapshot().data[offset:offset + size]` and whether it reaches the end, read from
        the file alone. The CRC is checked across chunks: before the last chunk is returned the
        whole file must match, so a follower never completes a corrupt snapshot."""
        file = self._snap_file
        assert self._snapshot_meta is not None and file is not None, "no snapshot to send"
        assert offset >= 0 and size > 0
        offset = min(offset, file.size)
        path = os.path.join(self._path, file.name)
        try:
            with open(path, "rb") as handle:
                crc = self._prefix_crc(handle, offset)
                handle.seek(offset)
                chunk = handle.read(min(size, file.size - offset))
        except OSError as exc:
            raise StorageError(f"cannot read snapshot file {file.name} in {self._path}: "
                               f"{exc}") from exc
        if len(chunk) != min(size, file.size - offset):
            raise StorageError(f"corrupt snapshot data in {self._path}: {file.name} is "
                               f"truncated at {offset + len(chunk)} of {file.size} bytes")
        end = offset + len(chunk)
        crc = zlib.crc32(chunk, crc)
        self._prefix_crcs[end] = crc
        done = end >= file.size
        if done and crc != file.crc:
            raise StorageError(f"corrupt snapshot data in {self._path}: {file.name} checksum "
                               f"mismatch")
        return chunk, done

    def _prefix_crc(self, handle: io.BufferedReader, offset: int) -> int:
        """CRC32 of the file's first `offset` bytes, from the nearest prefix already known."""
        known = self._prefix_crcs.get(offset)
        if known is not None:
            return known
        start = max(end for end in self._prefix_crcs if end <= offset)
        crc = self._prefix_crcs[start]
        handle.seek(start)
        while start < offset:
            block = handle.read(min(_READ_BLOCK, offset - start))
            if not block:
                raise StorageError(f"corrupt snapshot data in {self._path}: snapshot file is "
                                   f"truncated at {start} bytes")
            crc, start = zlib.crc32(block, crc), start + len(block)
        self._prefix_crcs[offset] = crc
        return crc

    # ---- writes (the driver's side of the Ready contract) -----------------------------------
    def save(self, hard_state: HardState | None, entries: Sequence[Entry],
             snapshot: Snapshot | None) -> None:
        """One synced transaction, in MemoryStorage's order: the snapshot first (keeping a
        matching suffix, Fig. 13 rule 6), then the entries (replacing any conflicting suffix),
        then the hard state. The caches change only after the commit succeeded."""
        self._save(hard_state, entries, snapshot, None)

    def save_sealed(self, hard_state: HardState | None, entries: Sequence[Entry],
                    values: Sequence[bytes]) -> None:
        """`save` without a snapshot, given each entry's stored value (`sealed_entry` of its
        `encode_entry` bytes, in order). Why: WalStorage's checkpoint writes 1,024 entries
        it encoded already, once per save for its records; encoding them again was most of
        the checkpoint's Python time, and the checkpoint pauses a save."""
        assert len(values) == len(entries), f"{len(values)} values for {len(entries)} entries"
        self._save(hard_state, entries, None, values)

    def _save(self, hard_state: HardState | None, entries: Sequence[Entry],
              snapshot: Snapshot | None, values: Sequence[bytes] | None) -> None:
        bounds = self._bounds
        file = self._write_snapshot_file(snapshot) if snapshot is not None else None
        with self._discarding_on_error(file), self._transaction("save", write=True) as txn:
            if snapshot is not None and file is not None:
                bounds = self._install(txn, bounds, snapshot, file)
            if entries:
                bounds = self._append(txn, bounds, entries, values)
            if hard_state is not None:
                txn.put(_KEY_HARD, _seal(encode_hard_state(hard_state)), db=self._hard_db)
        self._bounds = bounds
        if snapshot is not None and file is not None:
            self._replaced_snapshot(snapshot.meta, file)
        if hard_state is not None:
            self._hard_state = hard_state
        self.saves += 1

    def compact(self, snapshot: Snapshot) -> None:
        """Keep `snapshot` and drop the log up to its index (the state machine applied it)."""
        bounds = self._bounds
        index = snapshot.meta.index
        assert index <= bounds.last_index, "cannot compact beyond the log"
        if index <= bounds.snapshot_index:
            return
        assert snapshot.meta.term == self.term(index), "snapshot term differs from the log's"
        file = self._write_snapshot_file(snapshot)
        with self._discarding_on_error(file), self._transaction("compact", write=True) as txn:
            self._delete_prefix(txn, bounds, index)
            self._put_snapshot(txn, snapshot.meta, file)
        last_term = bounds.last_term if bounds.last_index > index else snapshot.meta.term
        self._bounds = _Bounds(index, snapshot.meta.term, bounds.last_index, last_term)
        self._replaced_snapshot(snapshot.meta, file)

    # ---- the snapshot file -------------------------------------------------------------------
    def _write_snapshot_file(self, snapshot: Snapshot) -> _SnapFile:
        """Write the bytes to a new file, durably, before any LMDB transaction names it: a
        temporary file, fsync, rename, fsync of the directory (skipped with sync=False). A crash
        in between leaves a file nothing names, which the next open removes."""
        if self._env is None:
            raise StorageError(f"save: storage at {self._path} is closed")
        data, meta = snapshot.data, snapshot.meta
        crc = zlib.crc32(data)
        file = _SnapFile(f"{_SNAP_PREFIX}{meta.index:016x}-{meta.term:016x}-{crc:08x}{_SNAP_SUFFIX}",
                         len(data), crc)
        temporary = ""
        try:
            descriptor, temporary = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self._path)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                if self._sync:
                    os.fsync(handle.fileno())
            os.replace(temporary, os.path.join(self._path, file.name))
            temporary = ""
            if self._sync:
                _fsync_directory(self._path)
        except OSError as exc:
            raise StorageError(f"cannot write snapshot file {file.name} in {self._path}: "
                               f"{exc}") from exc
        finally:
            if temporary:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        return file

    @contextlib.contextmanager
    def _discarding_on_error(self, file: _SnapFile | None) -> Iterator[None]:
        """Remove a just-written snapshot file when its transaction fails (unless the current
        snapshot is that very file): the disk stays as it was, minus nothing."""
        try:
            yield
        except BaseException:
            if file is not None and (self._snap_file is None or file.name != self._snap_file.name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._path, file.name))
            raise

    def _replaced_snapshot(self, meta: SnapshotMeta, file: _SnapFile) -> None:
        """After the commit: point the caches at the new snapshot and remove the old file."""
        old = self._snap_file
        self._snapshot_meta, self._snap_file, self._prefix_crcs = meta, file, {0: 0}
        if old is not None and old.name != file.name:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._path, old.name))

    # ---- write helpers (inside one transaction; they return the new bounds) -----------------
    def _install(self, txn: lmdb.Transaction, bounds: _Bounds, snapshot: Snapshot,
                 file: _SnapFile) -> _Bounds:
        meta = snapshot.meta
        keep = (bounds.snapshot_index < meta.index <= bounds.last_index
                and self._term_in(txn, bounds, meta.index) == meta.term)
        self._put_snapshot(txn, meta, file)
        if keep:  # Fig. 13 rule 6: "retain log entries following it"
            self._delete_prefix(txn, bounds, meta.index)
            return _Bounds(meta.index, meta.term, bounds.last_index,
                           bounds.last_term if bounds.last_index > meta.index else meta.term)
        txn.drop(self._log_db, delete=False)  # rule 7: discard the entire log
        return _Bounds(meta.index, meta.term, meta.index, meta.term)

    def _append(self, txn: lmdb.Transaction, bounds: _Bounds, entries: Sequence[Entry],
                values: Sequence[bytes] | None = None) -> _Bounds:
        check_append(entries, bounds.snapshot_index, bounds.last_index)
        first = entries[0].index
        cursor = txn.cursor(self._log_db)
        deleted = 0
        if first <= bounds.last_index and cursor.set_range(_key(first)):
            while cursor.delete():  # the new entries replace any conflicting suffix
                deleted += 1
        if deleted != bounds.last_index - first + 1 and first <= bounds.last_index:
            raise StorageError(f"log in {self._path} lost entries: deleted {deleted} from "
                               f"{first} to {bounds.last_index}")
        if values is None:
            items = [(_key(entry.index), _seal(encode_entry(entry))) for entry in entries]
        else:
            items = [(_key(entry.index), value) for entry, value in zip(entries, values)]
        _, added = cursor.putmulti(items, append=True)  # keys ascend past the old last key
        assert added == len(items), f"only {added} of {len(items)} entries were written"
        return _Bounds(bounds.snapshot_index, bounds.snapshot_term, entries[-1].index,
                       entries[-1].term)

    def _delete_prefix(self, txn: lmdb.Transaction, bounds: _Bounds, index: int) -> None:
        """Delete the log keys in (snapshot_index, index]; they are contiguous, so count them.
        When fewer entries stay than go (a compaction: only the unapplied tail stays), the log
        database is emptied and the tail put back instead. Why: LMDB has no range delete, and
        deleting 10,000 keys one by one took 3 ms of a compaction's 3.5 ms, a pause of the
        server's event loop; emptying a database frees its pages without visiting each key."""
        expected = min(index, bounds.last_index) - bounds.snapshot_index
        kept = max(0, bounds.last_index - index)
        if kept < expected:
            self._keep_only_tail(txn, bounds, index, kept)
            return
        cursor = txn.cursor(self._log_db)
        cursor.first()
        deleted = sum(1 for _ in range(expected) if cursor.delete())
        first_left = cursor.key()
        first_ok = not first_left or int.from_bytes(first_left, "big") == index + 1
        if deleted != expected or not first_ok:
            raise StorageError(f"log in {self._path} is not contiguous: compacting to {index} "
                               f"deleted {deleted} of {expected} entries")

    def _keep_only_tail(self, txn: lmdb.Transaction, bounds: _Bounds, index: int, kept: int) -> None:
        """`_delete_prefix` for a short tail: the `kept` entries after `index` are read, the
        log database emptied, and they are put back, all in the caller's transaction."""
        held = txn.stat(self._log_db)["entries"]
        tail: list[tuple[bytes | memoryview, bytes | memoryview]] = []
        if kept:
            cursor = txn.cursor(self._log_db)
            if cursor.set_key(_key(index + 1)):
                tail = list(cursor.iternext(keys=True, values=True))  # bytes: buffers=False
        if held != bounds.last_index - bounds.snapshot_index or len(tail) != kept:
            raise StorageError(f"log in {self._path} is not contiguous: it holds {held} entries "
                               f"for ({bounds.snapshot_index}, {bounds.last_index}], and {len(tail)} "
                               f"of the {kept} after {index}")
        txn.drop(self._log_db, delete=False)
        if tail:
            _, added = txn.cursor(self._log_db).putmulti(tail, append=True)
            assert added == kept, f"only {added} of {kept} entries were put back"

    def _put_snapshot(self, txn: lmdb.Transaction, meta: SnapshotMeta, file: _SnapFile) -> None:
        txn.put(_KEY_SNAP_META, _seal(encode_snapshot_meta(meta)), db=self._snap_db)
        txn.put(_KEY_SNAP_FILE, _seal(file.encode()), db=self._snap_db)
        txn.delete(_KEY_SNAP_DATA, db=self._snap_db)  # format 1's bytes, if still there
        txn.put(_KEY_FORMAT, str(FORMAT_VERSION).encode(), db=self._meta_db)

    # ---- read helpers ----------------------------------------------------------------------
    def _term_in(self, txn: lmdb.Transaction, bounds: _Bounds, index: int) -> int:
        assert bounds.snapshot_index <= index <= bounds.last_index
        if index == bounds.last_index:
            return bounds.last_term
        if index == bounds.snapshot_index:
            return bounds.snapshot_term
        return self._read_entry(txn, index).term

    def _read_entry(self, txn: lmdb.Transaction, index: int) -> Entry:
        key = _key(index)
        return self._unseal_entry(key, txn.get(key, db=self._log_db), index)

    def _unseal_entry(self, key: _Raw, value: _Raw, index: int) -> Entry:
        """The paired check of `_append`'s: the checksum holds and the entry is the one its key
        names. Anything else is a damaged disk, never a bug to assert on."""
        if key != _key(index) or value is None:
            raise StorageError(f"missing entry at index {index} in {self._path}")
        payload = self._unseal(value, f"entry at index {index}")
        try:
            entry = decode_entry(payload)
        except ProtocolError as exc:
            raise StorageError(f"corrupt entry at index {index} in {self._path}: {exc}") from exc
        if entry.index != index:
            raise StorageError(f"corrupt entry at index {index} in {self._path}: "
                               f"it holds index {entry.index}")
        return entry

    def _unseal(self, value: _Raw, what: str) -> bytes:
        if value is None or len(value) < _CRC_BYTES:
            raise StorageError(f"corrupt {what} in {self._path}: missing or truncated")
        payload = bytes(value[_CRC_BYTES:])
        if zlib.crc32(payload) != int.from_bytes(value[:_CRC_BYTES], "big"):
            raise StorageError(f"corrupt {what} in {self._path}: checksum mismatch")
        return payload

    def _read_snapshot_meta(self, txn: lmdb.Transaction) -> SnapshotMeta:
        payload = self._unseal(txn.get(_KEY_SNAP_META, db=self._snap_db), "snapshot meta")
        try:
            return decode_snapshot_meta(payload)
        except ProtocolError as exc:
            raise StorageError(f"corrupt snapshot meta in {self._path}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, what: str, *, write: bool) -> Iterator[lmdb.Transaction]:
        """An LMDB transaction whose errors name the path; an exception inside aborts it, so a
        failed save leaves both the disk and the caches as they were."""
        if self._env is None:
            raise StorageError(f"{what}: storage at {self._path} is closed")
        try:
            with self._env.begin(write=write) as txn:
                yield txn
        except lmdb.MapFullError as exc:
            raise StorageError(f"{what}: the LMDB map at {self._path} is full "
                               f"(map_size={self._map_size} bytes); reopen with a larger "
                               f"map_size or compact the log") from exc
        except lmdb.Error as exc:
            raise StorageError(f"{what} failed in {self._path}: {exc}") from exc

    # ---- start-up ----------------------------------------------------------------------------
    def _check_meta(self, cluster_id: str, node_id: str) -> None:
        with self._transaction("read meta", write=False) as txn:
            found = {key: txn.get(key, db=self._meta_db)
                     for key in (_KEY_FORMAT, _KEY_CLUSTER, _KEY_NODE)}
        if any(value is None for value in found.values()):
            raise StorageError(f"{self._path} holds an LMDB environment without raftcron meta; "
                               f"refusing to start from empty state (a node that forgets its "
                               f"vote can break Raft safety). Remove it to start afresh.")
        if found[_KEY_FORMAT] not in _FORMATS_READ:
            raise StorageError(f"{self._path} has storage format {found[_KEY_FORMAT]!r}; this "
                               f"build reads formats 1 and {FORMAT_VERSION} only")
        stored_cluster = bytes(found[_KEY_CLUSTER] or b"").decode(errors="replace")
        stored_node = bytes(found[_KEY_NODE] or b"").decode(errors="replace")
        if (stored_cluster, stored_node) != (cluster_id, node_id):
            raise StorageError(f"{self._path} belongs to cluster {stored_cluster!r} node "
                               f"{stored_node!r}, not cluster {cluster_id!r} node {node_id!r}")

    def _load(self) -> None:
        """Fill the caches from disk, checking that the log is exactly (snapshot, last]."""
        with self._transaction("load", write=False) as txn:
            hard = txn.get(_KEY_HARD, db=self._hard_db)
            if hard is not None:
                self._hard_state = self._decode_hard(self._unseal(hard, "hard state"))
            snap_index = snap_term = 0
            if txn.get(_KEY_SNAP_META, db=self._snap_db) is not None:
                self._snapshot_meta = self._read_snapshot_meta(txn)
                snap_index, snap_term = self._snapshot_meta.index, self._snapshot_meta.term
                self._snap_file = self._read_snap_file(txn)
            count = txn.stat(self._log_db)["entries"]
            last_index, last_term = snap_index, snap_term
            if count:
                cursor = txn.cursor(self._log_db)
                cursor.first()
                first = int.from_bytes(cursor.key(), "big")
                cursor.last()
                last_index = int.from_bytes(cursor.key(), "big")
                if first != snap_index + 1 or last_index - first + 1 != count:
                    raise StorageError(f"log in {self._path} is not contiguous after the "
                                       f"snapshot at {snap_index}: {count} entries in "
                                       f"[{first}, {last_index}]")
                last_term = self._unseal_entry(cursor.key(), cursor.value(), last_index).term
        self._bounds = _Bounds(snap_index, snap_term, last_index, last_term)

    def _read_snap_file(self, txn: lmdb.Transaction) -> _SnapFile | None:
        """The snapshot file record, or None in a format 1 environment (bytes in LMDB)."""
        value = txn.get(_KEY_SNAP_FILE, db=self._snap_db)
        if value is None:
            if txn.get(_KEY_SNAP_DATA, db=self._snap_db) is None:
                raise StorageError(f"corrupt snapshot data in {self._path}: missing")
            return None
        payload = self._unseal(value, "snapshot file record")
        try:
            name, size, crc = msgpack.unpackb(payload, raw=False)
            file = _SnapFile(name, size, crc)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageError(f"corrupt snapshot file record in {self._path}: {exc}") from exc
        if not (isinstance(name, str) and name.startswith(_SNAP_PREFIX) and "/" not in name
                and isinstance(size, int) and isinstance(crc, int)):
            raise StorageError(f"corrupt snapshot file record in {self._path}: {file}")
        return file

    def _migrate_format_1(self) -> None:
        """A format 1 snapshot (bytes inside LMDB) moves to its file, in the same two steps as
        any new snapshot: file first, then one transaction naming it and dropping the bytes."""
        if self._snapshot_meta is None or self._snap_file is not None:
            return
        with self._transaction("read snapshot", write=False) as txn:
            data = self._unseal(txn.get(_KEY_SNAP_DATA, db=self._snap_db), "snapshot data")
        snapshot = Snapshot(meta=self._snapshot_meta, data=data)
        file = self._write_snapshot_file(snapshot)
        with self._discarding_on_error(file), self._transaction("migrate", write=True) as txn:
            self._put_snapshot(txn, snapshot.meta, file)
        self._snap_file = file

    def _remove_orphans(self) -> None:
        """Snapshot files no committed transaction names (a crash between the rename and the
        commit, or before the old file's removal) and unfinished temporary files."""
        keep = self._snap_file.name if self._snap_file is not None else None
        if keep is not None and not os.path.isfile(os.path.join(self._path, keep)):
            raise StorageError(f"corrupt snapshot data in {self._path}: its file {keep} is "
                               f"missing")
        for name in os.listdir(self._path):
            orphan = (name.startswith(_TMP_PREFIX)
                      or (name.startswith(_SNAP_PREFIX) and name.endswith(_SNAP_SUFFIX)))
            if orphan and name != keep:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._path, name))

    def _decode_hard(self, payload: bytes) -> HardState:
        try:
            return decode_hard_state(payload)
        except ProtocolError as exc:
            raise StorageError(f"corrupt hard state in {self._path}: {exc}") from exc


# ---- opening and creating the environment ------------------------------------------------------

def _open_environment(path: str, map_size: int, sync: bool) -> lmdb.Environment:
    try:
        return lmdb.open(path, map_size=map_size, subdir=True, create=False, max_dbs=len(_DATABASES),
                         sync=sync, metasync=True, readahead=False)
    except (lmdb.Error, OSError) as exc:
        raise StorageError(f"cannot open raftcron storage at {path}: {exc}") from exc


def _check_databases(env: lmdb.Environment, path: str) -> None:
    """Refuse an LMDB environment that something else wrote (its main database names ours)."""
    try:
        with env.begin() as txn:
            names = set(txn.cursor().iternext(values=False))
    except lmdb.Error as exc:
        raise StorageError(f"cannot read raftcron storage at {path}: {exc}") from exc
    if names != set(_DATABASES):
        raise StorageError(f"{path} is not a raftcron storage directory: its LMDB databases are "
                           f"{sorted(names)}, expected {sorted(_DATABASES)}")


def _create(path: str, cluster_id: str, node_id: str, map_size: int) -> None:
    """Build a new storage in a temporary sibling directory and rename it into place, so a
    crash during creation leaves either nothing or a complete, meta-bearing directory."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StorageError(f"{path} is not a raftcron storage directory: it is a file")
    if os.path.isdir(path) and os.listdir(path):
        raise StorageError(f"{path} is not a raftcron storage directory: it has no data.mdb "
                           f"but is not empty ({sorted(os.listdir(path))[:5]})")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".raftcron-new-", dir=parent)
    except OSError as exc:
        raise StorageError(f"cannot create raftcron storage at {path}: {exc}") from exc
    try:
        _write_meta(staging, cluster_id, node_id, map_size)
        os.replace(staging, path)  # atomic; replaces an empty directory too
        _fsync_directory(parent)
    except (lmdb.Error, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(f"cannot create raftcron storage at {path}: {exc}") from exc


def _write_meta(staging: str, cluster_id: str, node_id: str, map_size: int) -> None:
    """Create the four databases and the meta in one synced transaction."""
    env = lmdb.open(staging, map_size=map_size, subdir=True, max_dbs=len(_DATABASES))
    try:
        with env.begin(write=True) as txn:
            databases = [env.open_db(name, txn=txn) for name in _DATABASES]
            txn.put(_KEY_FORMAT, str(FORMAT_VERSION).encode(), db=databases[0])
            txn.put(_KEY_CLUSTER, cluster_id.encode(), db=databases[0])
            txn.put(_KEY_NODE, node_id.encode(), db=databases[0])
    finally:
        env.close()


def _fsync_directory(path: str) -> None:
    """Make the rename durable: a directory entry is data of its parent directory."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
