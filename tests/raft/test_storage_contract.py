"""The `Storage` contract (docs/storage.md), checked on MemoryStorage and LmdbStorage alike,
then what only a disk can do: survive a reopen, refuse a stranger's directory, detect rot.
The last test runs random save/compact/reopen programs on both and asserts they agree
(Hypothesis's DatabaseComparison pattern)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raft.errors import Compacted, StorageError, Unavailable
from raft.lmdb_storage import LmdbStorage
from raft.messages import Configuration, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from raft.storage import MemoryStorage, Storage, entry_size

CONFIG = Configuration(voters=frozenset({"n1", "n2", "n3"}))


def entries(first: int, last: int, term: int, size: int = 10) -> list[Entry]:
    return [Entry(term=term, index=i, data=bytes([i % 256]) * size) for i in range(first, last + 1)]


def snapshot(index: int, term: int, data: bytes = b"state") -> Snapshot:
    return Snapshot(meta=SnapshotMeta(index=index, term=term, config=CONFIG), data=data)


def open_lmdb(path: Path, **options: object) -> LmdbStorage:
    return LmdbStorage.open(path, cluster_id="c1", node_id="n1", **options)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "lmdb"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    with open_lmdb(tmp_path / "node") as disk:
        yield disk


def everything(storage: Storage) -> tuple[object, ...]:
    """All a reader can observe, for equality checks."""
    first, last = storage.first_index(), storage.last_index()
    meta = storage.snapshot_meta()
    chunks = [storage.snapshot_chunk(offset, 3) for offset in range(0, 12, 3)] if meta else []
    return (storage.initial_state(), first, last, storage.snapshot(), meta, chunks,
            [storage.term(i) for i in range(first - 1, last + 1)], storage.entries(first, last + 1))


# ---- the contract, on both implementations ------------------------------------------------------

def test_empty_state(storage: Storage) -> None:
    assert storage.initial_state() == HardState()
    assert (storage.first_index(), storage.last_index()) == (1, 0)
    assert storage.term(0) == 0
    assert storage.snapshot() is None
    assert storage.entries(1, 1) == []
    with pytest.raises(Unavailable):
        storage.entries(1, 2)
    with pytest.raises(Unavailable):
        storage.term(1)


def test_saved_entries_read_back(storage: Storage) -> None:
    saved = entries(1, 5, term=1)
    storage.save(None, saved, None)
    assert (storage.first_index(), storage.last_index()) == (1, 5)
    assert storage.entries(1, 6) == saved
    assert [storage.term(i) for i in range(0, 6)] == [0, 1, 1, 1, 1, 1]
    storage.save(None, entries(6, 7, term=2), None)
    assert storage.entries(5, 8) == saved[4:] + entries(6, 7, term=2)


def test_conflicting_entries_replace_the_whole_suffix(storage: Storage) -> None:
    """Fig. 2, AppendEntries rule 3: "delete the existing entry and all that follow it"."""
    storage.save(None, entries(1, 6, term=1), None)
    storage.save(None, entries(3, 4, term=2), None)
    assert storage.last_index() == 4
    assert [storage.term(i) for i in range(1, 5)] == [1, 1, 2, 2]
    with pytest.raises(Unavailable):
        storage.term(5)
    storage.save(None, entries(5, 5, term=3), None)  # appending right after still works
    assert storage.entries(4, 6) == entries(4, 4, term=2) + entries(5, 5, term=3)


def test_entries_is_half_open_and_bytes_max_returns_at_least_one(storage: Storage) -> None:
    saved = entries(1, 5, term=1, size=100)
    storage.save(None, saved, None)
    assert storage.entries(2, 4) == saved[1:3]
    assert storage.entries(3, 3) == []
    assert storage.entries(2, 5, bytes_max=0) == saved[1:2]
    two = 2 * entry_size(saved[0])
    assert storage.entries(2, 6, bytes_max=two) == saved[1:3]
    assert storage.entries(2, 6, bytes_max=two - 1) == saved[1:2]
    assert storage.entries(1, 6, bytes_max=10**9) == saved


def test_errors_at_the_edges(storage: Storage) -> None:
    storage.save(None, entries(1, 5, term=1), None)
    storage.compact(snapshot(2, 1))
    with pytest.raises(Compacted):
        storage.entries(2, 4)
    with pytest.raises(Compacted):
        storage.term(1)
    with pytest.raises(Unavailable):
        storage.entries(3, 7)
    with pytest.raises(Unavailable):
        storage.entries(4, 3)
    with pytest.raises(Unavailable):
        storage.term(6)
    assert storage.entries(3, 6) == entries(3, 5, term=1)


def test_term_is_valid_from_first_index_minus_one(storage: Storage) -> None:
    storage.save(None, entries(1, 3, term=1) + entries(4, 6, term=2), None)
    storage.compact(snapshot(4, 2))
    assert storage.first_index() == 5
    assert storage.term(storage.first_index() - 1) == 2
    with pytest.raises(Compacted):
        storage.term(storage.first_index() - 2)


def test_compact_keeps_the_snapshot_and_drops_the_prefix(storage: Storage) -> None:
    storage.save(None, entries(1, 5, term=1), None)
    storage.compact(snapshot(3, 1, b"three"))
    assert (storage.first_index(), storage.last_index()) == (4, 5)
    assert storage.snapshot() == snapshot(3, 1, b"three")
    storage.compact(snapshot(2, 1, b"older"))  # behind the current snapshot: nothing to do
    assert storage.snapshot() == snapshot(3, 1, b"three")
    storage.compact(snapshot(5, 1, b"all"))  # up to the last index: the log is empty
    assert (storage.first_index(), storage.last_index()) == (6, 5)
    assert storage.term(5) == 1
    assert storage.entries(6, 6) == []
    storage.save(None, entries(6, 6, term=2), None)
    assert storage.entries(6, 7) == entries(6, 6, term=2)


def test_snapshot_with_matching_entry_keeps_the_suffix(storage: Storage) -> None:
    """Fig. 13 rule 6: "If existing log entry has same index and term as snapshot's last
    included entry, retain log entries following it and reply"."""
    storage.save(None, entries(1, 4, term=1) + entries(5, 8, term=2), None)
    storage.save(None, [], snapshot(5, 2))
    assert (storage.first_index(), storage.last_index()) == (6, 8)
    assert storage.entries(6, 9) == entries(6, 8, term=2)
    assert storage.term(5) == 2


def test_snapshot_with_mismatching_entry_drops_the_log(storage: Storage) -> None:
    """Fig. 13 rule 7: "Discard the entire log"."""
    storage.save(None, entries(1, 8, term=1), None)
    storage.save(None, [], snapshot(5, 3))
    assert (storage.first_index(), storage.last_index()) == (6, 5)
    assert storage.term(5) == 3
    storage.save(None, [], snapshot(20, 4))  # beyond the log: dropped too
    assert (storage.first_index(), storage.last_index()) == (21, 20)


def test_one_save_installs_snapshot_then_entries_then_hard_state(storage: Storage) -> None:
    storage.save(None, entries(1, 3, term=1), None)
    hard = HardState(term=4, vote="n2", commit=10)
    storage.save(hard, entries(11, 12, term=4), snapshot(10, 3))
    assert storage.initial_state() == hard
    assert (storage.first_index(), storage.last_index()) == (11, 12)
    assert storage.snapshot() == snapshot(10, 3)
    assert storage.term(10) == 3


def test_hard_state_round_trips_and_none_keeps_it(storage: Storage) -> None:
    hard = HardState(term=7, vote="n3", commit=0)
    storage.save(hard, [], None)
    assert storage.initial_state() == hard
    storage.save(None, entries(1, 1, term=7), None)
    assert storage.initial_state() == hard
    storage.save(HardState(term=8, vote=None, commit=1), [], None)
    assert storage.initial_state() == HardState(term=8, vote=None, commit=1)


def test_entry_kinds_and_payloads_survive(storage: Storage) -> None:
    saved = [Entry(term=1, index=1, kind=EntryKind.NOOP),
             Entry(term=1, index=2, kind=EntryKind.CONFIG, data=b'{"voters": []}'),
             Entry(term=1, index=3, data=bytes(range(256)))]
    storage.save(None, saved, None)
    assert storage.entries(1, 4) == saved


# ---- LMDB only: durability, ownership, rot ------------------------------------------------------

def test_reopen_recovers_the_exact_state(tmp_path: Path) -> None:
    with open_lmdb(tmp_path / "node") as disk:
        disk.save(HardState(term=3, vote="n1", commit=4), entries(1, 6, term=2), None)
        disk.compact(snapshot(4, 2, b"four"))
        disk.save(None, entries(6, 8, term=3), None)
        before = everything(disk)
    with open_lmdb(tmp_path / "node") as disk:
        assert everything(disk) == before
        assert disk.snapshot() == snapshot(4, 2, b"four")


def test_reopen_after_snapshot_that_dropped_the_log(tmp_path: Path) -> None:
    with open_lmdb(tmp_path / "node") as disk:
        disk.save(None, entries(1, 3, term=1), None)
        disk.save(HardState(term=5), [], snapshot(9, 4))
    with open_lmdb(tmp_path / "node") as disk:
        assert (disk.first_index(), disk.last_index(), disk.term(9)) == (10, 9, 4)
        assert disk.initial_state() == HardState(term=5)


def test_another_cluster_or_node_is_refused(tmp_path: Path) -> None:
    open_lmdb(tmp_path / "node").close()
    with pytest.raises(StorageError, match="belongs to cluster 'c1' node 'n1', not cluster 'c2'"):
        LmdbStorage.open(tmp_path / "node", cluster_id="c2", node_id="n1")
    with pytest.raises(StorageError, match=str(tmp_path / "node")):
        LmdbStorage.open(tmp_path / "node", cluster_id="c1", node_id="n9")
    open_lmdb(tmp_path / "node").close()  # the refusals did not damage it


def _raw_put(path: Path, database: bytes, key: bytes, value: bytes) -> None:
    """Write behind the storage's back, as a bad disk or a confused operator would."""
    env = lmdb.open(str(path), max_dbs=4)
    try:
        with env.begin(write=True) as txn:
            txn.put(key, value, db=env.open_db(database, txn=txn))
    finally:
        env.close()


def test_unsupported_format_version_is_refused(tmp_path: Path) -> None:
    open_lmdb(tmp_path / "node").close()
    _raw_put(tmp_path / "node", b"meta", b"format", b"3")
    with pytest.raises(StorageError, match="format b'3'; this build reads formats 1 and 2"):
        open_lmdb(tmp_path / "node")


def test_corrupt_entry_is_detected_on_read(tmp_path: Path) -> None:
    with open_lmdb(tmp_path / "node") as disk:
        disk.save(None, entries(1, 5, term=1), None)
    _raw_put(tmp_path / "node", b"log", (3).to_bytes(8, "big"), b"\x00\x01garbage")
    with open_lmdb(tmp_path / "node") as disk:
        assert disk.entries(1, 3) == entries(1, 2, term=1)
        with pytest.raises(StorageError, match=f"corrupt entry at index 3 in {tmp_path / 'node'}"):
            disk.entries(1, 6)
        with pytest.raises(StorageError, match="corrupt entry at index 3"):
            disk.term(3)


def test_misdirected_entry_is_detected(tmp_path: Path) -> None:
    """A valid, checksummed value under the wrong key: the CRC passes, the index check fails."""
    with open_lmdb(tmp_path / "node") as disk:
        disk.save(None, entries(1, 5, term=1), None)
    env = lmdb.open(str(tmp_path / "node"), max_dbs=4)
    with env.begin(write=True) as txn:
        log = env.open_db(b"log", txn=txn)
        value = txn.get((2).to_bytes(8, "big"), db=log)
        assert value is not None
        txn.put((3).to_bytes(8, "big"), value, db=log)
    env.close()
    with open_lmdb(tmp_path / "node") as disk, pytest.raises(StorageError, match="holds index 2"):
        disk.term(3)


def test_corrupt_last_entry_or_hard_state_is_detected_on_open(tmp_path: Path) -> None:
    with open_lmdb(tmp_path / "node") as disk:
        disk.save(HardState(term=1), entries(1, 2, term=1), None)
    _raw_put(tmp_path / "node", b"log", (2).to_bytes(8, "big"), b"\xff\xff\xff\xff" + b"x")
    with pytest.raises(StorageError, match="corrupt entry at index 2"):
        open_lmdb(tmp_path / "node")
    _raw_put(tmp_path / "node", b"log", (2).to_bytes(8, "big"), b"")
    with pytest.raises(StorageError, match="entry at index 2 .* truncated"):
        open_lmdb(tmp_path / "node")
    _raw_put(tmp_path / "node", b"hard", b"state", b"rot")
    with pytest.raises(StorageError, match="corrupt hard state"):
        open_lmdb(tmp_path / "node")


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "data.mdb").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(StorageError, match=f"cannot open raftcron storage at {tmp_path / 'node'}"):
        open_lmdb(tmp_path / "node")


def test_foreign_directories_are_refused(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="not a raftcron storage directory"):
        open_lmdb(tmp_path / "busy")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="it is a file"):
        open_lmdb(tmp_path / "file")
    env = lmdb.open(str(tmp_path / "other"), max_dbs=2)
    env.open_db(b"users")
    env.close()
    with pytest.raises(StorageError, match="not a raftcron storage directory"):
        open_lmdb(tmp_path / "other")
    assert sorted(os.listdir(tmp_path)) == ["busy", "file", "other"]  # no staging dirs left


def test_empty_directory_is_initialised(tmp_path: Path) -> None:
    (tmp_path / "node").mkdir()
    with open_lmdb(tmp_path / "node") as disk:
        assert disk.last_index() == 0


def test_full_map_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    with open_lmdb(tmp_path / "node", map_size=256 * 1024, sync=False) as disk:
        disk.save(HardState(term=1), entries(1, 1, term=1), None)
        before = everything(disk)
        with pytest.raises(StorageError, match="map at .* is full"):
            disk.save(HardState(term=2), entries(2, 200, term=1, size=4000), None)
        assert everything(disk) == before
        disk.save(HardState(term=2), entries(2, 2, term=1), None)  # still usable
        assert disk.last_index() == 2


def test_closed_storage_is_a_clear_error(tmp_path: Path) -> None:
    disk = open_lmdb(tmp_path / "node")
    disk.save(None, entries(1, 3, term=1), None)
    disk.close()
    disk.close()  # idempotent
    with pytest.raises(StorageError, match="is closed"):
        disk.entries(1, 3)


# ---- both implementations agree on random programs ---------------------------------------------

class StorageComparison(RuleBasedStateMachine):
    """Run the same save/compact/reopen program on MemoryStorage and LmdbStorage; after every
    step everything observable must be equal. Programs are Raft-shaped: entries land within
    (snapshot, last + 1] with terms that never decrease, and compaction uses the log's term."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="raftcron-comparison-")
        self.memory = MemoryStorage()
        self.disk = LmdbStorage.open(self.directory + "/node", cluster_id="c", node_id="n",
                                     sync=False)

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(data=st.data(), count=st.integers(1, 4), bump=st.integers(0, 2))
    def save_entries(self, data: st.DataObject, count: int, bump: int) -> None:
        first = data.draw(st.integers(self.memory.first_index(), self.memory.last_index() + 1))
        term = self.memory.term(first - 1) + bump or 1
        batch = [Entry(term=term, index=first + k, data=data.draw(st.binary(max_size=8)))
                 for k in range(count)]
        self._both(lambda s: s.save(None, batch, None))

    @rule(term=st.integers(0, 9), vote=st.sampled_from([None, "n1", "n2"]), commit=st.integers(0, 30))
    def save_hard_state(self, term: int, vote: str | None, commit: int) -> None:
        self._both(lambda s: s.save(HardState(term=term, vote=vote, commit=commit), [], None))

    @precondition(lambda self: self.memory.last_index() >= self.memory.first_index())
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.memory.first_index(), self.memory.last_index()))
        taken = snapshot(index, self.memory.term(index), data=b"at %d" % index)
        self._both(lambda s: s.compact(taken))

    @rule(data=st.data(), matching=st.booleans())
    def install_snapshot(self, data: st.DataObject, matching: bool) -> None:
        index = data.draw(st.integers(self.memory.first_index(), self.memory.last_index() + 3))
        if matching and index <= self.memory.last_index():
            term = self.memory.term(index)
        else:
            term = self.memory.term(self.memory.last_index()) + data.draw(st.integers(1, 2))
        self._both(lambda s: s.save(None, [], snapshot(index, term, b"installed")))

    @rule()
    def reopen(self) -> None:
        self.disk.close()
        self.disk = LmdbStorage.open(self.directory + "/node", cluster_id="c", node_id="n",
                                     sync=False)

    @invariant()
    def agree(self) -> None:
        assert everything(self.disk) == everything(self.memory)

    def _both(self, operation: object) -> None:
        assert callable(operation)
        operation(self.memory)
        operation(self.disk)


StorageComparison.TestCase.settings = settings(max_examples=40, stateful_step_count=15,
                                               deadline=None)
TestStorageComparison = StorageComparison.TestCase


@pytest.mark.parametrize("point", [2, 9], ids=["prefix-deleted-key-by-key", "tail-put-back"])
def test_lmdb_compaction_keeps_exactly_the_tail_across_a_reopen(tmp_path: Path, point: int) -> None:
    """Compaction deletes a short prefix key by key, but empties the log and puts back a short
    tail (raft/lmdb_storage.py, `_keep_only_tail`): either way the log that reopens is the
    snapshot's successors, contiguous, with their terms."""
    tail = entries(point + 1, 10, term=2)
    with open_lmdb(tmp_path) as storage:
        storage.save(None, entries(1, point, term=1) + tail, None)
        storage.compact(snapshot(point, 1))
        assert storage.entries(point + 1, 11) == tail
    with open_lmdb(tmp_path) as storage:
        assert (storage.first_index(), storage.last_index()) == (point + 1, 10)
        assert storage.entries(point + 1, 11) == tail and storage.term(point) == 1
        storage.save(None, entries(11, 11, term=2), None)
        assert storage.last_index() == 11
