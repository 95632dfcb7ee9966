"""A real server with --wal: acknowledged writes live only in the WAL until a checkpoint, survive
kill -9 by replay, and survive turning the WAL off (open_storage replays it into LMDB first)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from raft.lmdb_storage import LmdbStorage
from raft.wal_storage import WAL_FILE, open_storage
from scheduler.server.client import ApiClient
from scheduler.server.testing import ProcessCluster


def put(client: ApiClient, key: str, value: Any) -> None:
    assert client.request("PUT", f"/v1/kv/{key}", body={"value": value})["ok"]


def test_acknowledged_writes_survive_kill_9_through_the_wal(tmp_path: Path) -> None:
    with ProcessCluster.started(tmp_path / "one", 1, extra_args=("--wal",)) as cluster:
        raft_dir = cluster.node("n1").data_dir / "raft"
        client = ApiClient(list(cluster.endpoints()), timeout_s=15)
        for value in range(30):
            put(client, "x", value)
        client.close()
        cluster.kill("n1", signal.SIGKILL)
        assert (raft_dir / WAL_FILE).exists()
        with LmdbStorage.open(raft_dir, cluster_id="raftcron", node_id="n1", beside_wal=True) as lmdb_only:
            behind = lmdb_only.last_index()  # the writes are in the WAL, not yet in LMDB
        with open_storage(raft_dir, cluster_id="raftcron", node_id="n1", wal=True) as replayed:
            assert replayed.last_index() >= behind + 30
        cluster.start("n1")
        cluster.wait_leader()
        client = ApiClient(list(cluster.endpoints()), timeout_s=15)
        assert client.get("/v1/kv/x")["value"] == 29
        put(client, "x", 30)
        client.close()
        cluster.kill("n1", signal.SIGKILL)
        with open_storage(raft_dir, cluster_id="raftcron", node_id="n1", wal=False) as plain:
            assert isinstance(plain, LmdbStorage) and plain.last_index() >= behind + 31
        assert not (raft_dir / WAL_FILE).exists(), "turning the WAL off replays and removes it"
        cluster.start("n1")
        cluster.wait_leader()
        client = ApiClient(list(cluster.endpoints()), timeout_s=15)
        assert client.get("/v1/kv/x")["value"] == 30
        client.close()


def test_the_wal_is_the_default_and_no_wal_runs_on_lmdb_alone(tmp_path: Path) -> None:
    for extra, has_wal in (((), True), (("--no-wal",), False)):
        with ProcessCluster.started(tmp_path / f"one{len(extra)}", 1, extra_args=extra) as cluster:
            client = ApiClient(list(cluster.endpoints()), timeout_s=15)
            put(client, "y", 1)
            client.close()
            assert (cluster.node("n1").data_dir / "raft" / WAL_FILE).exists() == has_wal
