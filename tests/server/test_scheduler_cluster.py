"""The scheduler on real processes: ticks keep firing, exactly once each, across kill -9 of
the leader; the job API and CLI round-trip."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

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
