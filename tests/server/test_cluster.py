"""Real server processes: writes survive kill -9 of the leader, a restarted server catches up
from its LMDB log, and hostile bytes on the Raft port change nothing."""

from __future__ import annotations

import signal
from pathlib import Path
import socket
import struct
from typing import Any

import httpx

from raft.codec import encode_message
from raft.messages import RequestVote
from raft.transport import encode_frame
from scheduler.server.client import ApiClient
from scheduler.server.testing import ProcessCluster, poll


def put(client: ApiClient, key: str, value: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.request("PUT", f"/v1/kv/{key}", body={"value": value})
    return result


def test_writes_continue_after_the_leader_is_killed_and_it_catches_up_on_restart(
        cluster: ProcessCluster) -> None:
    client = ApiClient(list(cluster.endpoints()), timeout_s=15)
    for value in range(20):
        assert put(client, "x", value)["ok"]
    old = cluster.wait_leader()
    cluster.kill(old, signal.SIGKILL)
    new = cluster.wait_leader(not_=old)
    assert new != old
    for value in range(20, 40):
        assert put(client, "x", value)["ok"]
    assert client.get("/v1/kv/x")["value"] == 39
    commit = cluster.status(new)["commit_index"]  # type: ignore[index]
    cluster.start(old)
    poll(lambda: (s := cluster.status(old)) is not None and s["applied_index"] >= commit,
         timeout_s=15, what=f"{old} catching up to {commit}")
    stale = httpx.get(cluster.url(old) + "/v1/kv/x?stale=true").json()
    assert stale["value"] == 39
    client.close()


def test_a_follower_redirects_writes_to_the_leader(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()
    follower = next(i for i in cluster.ids if i != leader)
    response = httpx.put(cluster.url(follower) + "/v1/kv/y", json={"value": 1})
    assert response.status_code == 307
    assert response.headers["location"] == cluster.url(leader) + "/v1/kv/y"
    response = httpx.get(cluster.url(follower) + "/v1/kv/y")
    assert response.status_code == 307  # a linearizable read, too
    assert httpx.get(cluster.url(follower) + "/v1/kv/y?stale=true").status_code == 404


def test_compare_and_set_by_version_and_by_value(cluster: ProcessCluster) -> None:
    client = ApiClient(list(cluster.endpoints()))
    first = put(client, "r", 1)
    response = client.send("PUT", "/v1/kv/r", body={"value": 2}, headers={"If-Match": '"1"'})
    assert response.status_code == 412
    response = client.send("PUT", "/v1/kv/r", body={"value": 2},
                           headers={"If-Match": f'"{first["version"]}"'})
    assert response.status_code == 200
    assert client.send("PUT", "/v1/kv/r", body={"value": 3, "expect": 1}).status_code == 412
    assert client.send("PUT", "/v1/kv/r", body={"value": 3, "expect": 2}).status_code == 200
    assert client.get("/v1/kv/r")["value"] == 3
    client.close()


def _send_raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)


def test_hostile_frames_on_the_raft_port_are_counted_and_the_node_keeps_serving(
        cluster: ProcessCluster) -> None:
    client = ApiClient(list(cluster.endpoints()))
    target = cluster.wait_leader()
    port = cluster.node(target).raft[1]
    payload = encode_message(RequestVote(src="n2", dst=target, term=10**6, last_log_index=10**6,
                                         last_log_term=10**6))
    forged = encode_frame(payload, cluster_id="raftcron", sender="n2",
                          secret=b"not the cluster secret, honestly")
    _send_raw(port, b"\x00\x00\x00\x30" + b"\xff" * 48)
    _send_raw(port, forged[: len(forged) // 2])
    _send_raw(port, struct.pack(">I", 1 << 31) + b"x" * 1000)
    _send_raw(port, forged)
    _send_raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def counted() -> dict[str, int]:
        text = httpx.get(cluster.url(target) + "/metrics").text
        return {line.split('kind="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line.startswith("raftcron_peer_errors_total{")}

    errors = poll(lambda: (c := counted()).get("bad_mac", 0) >= 2 and len(c) >= 3 and c,
                  timeout_s=10, what="peer errors counted")
    assert errors.get("oversized", 0) >= 1
    assert errors.get("truncated", 0) >= 1
    assert cluster.leader() == target  # the forged vote request with a huge term changed nothing
    assert put(client, "z", "still serving")["ok"]
    client.close()


def test_sigterm_on_the_leader_hands_leadership_over_and_exits_cleanly(cluster: ProcessCluster) -> None:
    old = cluster.wait_leader()
    term = cluster.status(old)["term"]  # type: ignore[index]
    cluster.kill(old, signal.SIGTERM)
    assert cluster.processes[old].returncode == 0
    new = cluster.wait_leader(not_=old)
    status = cluster.status(new)
    assert status is not None and status["term"] > term
    log = (cluster.plan.directory / f"{old}.log").read_text()
    assert f"hands leadership to {new}" in log


def test_a_server_far_behind_catches_up_from_a_snapshot(tmp_path: Path) -> None:
    with ProcessCluster.started(tmp_path / "c", extra_args=("--snapshot-entries", "20")) as cluster:
        leader = cluster.wait_leader()
        behind = next(i for i in cluster.ids if i != leader)
        cluster.kill(behind, signal.SIGKILL)
        client = ApiClient([cluster.url(leader)], timeout_s=15)
        for value in range(60):
            assert put(client, f"k{value % 7}", value)["ok"]
        commit = cluster.status(leader)["commit_index"]  # type: ignore[index]
        cluster.start(behind)
        poll(lambda: (s := cluster.status(behind)) is not None and s["applied_index"] >= commit,
             timeout_s=20, what=f"{behind} catching up")
        status = cluster.status(behind)
        assert status is not None and status["snapshot_index"] > 0
        metrics = httpx.get(cluster.url(behind) + "/metrics").text
        assert 'raftcron_snapshots_total{kind="installed",node="' + behind + '"} 1' in metrics
        assert httpx.get(cluster.url(behind) + "/v1/kv/k3?stale=true").json()["value"] == 59
        client.close()
