"""`raftcron agent`: a non-voting node joins as a Raft learner and runs the jobs whose tags
only it carries, while the servers' quorum stays three voters."""

from __future__ import annotations

from pathlib import Path

from scheduler.server.client import ApiClient
from scheduler.server.testing import ProcessCluster, poll


def test_an_agent_joins_as_a_learner_and_runs_its_jobs(cluster: ProcessCluster, tmp_path: Path) -> None:
    cluster.add_agent("a1", tags="role=worker")
    cluster.start("a1")
    poll(lambda: (s := cluster.status("a1")) is not None and "a1" in s["learners"], timeout_s=20,
         what="a1 in the configuration")
    out = tmp_path / "worker.txt"
    client = ApiClient(list(cluster.endpoints()))
    client.request("POST", "/v1/jobs", body={
        "name": "work", "schedule": "@every 1s", "tags": {"role": "worker"},
        "executor_config": {"shell": True, "command": f'echo "$RAFTCRON_NODE" >> {out}'}})
    poll(lambda: out.exists() and len(out.read_text().split()) >= 2, timeout_s=20, what="two runs")
    assert set(out.read_text().split()) == {"a1"}
    status = cluster.status("a1")
    assert status is not None and status["role"] == "follower" and "a1" not in status["voters"]
    members = {m["id"]: m for m in client.get("/v1/members")}
    assert members["a1"]["voter"] is False and members["a1"]["raft_address"]
    client.close()
