"""Memory of 100k jobs: the state machine and planner alone, and a real server process.

    python papers/perf/planner_memory.py                  # all scenarios, 100k jobs, as JSON
    python papers/perf/planner_memory.py --jobs 10000 --scenarios created,full

Every number is read from /proc/<pid>/status of a process that did nothing else: `VmRSS`
(resident now) and `VmHWM` (the peak). Not `ru_maxrss`: on Linux a child's ru_maxrss keeps
the high-water mark of the parent it was forked from (folded in at exec), so a child started
by a bench that had just run 100k jobs in-process reported the bench's own 326 MB.

Scenarios (jobs `@every 1h`, one per job name, no tags, phases spread over the hour):
- `created`: a process applies one PutJob per job, then builds the leader's planner;
- `full`: the same after every job ran 32 times, so its histories are full (32 outcomes,
  16 ended executions; written with `JobRecord.note` / `note_execution`, the calls the
  state machine makes on a fire and on a finish; running 3.2M fires would take minutes);
- `restored`: a fresh process restores `full` from its snapshot file, as a restarting
  replica does, and builds the planner (snapshot bytes dropped after the restore);
- `server`: a real `raftcron server` process (single-node cluster, LMDB, HTTP API) started
  on a data directory whose Raft snapshot holds the `full` state: what an operator sees.
  Its jobs' next ticks are later than the measurement, so it measures a server at rest.
  The snapshot is written with `LmdbStorage.save`, so it lands where the server's storage
  format puts it (since format 2, a `snap-*.snap` file next to data.mdb).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HOUR_MS = 3_600_000
MARGIN_MS = 600_000  # every next tick is at least this far after the build
RUNS = 32  # a full outcome history (state.RECENT_MAX)
SCENARIOS = ("created", "full", "restored", "server")


def status_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS (split into anonymous memory and mapped files) and VmHWM, in MB (2^20 bytes).
    A server's file part is mapped code and LMDB's map: page cache the kernel can reclaim,
    but RSS counts it (the snapshot is no longer read through the map: its own file)."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields["VmRSS"], 1), "anon_mb": round(fields["RssAnon"], 1),
            "file_mb": round(fields["RssFile"], 1), "peak_mb": round(fields["VmHWM"], 1)}


def build(jobs: int, now_ms: int, full: bool) -> Any:
    """A state machine with `jobs` hourly jobs whose next tick is after `now_ms`."""
    from scheduler.commands import PutJob
    from scheduler.machine import SchedulerStateMachine
    from scheduler.results import Outcome

    m = SchedulerStateMachine()
    for i in range(jobs):
        # Created (RUNS if full) hours and a phase ago: RUNS ticks (or none) are behind,
        # the next one is ahead.
        created = now_ms - (RUNS if full else 0) * HOUR_MS - (i * (HOUR_MS - MARGIN_MS) // jobs) - 1
        result = m.apply_command(PutJob(now_ms=created, job={"name": f"job-{i}",
                                                             "schedule": "@every 1h"}))
        assert result.ok, result
    if full:
        for name, job in m.state.jobs.items():
            tick = job.next_tick_ms
            for _ in range(RUNS):
                assert tick is not None
                job.note(Outcome(name, "fired", tick, tick, 1, "", "schedule", 1))
                job.note_execution(tick, 0, "succeeded", 1, 16)
                job.cursor_ms, job.fired = tick, job.fired + 1
                job.last_success_ms = tick + 1000
                tick = job.schedule.next_after(tick)
            assert tick is not None and tick > now_ms
            job.next_tick_ms = tick
        m.state.totals["fired"] = RUNS * jobs
    return m


def _planner(state: Any, now_ms: int) -> Any:
    from scheduler.planner import Planner, PlannerPolicy

    planner = Planner(state, PlannerPolicy(), now_ms)
    assert not planner.plan(now_ms)  # nothing is due: a server at rest
    return planner


def measure_in_process(scenario: str, jobs: int, snapshot_file: str) -> dict[str, Any]:
    """One scenario in this (fresh) process."""
    import scheduler.machine  # noqa: F401  (the imports are part of the baseline)
    import scheduler.planner  # noqa: F401
    from scheduler.state import SchedulerState

    gc.collect()
    baseline = status_mb()["rss_mb"]
    now_ms = int(time.time() * 1000)
    if scenario == "restored":
        data = Path(snapshot_file).read_bytes()
        state = SchedulerState.restore(data)
        del data
        keep: Any = (state, _planner(state, now_ms))
    else:
        machine = build(jobs, now_ms, full=scenario == "full")
        keep = (machine, _planner(machine.state, now_ms))
        if scenario == "full" and snapshot_file:
            Path(snapshot_file).write_bytes(machine.state.snapshot())
    gc.collect()
    out = {"scenario": scenario, "jobs": jobs, "baseline_mb": baseline, **status_mb()}
    del keep
    return out


def measure_server(jobs: int, directory: Path) -> dict[str, Any]:
    """A real server process on a data directory whose snapshot holds the `full` state."""
    from raft.lmdb_storage import LmdbStorage
    from raft.messages import Configuration, HardState, Snapshot, SnapshotMeta
    from scheduler.server.machine import KVPart, ServerMachine
    from scheduler.server.members import MembersPart
    from scheduler.server.testing import ProcessCluster, poll

    cluster = ProcessCluster(directory, count=1)
    node = cluster.plan.nodes[0]
    now_ms = int(time.time() * 1000)
    sched = build(jobs, now_ms, full=True)
    index = jobs + 1
    sched.state.applied_index = index
    machine = ServerMachine({"kv": KVPart(), "sched": sched,
                             "members": MembersPart(lambda *_: None)})
    machine.applied = index
    data = machine.snapshot()
    del machine, sched
    gc.collect()
    config = Configuration(voters=frozenset({node.node_id}), learners=frozenset())
    storage = LmdbStorage.open(node.data_dir / "raft", cluster_id="raftcron",
                               node_id=node.node_id)
    try:
        storage.save(HardState(term=1, vote=node.node_id, commit=index), [],
                     Snapshot(meta=SnapshotMeta(index=index, term=1, config=config), data=data))
    finally:
        storage.close()
    snapshot_mb = len(data) / 2**20
    del data
    try:
        started = time.monotonic()
        cluster.start()
        cluster.wait_leader(timeout_s=300)
        pid = cluster.processes[node.node_id].pid

        def settled() -> dict[str, float] | None:
            status = cluster.status(node.node_id)
            if status is None or status["applied_index"] < status["commit_index"]:
                return None
            first = status_mb(pid)
            time.sleep(1.0)  # a sampling interval, not a wait for a condition
            second = status_mb(pid)
            steady = abs(second["rss_mb"] - first["rss_mb"]) < 0.01 * first["rss_mb"]
            return second if steady else None

        sample = poll(settled, timeout_s=120, interval_s=0.5, what="a steady server RSS")
        return {"scenario": "server", "jobs": jobs, "snapshot_mb": round(snapshot_mb, 1),
                "ready_s": round(time.monotonic() - started, 1), **sample}
    finally:
        cluster.close()


def run(jobs: int, scenarios: list[str]) -> list[dict[str, Any]]:
    """Each scenario in its own process (so one's garbage is not the next one's RSS)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="planner-memory-") as tmp:
        snapshot_file = str(Path(tmp) / "full.snapshot")
        wanted = list(scenarios)
        if "restored" in wanted and "full" not in wanted:
            wanted.insert(0, "full")
        for scenario in wanted:
            done = subprocess.run([sys.executable, __file__, "--jobs", str(jobs), "--one", scenario,
                                   "--snapshot-file", snapshot_file, "--dir", tmp],
                                  capture_output=True, text=True, timeout=1800, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{scenario}: {done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            if scenario in scenarios:
                if "baseline_mb" in row:  # what the jobs add to the process, per job
                    row["per_job_kb"] = round((row["rss_mb"] - row["baseline_mb"]) * 1024 / jobs, 2)
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--one", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-file", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one == "server":
        print(json.dumps(measure_server(args.jobs, Path(args.dir) / "server")))
    elif args.one:
        print(json.dumps(measure_in_process(args.one, args.jobs, args.snapshot_file)))
    else:
        print(json.dumps(run(args.jobs, args.scenarios.split(",")), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
