"""No single point of failure, for ticks (DESIGN guarantee 4): Hypothesis draws whole fault
schedules that keep a majority of servers up and connected (crashes, pauses and cuts of the
rest, often right after leadership was moved onto the victim), and every tick of every job
must still be fired, not missed, and committed within the bound L of its due time.

The schedules are `test_no_spof_raft.core_preserving_runs`, so this is the same search the
Raft-level property runs, with the scheduler world on top (`raftcron sim --jobs`).
"""

from __future__ import annotations

from hypothesis import given, settings

from sim.runner import Runner
from test_no_spof_raft import ASYMMETRIC_FAULTS, CLEAN_FAULTS, CoreRun, core_preserving_runs

QUICK = {"executor": "sim", "executor_config": {"run_ms": [20, 200]}}
JOBS = [{"name": "every-second", "schedule": "@every 1s", **QUICK},
        {"name": "twice-a-second", "schedule": "@every 500ms", "concurrency": "forbid", **QUICK}]


def run_with_jobs(run: CoreRun) -> dict[str, object]:
    run.options.jobs = JOBS
    return Runner(run.options).run()


def check_every_tick_fired(run: CoreRun, summary: dict[str, object]) -> None:
    assert summary["safety_violations"] == []
    assert summary["exactly_once_violations"] == [], summary["exactly_once_violations"]
    assert summary["ticks_missed"] == 0 and summary["lost_ticks"] == 0, (run.core, summary["liveness_violations"])
    assert summary["ticks_due"] >= 2 * 6  # two jobs over an 8 s run: the property had ticks to judge


@settings(max_examples=settings().max_examples // 2 or 1)
@given(core_preserving_runs(CLEAN_FAULTS))
def test_with_a_majority_up_every_tick_fires_within_L(run: CoreRun) -> None:
    summary = run_with_jobs(run)
    check_every_tick_fired(run, summary)
    assert summary["no_spof_violations"] == [], (run.core, summary["no_spof_violations"][:3])


@settings(max_examples=settings().max_examples // 2 or 1)
@given(core_preserving_runs(CLEAN_FAULTS + ASYMMETRIC_FAULTS))
def test_a_leader_that_cannot_hear_delays_ticks_by_at_most_two_more_election_timeouts(run: CoreRun) -> None:
    """A one-way cut leaves a leader that still sends heartbeats, so its followers never time
    out: check-quorum deposes it one election timeout after it last heard a majority, and a
    successor needs up to one more (the Raft-level property measures the same 2E)."""
    summary = run_with_jobs(run)
    check_every_tick_fired(run, summary)
    allowed_ms = float(summary["fire_bound_s"]) * 1000 + 2 * run.options.timings.election_timeout_ms_max  # type: ignore[arg-type]
    assert float(summary["max_fire_delay_s"]) * 1000 <= allowed_ms, (run.core, summary["no_spof_violations"][:3])  # type: ignore[arg-type]
