"""The scheduler on real processes: ticks keep firing, exactly once each, across kill -9 of
the leader; a restarted server never starts again an attempt it started before the crash; the
job API and CLI round-trip."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from raft.wal_storage import WAL_FILE, open_storage
from raft.messages import HardState
from scheduler.server.client import ApiClient
from scheduler.server.testing import ProcessCluster, poll


def tick_lines(path: Path) -> list[tuple[str, int, int, str]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job, tick, attempt, node = line.split()
        rows.append((job, int(tick), int(attempt), node))
    return rows


def every_second_job(path: Path) -> dict[str, object]:
    return {"name": "ticker", "schedule": "@every 1s", "executor": "shell",
            "executor_config": {"shell": True, "command":
                                f'echo "$RAFTCRON_JOB $RAFTCRON_TICK $RAFTCRON_ATTEMPT $RAFTCRON_NODE" >> {path}'}}


def test_ticks_keep_firing_once_each_when_the_leader_is_killed(cluster: ProcessCluster, tmp_path: Path) -> None:
    out = tmp_path / "ticks.txt"
    client = ApiClient(list(cluster.endpoints()), timeout_s=15)
    client.request("POST", "/v1/jobs", body=every_second_job(out))
    poll(lambda: len(tick_lines(out)) >= 3, timeout_s=15, what="three ticks")
    old = cluster.wait_leader()
    cluster.kill(old, signal.SIGKILL)
    before = len(tick_lines(out))
    cluster.wait_leader(not_=old)
    poll(lambda: len(tick_lines(out)) >= before + 4, timeout_s=20, what="ticks after the kill")
    rows = tick_lines(out)
    ticks = [tick for _, tick, _, _ in rows]
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {rows}"
    assert all(b > a and (b - a) % 1000 == 0 for a, b in zip(ticks, ticks[1:])), rows
    assert {node for _, _, _, node in rows} - {old}, "only the killed node ever ran the job"
    job = client.get("/v1/jobs/ticker")
    assert job["missed"] == 0
    client.close()


def rewind_stored_commit(data_dir: Path, node_id: str) -> HardState:
    """Set the stored commit index of a stopped server to 0, keeping term, vote and log: the
    stalest a commit index can be on disk, since one that alone moved is never synced."""
    raft_dir = data_dir / "raft"  # through the WAL when the server ran with one (--wal)
    with open_storage(raft_dir, cluster_id="raftcron", node_id=node_id,
                      wal=(raft_dir / WAL_FILE).exists()) as storage:
        hard = storage.initial_state()
        assert storage.last_index() > 0
        storage.save(HardState(term=hard.term, vote=hard.vote, commit=0), [], None)
    return hard


def test_a_restarted_server_does_not_start_again_an_attempt_it_ran_before_the_crash(tmp_path: Path) -> None:
    """kill -9 while attempt 1 runs, with the stored commit index behind the lease that started
    it. The restarted server replays that lease from its log: it must not start attempt 1 again
    (at most once); the lease expires and the retry runs as attempt 2."""
    out = tmp_path / "runs.txt"
    lease = ("--lease-ms", "9000", "--clock-offset-ms", "500")  # a replayed lease is still fresh
    with ProcessCluster.started(tmp_path / "one", 1, extra_args=lease) as cluster:
        client = ApiClient(list(cluster.endpoints()), timeout_s=15)
        command = f'echo "$RAFTCRON_JOB $RAFTCRON_TICK $RAFTCRON_ATTEMPT $RAFTCRON_NODE" >> {out}; sleep 2'
        client.request("POST", "/v1/jobs", body={"name": "long", "schedule": "@manually", "retries": 1,
                                                 "executor": "shell",
                                                 "executor_config": {"shell": True, "command": command}})
        client.request("POST", "/v1/jobs/long/run")
        poll(lambda: tick_lines(out), timeout_s=15, what="attempt 1 to start")
        client.close()
        cluster.kill("n1", signal.SIGKILL)
        rewind_stored_commit(cluster.node("n1").data_dir, "n1")
        cluster.start("n1")
        cluster.wait_leader()
        poll(lambda: len(tick_lines(out)) >= 2, timeout_s=40,
             what="a second run: attempt 2 once attempt 1's lease expired")
        rows = tick_lines(out)
        assert [attempt for _, _, attempt, _ in rows] == [1, 2], f"an attempt ran twice: {rows}"


def test_the_job_api_and_cli_round_trip(cluster: ProcessCluster, tmp_path: Path) -> None:
    endpoints = ",".join(cluster.endpoints())
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"name": "hello", "schedule": "@manually",
                                    "executor_config": {"command": "true"}}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "raftcron", *args, "--endpoints", endpoints],
                              capture_output=True, text=True, timeout=60)

    added = cli("job", "add", "-f", str(job_file), "--json")
    assert added.returncode == 0, added.stderr
    version = json.loads(added.stdout)[0]["version"]
    assert cli("job", "add", "-f", str(job_file), "--if-version", str(version + 1)).returncode == 1
    assert "hello" in cli("job", "ls").stdout
    first = json.loads(cli("job", "run", "hello", "--idempotency-key", "k1", "--json").stdout)
    again = json.loads(cli("job", "run", "hello", "--idempotency-key", "k1", "--json").stdout)
    assert again["run_ms"] == first["run_ms"] and again["duplicate"]
    client = ApiClient(list(cluster.endpoints()))
    poll(lambda: client.get("/v1/jobs/hello")["last_success"] is not None, timeout_s=15,
         what="the run-now to succeed")
    assert "succeeded" in cli("exec", "ls", "hello").stdout
    executions = client.get("/v1/jobs/hello/executions")
    assert isinstance(executions, list) and executions[0]["success"] is True
    assert executions[0]["job_name"] == "hello" and executions[0]["tick_ms"] == first["run_ms"]
    one = client.get(f"/v1/jobs/hello/executions/{executions[0]['id']}")
    assert one["state"] == "succeeded"
    assert cli("job", "toggle", "hello", "--json").returncode == 0
    assert client.get("/v1/jobs/hello")["disabled"] is True
    bad = client.send("POST", "/v1/jobs", body={"name": "x", "schedule": "every day"})
    assert bad.status_code == 400 and "schedule" in bad.json()["error"]
    assert cli("job", "rm", "hello").returncode == 0
    assert cli("job", "show", "hello").returncode == 1
    client.close()
