"""LmdbStorage's snapshot file (format 2): the bytes live in a file next to data.mdb, are never
kept in memory, are sent to followers chunk by chunk with the CRC checked before the last chunk,
and a crash anywhere in the write leaves either the old snapshot or the new one (docs/storage.md,
"The snapshot file")."""

from __future__ import annotations

import gc
import tracemalloc
import zlib
from pathlib import Path

import lmdb
import msgpack
import pytest

from raft.errors import StorageError
from raft.lmdb_storage import LmdbStorage
from raft.messages import Configuration, Entry, HardState, InstallSnapshot, Snapshot, SnapshotMeta
from harness import Network

CONFIG = Configuration(voters=frozenset({"n1", "n2", "n3"}))


def open_lmdb(path: Path, **options: object) -> LmdbStorage:
    return LmdbStorage.open(path, cluster_id="c1", node_id="n1", **options)  # type: ignore[arg-type]


def snapshot(index: int, term: int, data: bytes) -> Snapshot:
    return Snapshot(meta=SnapshotMeta(index=index, term=term, config=CONFIG), data=data)


def with_log(path: Path, last: int = 10) -> LmdbStorage:
    disk = open_lmdb(path)
    disk.save(HardState(term=1), [Entry(term=1, index=i, data=b"e") for i in range(1, last + 1)], None)
    return disk


def snap_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.startswith(("snap-", ".snap-")))


def test_snapshot_bytes_are_in_one_file_and_the_old_one_goes(tmp_path: Path) -> None:
    with with_log(tmp_path / "node") as disk:
        disk.compact(snapshot(3, 1, b"three"))
        [first] = snap_files(tmp_path / "node")
        assert (tmp_path / "node" / first).read_bytes() == b"three"
        disk.compact(snapshot(6, 1, b"six"))
        [second] = snap_files(tmp_path / "node")
        assert second != first and (tmp_path / "node" / second).read_bytes() == b"six"
        disk.save(None, [], snapshot(20, 2, b"installed"))  # a leader's snapshot replaces it too
        assert [(tmp_path / "node" / name).read_bytes() for name in snap_files(tmp_path / "node")] \
            == [b"installed"]


def test_storage_keeps_no_snapshot_bytes(tmp_path: Path) -> None:
    """Why the file: a 200 MB snapshot cached after start-up was 200 MB of a server's RSS."""
    size = 4 << 20
    with with_log(tmp_path / "node") as disk:
        gc.collect()
        tracemalloc.start()
        try:
            disk.compact(snapshot(5, 1, b"x" * size))
            assert disk.snapshot() == snapshot(5, 1, b"x" * size)  # read back, then dropped
            assert disk.snapshot_chunk(0, 1000) == (b"x" * 1000, False)
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert held < size // 8, f"storage holds {held} bytes after the snapshot was written"
        assert disk.snapshot() is not disk.snapshot()  # read anew each time, never cached


def test_chunks_read_the_file_and_check_the_crc_before_the_last(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    with with_log(tmp_path / "node") as disk:
        disk.compact(snapshot(4, 1, data))
        read = b""
        done = False
        while not done:
            chunk, done = disk.snapshot_chunk(len(read), 1000)
            read += chunk
        assert read == data
        assert disk.snapshot_chunk(7000, 5000) == (data[7000:], True)  # out of order: from 0 again
        assert disk.snapshot_chunk(len(data), 10) == (b"", True)
        [name] = snap_files(tmp_path / "node")
    rotten = bytearray(data)
    rotten[5] ^= 1
    (tmp_path / "node" / name).write_bytes(bytes(rotten))
    with open_lmdb(tmp_path / "node") as disk:
        assert disk.snapshot_chunk(0, 1000)[0] == bytes(rotten[:1000])  # not the last: no verdict
        with pytest.raises(StorageError, match="corrupt snapshot data .* checksum mismatch"):
            disk.snapshot_chunk(9000, 2000)  # the last chunk never leaves
        with pytest.raises(StorageError, match="corrupt snapshot data"):
            disk.snapshot()
    (tmp_path / "node" / name).write_bytes(data[:100])
    with open_lmdb(tmp_path / "node") as disk, pytest.raises(StorageError, match="corrupt snapshot"):
        disk.snapshot_chunk(0, 1000)
    (tmp_path / "node" / name).unlink()
    with pytest.raises(StorageError, match=f"its file {name} is missing"):
        open_lmdb(tmp_path / "node")


def test_orphan_files_after_a_crash_are_ignored_and_removed(tmp_path: Path) -> None:
    """A crash after the new file's rename but before the transaction naming it committed (or
    after the commit, before the old file's removal), or in the middle of the temporary file."""
    with with_log(tmp_path / "node") as disk:
        disk.compact(snapshot(3, 1, b"committed"))
        [name] = snap_files(tmp_path / "node")
    newer = f"snap-{7:016x}-{1:016x}-{zlib.crc32(b'never named'):08x}.snap"
    (tmp_path / "node" / newer).write_bytes(b"never named")
    (tmp_path / "node" / ".snap-new-abc").write_bytes(b"half writ")
    with open_lmdb(tmp_path / "node") as disk:
        assert disk.snapshot() == snapshot(3, 1, b"committed")
        assert disk.first_index() == 4
        assert snap_files(tmp_path / "node") == [name]
        (tmp_path / "node" / "notes.txt").write_text("an operator's")  # not ours: left alone
    with open_lmdb(tmp_path / "node"):
        assert (tmp_path / "node" / "notes.txt").exists()


def test_a_failed_transaction_removes_its_new_file(tmp_path: Path) -> None:
    with with_log(tmp_path / "node") as disk:
        disk.compact(snapshot(2, 1, b"two"))
    with open_lmdb(tmp_path / "node", map_size=1 << 20) as disk:
        huge = [Entry(term=1, index=11, data=b"z" * (2 << 20))]
        with pytest.raises(StorageError, match="is full"):
            disk.save(None, huge, snapshot(5, 1, b"five"))
        assert disk.snapshot() == snapshot(2, 1, b"two")
        assert [(tmp_path / "node" / n).read_bytes() for n in snap_files(tmp_path / "node")] == [b"two"]


def test_format_1_snapshot_in_lmdb_is_migrated_to_a_file(tmp_path: Path) -> None:
    with with_log(tmp_path / "node") as disk:
        disk.compact(snapshot(3, 1, b"old layout"))
    [name] = snap_files(tmp_path / "node")
    env = lmdb.open(str(tmp_path / "node"), max_dbs=4)  # rewrite it as format 1 would have
    with env.begin(write=True) as txn:
        snap, meta = env.open_db(b"snap", txn=txn), env.open_db(b"meta", txn=txn)
        txn.delete(b"file", db=snap)
        txn.put(b"data", zlib.crc32(b"old layout").to_bytes(4, "big") + b"old layout", db=snap)
        txn.put(b"format", b"1", db=meta)
    env.close()
    (tmp_path / "node" / name).unlink()
    with open_lmdb(tmp_path / "node") as disk:
        assert disk.snapshot() == snapshot(3, 1, b"old layout")
    assert snap_files(tmp_path / "node") == [name]
    env = lmdb.open(str(tmp_path / "node"), max_dbs=4)
    with env.begin() as txn:
        assert txn.get(b"data", db=env.open_db(b"snap", txn=txn)) is None
        assert txn.get(b"format", db=env.open_db(b"meta", txn=txn)) == b"2"
        record = txn.get(b"file", db=env.open_db(b"snap", txn=txn))
    env.close()
    assert msgpack.unpackb(record[4:]) == [name, 10, zlib.crc32(b"old layout")]


def test_lagging_follower_installs_a_snapshot_read_chunk_by_chunk_from_disk(tmp_path: Path) -> None:
    """The leader's core holds only the snapshot's meta; each InstallSnapshot chunk is read from
    the file when it is sent, and the follower still ends with exactly the leader's snapshot."""
    storages = {f"n{i}": LmdbStorage.open(tmp_path / f"n{i}", cluster_id="c1", node_id=f"n{i}",
                                          sync=False) for i in (1, 2, 3)}
    try:
        net = Network(3, seed=44, storages=storages, snapshot_chunk_bytes=10)  # type: ignore[arg-type]
        net.run(1000)
        [leader] = net.leaders()
        node = net.nodes[leader]
        lagging = sorted(set(net.nodes) - {leader})[1]
        net.isolate(lagging)
        for k in range(10):
            node.propose(f"v{k}".encode())
        net.run(100)
        taken = node.compact(node.applied_index, bytes(range(35)))
        storages[leader].compact(taken)
        del taken  # from here only the file has the bytes
        index, _ = node.propose(b"after the snapshot")
        net.run(50)
        mark = len(net.sent)
        net.heal()
        net.run(300)
        chunks = [m for m in net.sent[mark:] if isinstance(m, InstallSnapshot)]
        assert [(m.offset, m.data, m.done) for m in chunks] == [
            (0, bytes(range(10)), False), (10, bytes(range(10, 20)), False),
            (20, bytes(range(20, 30)), False), (30, bytes(range(30, 35)), True)]
        assert [s.data for s in net.restored[lagging]] == [bytes(range(35))]
        assert storages[lagging].snapshot() == storages[leader].snapshot()
        assert net.log(lagging) == net.log(leader) == [(index, node.term)]
        assert net.applied[lagging][-1].data == b"after the snapshot"
    finally:
        for storage in storages.values():
            storage.close()
