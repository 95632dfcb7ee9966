"""WalStorage (raft/wal_storage.py): the `Storage` contract, re-run from
test_storage_contract.py on WalStorage (with roomy limits, and with limits so small that
nearly every save checkpoints); one flush per ordinary save; the WAL's crash cases (torn tail,
rot in the middle, a torn header, a crash inside a checkpoint); foreign headers; and a
Hypothesis state machine with crashes checked against MemoryStorage."""

from __future__ import annotations

import inspect
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_storage_contract as contract
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raft.errors import StorageError
from raft.lmdb_storage import LmdbStorage
from raft.messages import Entry, HardState
from raft.storage import MemoryStorage, Storage
from raft.wal_storage import WAL_FILE, Limits, WalStorage, open_storage

entries, snapshot, everything = contract.entries, contract.snapshot, contract.everything
SMALL = Limits(entries=3, bytes=200, records=2)  # a checkpoint every two or three saves
WAL_BYTES = 64 * 1024


def open_wal(path: Path, limits: Limits | None = None, wal_bytes: int = WAL_BYTES) -> WalStorage:
    return WalStorage.open(path, cluster_id="c1", node_id="n1", wal_bytes=wal_bytes, limits=limits)


@pytest.fixture(params=["wal", "wal-small-limits"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    limits = SMALL if request.param == "wal-small-limits" else None
    with open_wal(tmp_path / "node", limits) as disk:
        yield disk


# Every contract test of test_storage_contract.py that takes only `storage`, unchanged, run here
# with this module's fixture (pytest resolves fixtures from the module that collects the test).
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and list(inspect.signature(_test).parameters) == ["storage"]:
        globals()[_name] = _test
CONTRACT_TESTS = [name for name in vars(contract) if name.startswith("test_") and name in globals()]


def test_the_contract_tests_were_picked_up() -> None:
    assert len(CONTRACT_TESTS) >= 10, CONTRACT_TESTS


# ---- one flush per ordinary save ---------------------------------------------------------------

def test_an_ordinary_save_is_one_fdatasync_and_no_lmdb_commit(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append("fdatasync"), real_fdatasync(fd))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    with open_wal(tmp_path / "node") as disk:
        inner_saves = disk._inner.saves
        calls.clear()
        for index in range(1, 11):
            disk.save(HardState(term=1, vote="n1", commit=index - 1), entries(index, index, 1), None)
        assert calls == ["fdatasync"] * 10
        assert disk._inner.saves == inner_saves, "LMDB was written between checkpoints"
        disk.save(None, [], None)  # nothing to save: no flush at all
        assert calls == ["fdatasync"] * 10


def test_reads_straddling_lmdb_and_the_overlay(tmp_path: Path) -> None:
    with open_wal(tmp_path / "node") as disk:
        disk.save(None, entries(1, 6, 1, size=100), None)
        disk.checkpoint()
        disk.save(None, entries(4, 8, 2, size=100), None)  # the overlay starts below LMDB's end
        assert disk.entries(2, 2) == [] and disk.entries(4, 4) == []
        expected = entries(1, 3, 1, size=100) + entries(4, 8, 2, size=100)
        assert disk.entries(1, 9) == expected
        assert disk.entries(2, 6, bytes_max=2 * 116) == expected[1:3]  # stops inside LMDB
        assert disk.entries(2, 6, bytes_max=3 * 116) == expected[1:4]  # crosses into the overlay
        assert disk.entries(5, 9, bytes_max=0) == expected[4:5]
        assert [disk.term(i) for i in range(0, 9)] == [0, 1, 1, 1, 2, 2, 2, 2, 2]


def test_a_checkpoint_writes_lmdb_and_starts_a_generation(tmp_path: Path) -> None:
    with open_wal(tmp_path / "node", Limits(entries=4, bytes=1 << 20, records=100)) as disk:
        generation = disk._generation
        for index in range(1, 5):
            disk.save(None, entries(index, index, 1), None)
        assert (disk.checkpoints, disk._inner.last_index()) == (0, 0)
        disk.save(None, entries(5, 5, 1), None)  # the fifth overflows: it rides in the checkpoint
        assert (disk.checkpoints, disk._inner.last_index(), disk._generation) == (1, 5, generation + 1)
        assert disk.entries(1, 6) == entries(1, 5, 1)


def test_a_full_wal_checkpoints_before_the_record_that_would_not_fit(tmp_path: Path) -> None:
    with open_wal(tmp_path / "node", Limits(entries=10**6, bytes=10**9, records=10**6),
                  wal_bytes=8192) as disk:
        for index in range(1, 40):
            disk.save(None, entries(index, index, 1, size=300), None)
        assert disk.checkpoints >= 3
        assert disk.entries(1, 40) == entries(1, 39, 1, size=300)
        disk.save(None, entries(40, 40, 1, size=20_000), None)  # bigger than the WAL itself
        assert disk._inner.last_index() == 40
    with open_wal(tmp_path / "node", wal_bytes=8192) as disk:
        assert disk.entries(1, 41) == entries(1, 39, 1, size=300) + entries(40, 40, 1, size=20_000)


# ---- crashes -----------------------------------------------------------------------------------

def _three_saves_then_crash(path: Path) -> list[int]:
    """Three records (no checkpoint), then a crash; returns the records' offsets."""
    disk = open_wal(path)
    offsets = []
    for index in (1, 2, 3):
        offsets.append(disk._tail)
        disk.save(HardState(term=index, vote="n1"), entries(index, index, term=index), None)
    offsets.append(disk._tail)
    disk.crash()
    return offsets


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path / WAL_FILE, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_a_crash_loses_nothing_that_save_returned(tmp_path: Path) -> None:
    _three_saves_then_crash(tmp_path / "node")
    assert LmdbStorage.open(tmp_path / "node", cluster_id="c1", node_id="n1", beside_wal=True).last_index() == 0
    with open_wal(tmp_path / "node") as disk:
        assert disk.initial_state() == HardState(term=3, vote="n1")
        assert [disk.term(i) for i in (1, 2, 3)] == [1, 2, 3]
    # close() checkpointed: LMDB alone now holds it all
    with LmdbStorage.open(tmp_path / "node", cluster_id="c1", node_id="n1", beside_wal=True) as lmdb_only:
        assert (lmdb_only.last_index(), lmdb_only.initial_state().term) == (3, 3)


def test_lmdb_alone_refuses_a_directory_that_holds_a_wal(tmp_path: Path) -> None:
    """Opened alone after a crash, LMDB would lack saves only the WAL holds, and a write to
    it could be undone by the next replay: plain LmdbStorage.open refuses, naming the way in."""
    _three_saves_then_crash(tmp_path / "node")
    with pytest.raises(StorageError, match="holds a write-ahead log .*open_storage"):
        LmdbStorage.open(tmp_path / "node", cluster_id="c1", node_id="n1")
    with open_storage(tmp_path / "node", cluster_id="c1", node_id="n1", wal=False) as folded:
        assert folded.last_index() == 3  # --no-wal folds the log in, removes it, opens LMDB


@pytest.mark.parametrize("at", [0, 3, 7, 8, 20, -1])
def test_a_torn_last_record_loses_only_that_save(tmp_path: Path, at: int) -> None:
    offsets = _three_saves_then_crash(tmp_path / "node")
    start, end = offsets[2], offsets[3]
    cut = start + (at % (end - start))
    _patch(tmp_path / "node", cut, bytes(end - cut))  # the write stopped at byte `cut`
    with open_wal(tmp_path / "node") as disk:
        assert disk.initial_state() == HardState(term=2, vote="n1")
        assert disk.last_index() == 2 and disk.term(2) == 2


def test_rot_in_a_middle_record_is_refused_not_skipped(tmp_path: Path) -> None:
    """A bad checksum followed by a whole record of the next sequence is not a torn tail: the
    later save was acknowledged. Stopping there would silently forget it, so open refuses."""
    offsets = _three_saves_then_crash(tmp_path / "node")
    _patch(tmp_path / "node", offsets[1] + 30, b"\xff")  # inside record 2's payload
    with pytest.raises(StorageError, match="record 2 at byte .* fails its checksum but record 3"):
        open_wal(tmp_path / "node")


def test_a_corrupt_length_in_the_middle_stops_replay_there(tmp_path: Path) -> None:
    """When the length itself is damaged the next record cannot be found: replay stops at the
    bad record and keeps what came before it (the limit docs/storage.md states)."""
    offsets = _three_saves_then_crash(tmp_path / "node")
    _patch(tmp_path / "node", offsets[1], struct.pack(">I", 3))
    with open_wal(tmp_path / "node") as disk:
        assert (disk.last_index(), disk.initial_state()) == (1, HardState(term=1, vote="n1"))


def test_a_torn_header_falls_back_to_the_previous_generation(tmp_path: Path) -> None:
    """The crash came while the next generation's header was written, after the checkpoint's
    LMDB commit: the older slot wins and its records replay onto LMDB a second time."""
    disk = open_wal(tmp_path / "node")
    disk.save(HardState(term=1), entries(1, 3, 1), None)
    disk.save(None, entries(2, 2, 2), None)  # replaces 2..3 with 2 (term 2)
    disk.save(HardState(term=2, vote="n1"), entries(3, 4, 2), None)
    generation = disk._generation
    disk.checkpoint()
    disk.crash()
    _patch(tmp_path / "node", ((generation + 1) % 2) * 2048 + 5, b"\x00\x00")  # tear the new slot
    with open_wal(tmp_path / "node") as disk:
        assert disk._generation == generation + 1  # replayed `generation`, then started the next
        assert [disk.term(i) for i in range(1, 5)] == [1, 2, 2, 2]
        assert disk.initial_state() == HardState(term=2, vote="n1")


def test_a_crash_inside_a_checkpoint_replays_idempotently(tmp_path: Path) -> None:
    """LMDB committed the fold, the new header never came: replaying the same records onto
    the checkpointed log must give the same log (a record-by-record replay would not: the
    first record starts at 5, beyond the log the later record at 3 left)."""
    disk = open_wal(tmp_path / "node")
    disk.save(None, entries(1, 10, 1), None)
    disk.checkpoint()
    disk.save(None, entries(5, 5, 2), None)
    disk.save(HardState(term=3), entries(3, 3, 3), None)
    overlay = disk._overlay
    disk._inner.save(overlay.hard_state, overlay.entries, None)  # the checkpoint's commit ...
    disk.crash()  # ... and no new generation
    for _ in range(2):
        with open_wal(tmp_path / "node") as reopened:
            assert [reopened.term(i) for i in range(1, 4)] == [1, 1, 3]
            assert reopened.last_index() == 3 and reopened.initial_state() == HardState(term=3)


def test_a_failed_flush_refuses_later_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = open_wal(tmp_path / "node")
    disk.save(None, entries(1, 1, 1), None)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(StorageError, match="save failed in .*wal: .*Input/output error"):
        disk.save(None, entries(2, 2, 1), None)
    assert disk.last_index() == 1
    monkeypatch.undo()
    with pytest.raises(StorageError, match="refuses writes: a WAL write failed"):
        disk.save(None, entries(2, 2, 1), None)
    disk.close()
    with open_wal(tmp_path / "node") as reopened:
        assert reopened.last_index() in (1, 2)  # the failed save may or may not have landed
        assert reopened.entries(1, 2) == entries(1, 1, 1)


# ---- foreign headers ---------------------------------------------------------------------------

def test_a_wal_of_another_format_is_a_clear_error(tmp_path: Path) -> None:
    open_wal(tmp_path / "node").close()
    _patch(tmp_path / "node", 0, b"SQLite format 3\x00" * 256)
    _patch(tmp_path / "node", 2048, b"SQLite format 3\x00" * 128)
    with pytest.raises(StorageError, match="node/wal is not a raftcron WAL"):
        open_wal(tmp_path / "node")


def test_a_newer_wal_format_is_refused(tmp_path: Path) -> None:
    disk = open_wal(tmp_path / "node")
    slot = (disk._generation % 2) * 2048
    disk.close()
    with open(tmp_path / "node" / WAL_FILE, "r+b") as handle:
        handle.seek(slot)
        raw = bytearray(handle.read(2048))
        raw[8:12] = (2).to_bytes(4, "big")
        length = int.from_bytes(raw[20:22], "big")
        raw[22 + length : 26 + length] = zlib.crc32(bytes(raw[: 22 + length])).to_bytes(4, "big")
        handle.seek(slot)
        handle.write(raw)
    with pytest.raises(StorageError, match="WAL format 2; this build reads format 1 only"):
        open_wal(tmp_path / "node")


def test_another_nodes_wal_is_refused(tmp_path: Path) -> None:
    WalStorage.open(tmp_path / "other", cluster_id="c9", node_id="n7", wal_bytes=WAL_BYTES).close()
    open_wal(tmp_path / "node").close()
    shutil.copy(tmp_path / "other" / WAL_FILE, tmp_path / "node" / WAL_FILE)
    with pytest.raises(StorageError, match="belongs to cluster 'c9' node 'n7', not cluster 'c1'"):
        open_wal(tmp_path / "node")


def test_a_truncated_wal_is_refused(tmp_path: Path) -> None:
    open_wal(tmp_path / "node").close()
    os.truncate(tmp_path / "node" / WAL_FILE, 100)
    with pytest.raises(StorageError, match="node/wal is truncated .100 bytes."):
        open_wal(tmp_path / "node")


def test_a_damaged_header_is_refused(tmp_path: Path) -> None:
    open_wal(tmp_path / "node").close()
    _patch(tmp_path / "node", 30, b"\xee")
    _patch(tmp_path / "node", 2048 + 30, b"\xee")
    with pytest.raises(StorageError, match="no valid header"):
        open_wal(tmp_path / "node")


def test_a_wal_that_does_not_fit_lmdb_is_refused(tmp_path: Path) -> None:
    """Someone compacted LMDB behind the WAL's back (opened it without the WAL after a crash)."""
    disk = open_wal(tmp_path / "node")
    disk.save(None, entries(1, 5, 1), None)
    disk.checkpoint()
    disk.save(None, entries(3, 3, 2), None)
    disk.crash()
    with LmdbStorage.open(tmp_path / "node", cluster_id="c1", node_id="n1", beside_wal=True) as lmdb_only:
        lmdb_only.compact(snapshot(4, 1))
    with pytest.raises(StorageError, match="does not fit its LMDB log: it rewrites the log from 3"):
        open_wal(tmp_path / "node")


# ---- switching the WAL off ---------------------------------------------------------------------

def test_turning_the_wal_off_replays_it_first(tmp_path: Path) -> None:
    _three_saves_then_crash(tmp_path / "node")
    plain = open_storage(tmp_path / "node", cluster_id="c1", node_id="n1", wal=False)
    assert isinstance(plain, LmdbStorage)
    with plain:
        assert (plain.last_index(), plain.initial_state().term) == (3, 3)
    assert not (tmp_path / "node" / WAL_FILE).exists()
    on = open_storage(tmp_path / "node", cluster_id="c1", node_id="n1", wal=True)
    assert isinstance(on, WalStorage)
    on.close()


# ---- random programs with crashes, against MemoryStorage ----------------------------------------

class CrashComparison(RuleBasedStateMachine):
    """Random saves (appends, conflicting suffixes, hard states), compactions, snapshot saves,
    checkpoints, clean reopens and crashes, on WalStorage and MemoryStorage. After a crash the
    last save's record may be torn at any byte: the storage must then hold either everything
    or everything but that last save, never less."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="raftcron-wal-")
        self.path = self.directory + "/node"
        self.model = MemoryStorage()
        self.limits = Limits()
        self.disk = WalStorage.open(self.path, cluster_id="c", node_id="n", wal_bytes=8192)
        self.before_last: tuple[object, ...] | None = None  # the model before the last save
        self.last_record: tuple[int, int] | None = None  # where that save's record lies

    @initialize(entries_max=st.integers(1, 12), records_max=st.integers(1, 12))
    def limits_(self, entries_max: int, records_max: int) -> None:
        self.limits = Limits(entries=entries_max, bytes=2000, records=records_max)
        self._reopen(crash=False)

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(data=st.data(), count=st.integers(1, 4), bump=st.integers(0, 2), hard=st.booleans())
    def save_entries(self, data: st.DataObject, count: int, bump: int, hard: bool) -> None:
        first = data.draw(st.integers(self.model.first_index(), self.model.last_index() + 1))
        term = self.model.term(first - 1) + bump or 1
        batch = [Entry(term=term, index=first + k, data=data.draw(st.binary(max_size=40)))
                 for k in range(count)]
        state = HardState(term=term, vote="n2", commit=first - 1) if hard else None
        self._save(state, batch)

    @rule(term=st.integers(0, 9), vote=st.sampled_from([None, "n1", "n2"]), commit=st.integers(0, 30))
    def save_hard_state(self, term: int, vote: str | None, commit: int) -> None:
        self._save(HardState(term=term, vote=vote, commit=commit), [])

    @precondition(lambda self: self.model.last_index() >= self.model.first_index())
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.model.first_index(), self.model.last_index()))
        taken = snapshot(index, self.model.term(index), data=b"at %d" % index)
        for storage in (self.model, self.disk):
            storage.compact(taken)
        self.before_last = self.last_record = None

    @rule(data=st.data(), matching=st.booleans(), after=st.integers(0, 2))
    def install_snapshot(self, data: st.DataObject, matching: bool, after: int) -> None:
        index = data.draw(st.integers(self.model.first_index(), self.model.last_index() + 3))
        if matching and index <= self.model.last_index():
            term = self.model.term(index)
        else:
            term = self.model.term(self.model.last_index()) + data.draw(st.integers(1, 2))
        taken = snapshot(index, term, b"installed")
        batch = entries(index + 1, index + after, term)
        state = HardState(term=term, vote=None, commit=index)
        for storage in (self.model, self.disk):
            storage.save(state, batch, taken)
        self.before_last = self.last_record = None

    @rule()
    def checkpoint(self) -> None:
        self.disk.checkpoint()
        self.before_last = self.last_record = None

    @rule()
    def reopen(self) -> None:
        self._reopen(crash=False)

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        torn, before = False, self.before_last
        if self.last_record is not None and data.draw(st.booleans(), label="tear"):
            start, end = self.last_record
            cut = data.draw(st.integers(start, end - 1), label="cut")
            noise = data.draw(st.binary(min_size=end - cut, max_size=end - cut), label="noise")
            self.disk.crash()
            _patch(Path(self.path), cut, noise)
            torn = True
        self._reopen(crash=True)
        if torn and everything(self.disk) != everything(self.model):
            assert everything(self.disk) == before, "a crash lost more than the torn save"
            self._rebuild_model()

    @rule()
    def crash_inside_checkpoint(self) -> None:
        """LMDB committed the overlay, the next generation's header was never written."""
        overlay = self.disk._overlay
        if overlay.hard_state is not None or overlay.entries:
            self.disk._inner.save(overlay.hard_state, overlay.entries, None)
        self._reopen(crash=True)

    @precondition(lambda self: self.model.last_index() >= self.model.first_index())
    @rule(data=st.data(), bytes_max=st.none() | st.integers(0, 200))
    def read(self, data: st.DataObject, bytes_max: int | None) -> None:
        """Ranges that straddle the overlay's first index, with and without a byte limit."""
        lo = data.draw(st.integers(self.model.first_index(), self.model.last_index() + 1))
        hi = data.draw(st.integers(lo, self.model.last_index() + 1))
        assert self.disk.entries(lo, hi, bytes_max) == self.model.entries(lo, hi, bytes_max)
        assert [self.disk.term(i) for i in range(lo - 1, hi)] == [
            self.model.term(i) for i in range(lo - 1, hi)]

    @invariant()
    def agree(self) -> None:
        assert everything(self.disk) == everything(self.model)

    def _save(self, state: HardState | None, batch: list[Entry]) -> None:
        self.before_last = everything(self.model)
        tail, generation = self.disk._tail, self.disk._generation
        self.model.save(state, batch, None)
        self.disk.save(state, batch, None)
        wrote = self.disk._generation == generation and self.disk._tail > tail
        self.last_record = (tail, self.disk._tail) if wrote else None

    def _reopen(self, crash: bool) -> None:
        if crash:
            self.disk.crash()  # idempotent after a tear
        else:
            self.disk.close()
        self.disk = WalStorage.open(self.path, cluster_id="c", node_id="n", wal_bytes=8192,
                                    limits=self.limits)
        self.before_last = self.last_record = None

    def _rebuild_model(self) -> None:
        """The torn save is gone: the model becomes a MemoryStorage holding what the disk holds."""
        model = MemoryStorage()
        meta = self.disk.snapshot()
        if meta is not None:
            model.save(None, [], meta)
        first, last = self.disk.first_index(), self.disk.last_index()
        if last >= first:
            model.save(None, self.disk.entries(first, last + 1), None)
        model.save(self.disk.initial_state(), [], None)
        self.model = model


CrashComparison.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestCrashComparison = CrashComparison.TestCase
