"""The scheduler in the simulator: guarantees 2-4 under the faults the issue names, and the
teaching bug switches caught by the checkers.

Each scenario is a full simulated cluster (5 servers, each also an agent) on virtual time,
through `sim.runner.Runner`, as `raftcron sim --jobs` runs it. A scenario takes well under a
second of wall time.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from raftcron.cli import main
from scheduler.commands import PutJob
from sim.faults import FaultAction, FaultSchedule
from sim.runner import Runner, SimOptions
from sim.scheduler_world import WorldOptions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = json.loads((ROOT / "examples" / "jobs.json").read_text())
QUICK = {"executor": "sim", "executor_config": {"run_ms": [50, 200]}}
TICK = {"name": "tick", "schedule": "@every 1s", **QUICK}
HALF = {"name": "half", "schedule": "@every 500ms", **QUICK}
# One slot on a role=batch node (n4 or n5), longer than a lease: it must renew to survive.
LONG = {"name": "long", "schedule": "@every 30s", "tags": {"role": "batch:1"}, "retries": 2,
        "executor": "sim", "executor_config": {"run_ms": 20_000}}


def run(jobs: list[dict[str, Any]], *, seconds: float = 40.0, seed: int = 1,
        actions: list[FaultAction] | None = None, bugs: tuple[str, ...] = (),
        setup: Any = None, world: WorldOptions | None = None) -> tuple[dict[str, Any], Runner]:
    options = SimOptions(seconds=seconds, seed=seed, jobs=jobs, bugs=frozenset(bugs),
                         schedule=FaultSchedule(actions=actions or []),
                         scheduler=world or WorldOptions())
    runner = Runner(options)
    if setup is not None:
        setup(runner)
    return runner.run(), runner


def clean(summary: dict[str, Any]) -> None:
    for name in ("safety_violations", "exactly_once_violations", "liveness_violations",
                 "no_spof_violations"):
        assert summary[name] == [], (name, summary[name][:3])


def runs_of(runner: Runner, job: str) -> list[tuple[str, str, int]]:
    return [(e.node, e.kind, e.attempt[3]) for e in runner.world.ledger.events  # type: ignore[union-attr]
            if e.attempt[0] == job]


# ---- the examples, all faults ------------------------------------------------------------------


def test_the_example_jobs_keep_every_guarantee_under_random_faults() -> None:
    options = SimOptions(seconds=60, seed=3, jobs=EXAMPLES, faults={"crash", "partition",
                                                                     "pause", "skew", "loss"})
    runner = Runner(options)
    summary = runner.run()
    clean(summary)
    assert summary["ticks_due"] > 100 and summary["lost_ticks"] == 0
    assert summary["ticks_fired"] + summary["ticks_skipped"] + summary["ticks_missed"] == \
        summary["ticks_due"]
    assert summary["ticks_skipped"] > 0  # slow-forbid runs longer than its period
    pairs = {(node, tick) for node, kind, tick in
             ((e.node, e.kind, e.attempt[1]) for e in runner.world.ledger.events  # type: ignore[union-attr]
              if e.attempt[0] == "web-pair" and e.kind == "start")}
    assert {node for node, _ in pairs} <= {"n1", "n2", "n3"}  # role=web only
    assert any(e.attempt[0] == "verify-backup" for e in runner.world.ledger.events)  # type: ignore[union-attr]


def test_the_same_seed_gives_the_same_run() -> None:
    first, _ = run([TICK, LONG], seconds=20, seed=9)
    second, _ = run([TICK, LONG], seconds=20, seed=9)
    first.pop("wall_seconds"), second.pop("wall_seconds")
    for summary in (first, second):
        for key in ("events_per_second", "sim_speedup"):
            summary.pop(key, None)
    assert first == second


def test_pull_mode_nodes_claim_every_slot_and_each_runs_once() -> None:
    summary, runner = run([TICK, HALF], seconds=20, world=WorldOptions(pull_only=True))
    clean(summary)
    starts = [e for e in runner.world.ledger.events if e.kind == "start"]  # type: ignore[union-attr]
    assert len(starts) >= summary["ticks_fired"] - 2  # the last few may still wait for a claim
    assert summary["stale_proposals_rejected"].get("illegal_transition", 0) >= 0


def test_ephemeral_jobs_and_updates_keep_the_books_straight() -> None:
    once = {**QUICK, "name": "once", "schedule": "@every 2s", "ephemeral": True}

    def update_later(runner: Runner) -> None:
        def update() -> None:
            world = runner.world
            assert world is not None
            leader = runner.cluster.leader()
            assert leader is not None
            world.loops[leader].planner.submit(
                lambda now: PutJob(now_ms=now, job={**TICK, "schedule": "@every 700ms"}))

        runner.cluster.call_at(10_000.0, update)

    summary, runner = run([TICK, once], seconds=30, setup=update_later)
    clean(summary)
    world = runner.world
    assert world is not None
    assert [(t.name, t.until_ms is not None) for t in world.timelines()] == [
        ("tick", True), ("once", True), ("tick", False)]
    assert [kind for _, kind, _ in runs_of(runner, "once")] == ["start", "finish"]
    assert summary["ticks_due"] >= 9 + 24  # 1 s ticks until 10 s, then 0.7 s ticks to ~28 s


# ---- leader crashes ------------------------------------------------------------------------------


def crash_at_the_moment_of_firing(runner: Runner) -> None:
    """Crash the leader 1 ms after it proposed a fire (before any follower could apply it),
    every 2.5 s, and restart it 1.2 s later."""
    cluster, armed = runner.cluster, {"next": 3_000.0}

    def on_fire(node: str) -> None:
        if cluster.now >= armed["next"]:
            armed["next"] = cluster.now + 2_500.0
            cluster.call_at(cluster.now + 1.0, lambda: cluster.crash(node))
            cluster.call_at(cluster.now + 1_200.0, lambda: cluster.start(node))

    runner.world.on_fire_proposed = on_fire  # type: ignore[union-attr]


def test_a_leader_crash_at_the_moment_of_firing_never_fires_twice() -> None:
    summary, _ = run([TICK, HALF], seconds=20, setup=crash_at_the_moment_of_firing)
    clean(summary)
    assert len(summary["leaders"]) >= 5
    assert summary["stale_proposals_rejected"]["not_next_tick"] > 0  # re-proposed, rejected


def test_the_fire_twice_bug_is_caught() -> None:
    summary, _ = run([TICK, HALF], seconds=20, setup=crash_at_the_moment_of_firing,
                     bugs=("fire-twice",))
    assert summary["duplicate_fires"] > 0
    assert {v["kind"] for v in summary["exactly_once_violations"]} == {"duplicate_fire"}


def leader_crashes(seconds: float) -> list[FaultAction]:
    """Crash whoever leads every 3 s, just before a tick of TICK/HALF is due."""
    actions = []
    for at in range(3_150, int(seconds * 1000) - 5_000, 3_000):
        actions += [FaultAction(at_ms=float(at), kind="crash", node="leader"),
                    FaultAction(at_ms=at + 1_500.0, kind="restart", node="crashed")]
    return actions


@pytest.mark.parametrize("bugs", [(), ("leader-clock-trust",)])
def test_a_new_leader_continues_from_the_cursor_not_from_its_clock(bugs: tuple[str, ...]) -> None:
    summary, _ = run([TICK, HALF], seconds=30, actions=leader_crashes(30), bugs=bugs)
    if not bugs:
        clean(summary)
        assert summary["ticks_fired"] == summary["ticks_due"]
        assert summary["max_fire_delay_s"] < summary["fire_bound_s"]
        return
    assert summary["lost_ticks"] > 0  # Dkron #1210: the run due at failover is lost
    assert {v["kind"] for v in summary["liveness_violations"]} == {"lost_tick"}
    assert {v["kind"] for v in summary["no_spof_violations"]} == {"not_fired"}


# ---- leases: partitions, skew, agent crashes -------------------------------------------------------


def act_on_the_long_run(action: Any) -> Any:
    """Once LONG's first attempt runs, call action(runner, holder, leader) 1 s later. The
    leader is n1 (a transfer at 10 s), so it never holds LONG (role=batch nodes do)."""
    def setup(runner: Runner) -> None:
        cluster = runner.cluster

        def holder() -> str | None:
            starts = [e.node for e in runner.world.ledger.events  # type: ignore[union-attr]
                      if e.kind == "start" and e.attempt[0] == "long"]
            return starts[0] if starts else None

        def arm() -> None:
            node = holder()
            if node is None:
                cluster.call_at(cluster.now + 100.0, arm)
                return
            leader = cluster.leader()
            assert leader == "n1" and node in ("n4", "n5")
            cluster.call_at(cluster.now + 1_000.0, lambda: action(runner, node, leader))

        cluster.call_at(20_000.0, arm)

    return setup


TRANSFER = [FaultAction(at_ms=10_000.0, kind="transfer", node="n1")]


def isolate(runner: Runner, node: str, ms: float = 25_000.0) -> None:
    network = runner.cluster.network
    network.partition({node}, set(runner.cluster.ids) - {node})
    runner.cluster.call_at(runner.cluster.now + ms, network.heal)


def test_an_agent_cut_off_from_the_leader_stops_and_the_retry_runs_elsewhere() -> None:
    summary, runner = run([TICK, LONG], seconds=80, actions=TRANSFER,
                          setup=act_on_the_long_run(lambda r, node, _l: isolate(r, node)))
    clean(summary)
    events = runs_of(runner, "long")
    holder = events[0][0]
    other = "n5" if holder == "n4" else "n4"
    assert events[:3] == [(holder, "start", 1), (holder, "abandon", 1), (other, "start", 2)]
    assert (other, "finish", 2) in events


def test_cutting_off_the_leader_moves_leadership_and_the_run_keeps_renewing() -> None:
    summary, runner = run([TICK, LONG], seconds=80, actions=TRANSFER,
                          setup=act_on_the_long_run(lambda r, _n, leader: isolate(r, leader)))
    clean(summary)
    events = runs_of(runner, "long")
    assert [kind for _, kind, _ in events[:2]] == ["start", "finish"]  # renewed by the new leader
    assert any(leader["node"] != "n1" and leader["elected_at"] > 20 for leader in
               summary["leaders"])


def skew_leader_and_isolate(runner: Runner, node: str, leader: str) -> None:
    runner.cluster.jump_clock(leader, 3_000.0)  # the leader's clock now runs 3 s ahead
    isolate(runner, node)


@pytest.mark.parametrize("bugs", [(), ("lease-no-drift",)])
def test_clock_skew_on_the_leader_needs_the_drift_margin(bugs: tuple[str, ...]) -> None:
    summary, runner = run([TICK, LONG], seconds=80, actions=TRANSFER, bugs=bugs,
                          setup=act_on_the_long_run(skew_leader_and_isolate))
    if not bugs:
        clean(summary)
        assert summary["max_clock_offset_ms"] >= 3_000
        return
    # Without D the leader (3 s ahead) expires the lease before the agent stops: overlap.
    assert summary["overlapping_attempts"] == 1
    violation = summary["exactly_once_violations"][0]
    assert violation["kind"] == "overlapping_attempts" and violation["job"] == "long"


def test_an_agent_crash_mid_run_is_retried_after_the_lease_and_never_restarted() -> None:
    def crash(runner: Runner, node: str, _leader: str) -> None:
        runner.cluster.crash(node)
        runner.cluster.call_at(runner.cluster.now + 5_000.0, lambda: runner.cluster.start(node))

    summary, runner = run([TICK, LONG], seconds=80, actions=TRANSFER,
                          setup=act_on_the_long_run(crash))
    clean(summary)  # the restarted node replays the Fire but its journal stops a second start
    events = runs_of(runner, "long")
    assert [kind for _, kind, _ in events[:3]] == ["start", "killed", "start"]
    assert events[2][2] == 2
    kill, retry = [e.t_ms for e in runner.world.ledger.events  # type: ignore[union-attr]
                   if e.attempt[0] == "long"][1:3]
    lease = runner.world.lease  # type: ignore[union-attr]
    assert retry - kill > lease.lease_ms - 2_000  # not before the lease plus D ran out


def test_a_long_outage_is_one_missed_range_then_a_bounded_catch_up() -> None:
    jobs = [{**TICK, "grace_seconds": 5}, {**QUICK, "name": "cron", "schedule": "*/2 * * * * *",
                                           "grace_seconds": 3}]
    majority_down = [FaultAction(at_ms=at, kind=kind, node=node) for node in ("n1", "n2", "n3")
                     for at, kind in ((10_000.0, "crash"), (40_000.0, "restart"))]
    summary, runner = run(jobs, seconds=60, seed=2, actions=majority_down)
    clean(summary)  # no quorum for 30 s: the no-SPOF checker owes nothing for those ticks
    ranges = [o for o in runner.world.history.outcomes if o.count > 1]  # type: ignore[union-attr]
    assert sorted((o.job, o.outcome) for o in ranges) == [("cron", "missed"), ("tick", "missed")]
    assert sum(o.count for o in ranges) == summary["ticks_missed"] > 30
    back = min(o.t_ms for o in ranges)
    burst = [o for o in runner.world.history.outcomes  # type: ignore[union-attr]
             if o.outcome == "fired" and back <= o.t_ms < back + 1_000]
    assert len(burst) <= 5 + 2 + 2  # the ticks within grace, not 40 replayed ones


# ---- the command line ------------------------------------------------------------------------------


def test_raftcron_sim_jobs_prints_the_scheduler_figures() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["sim", "--jobs", str(ROOT / "examples" / "jobs.json"), "--seconds", "20",
                     "--faults", "all", "--seed", "4", "--json"])
    summary = json.loads(out.getvalue())
    assert code == 0
    for name in ("ticks_due", "ticks_fired", "ticks_skipped", "ticks_missed", "duplicate_fires",
                 "duplicate_starts", "overlapping_attempts", "lost_ticks", "max_fire_delay_s",
                 "p99_fire_delay_s", "exactly_once_violations", "no_spof_violations"):
        assert name in summary
    human = io.StringIO()
    with redirect_stdout(human):
        main(["sim", "--jobs", str(ROOT / "examples" / "jobs.json"), "--seconds", "10"])
    assert "ticks due" in human.getvalue()


def test_a_bad_jobs_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "jobs.json"
    bad.write_text(json.dumps([{"name": "x", "schedule": "61 * * * *"}]))
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["sim", "--jobs", str(bad)])
    assert code == 2 and "minute value 61" in err.getvalue()


def test_the_cli_knows_the_scheduler_bug_switches() -> None:
    from raftcron.cmd_sim import SIM_BUGS
    from scheduler.machine import SCHEDULER_BUGS

    assert SCHEDULER_BUGS <= SIM_BUGS
