"""Planner benchmark: fires per second with 1k, 10k and 100k jobs, `@every` and cron.

    python papers/perf/bench_planner.py                 # the full table, as JSON
    python papers/perf/bench_planner.py --jobs 1000 --kinds every --fires 20000

What is measured, in CPU time of this process (`time.process_time`, so other load on the
machine does not inflate it), on one core, without Raft: a leader's planner rounds every 100 ms of
simulated time over jobs whose ticks are spread evenly (every job ticks once per 10 s), and
the state machine applying the resulting entries, as every replica would. Attempts are
finished at once by a pretend agent (not timed), so the live set stays small, as it does
when runs take less than the period.

- `planner`: `Planner.plan` plus `observe` of the applied effects (the leader-only work);
- `apply`: msgpack decoding and `apply` of the entries (what every replica pays);
- `end_to_end`: both, plus encoding: the CPU cost of a fire on the leader, minus Raft.

Targets (the issue): planner >= 20k fires/s for @every, >= 5k fires/s for cron, and a cost
per fire that stays flat from 1k to 100k jobs (the heap makes a tick O(log jobs)).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scheduler.commands import Batch, Finish, PutJob, RegisterNode, encode_command  # noqa: E402
from scheduler.machine import SchedulerStateMachine  # noqa: E402
from scheduler.planner import AgentInfo, Planner, PlannerPolicy  # noqa: E402
from scheduler.results import Lease  # noqa: E402

PERIOD_MS = 10_000
ROUND_MS = 100
NODES = 8
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
AGENT = AgentInfo(tags={"role": "worker"}, tokens=10**9, reserved_tokens=0)


def build(jobs: int, kind: str) -> SchedulerStateMachine:
    """A state machine with `jobs` jobs ticking once per 10 s, phases spread evenly."""
    m = SchedulerStateMachine()
    for i in range(NODES):
        m.apply_command(RegisterNode(now_ms=START_MS, node=f"n{i}", tags=AGENT.tags,
                                     tokens=AGENT.tokens, reserved_tokens=0))
    for i in range(jobs):
        if kind == "every":
            spec, now = "@every 10s", START_MS + i * PERIOD_MS // jobs
        else:
            spec, now = f"{i % 10}/10 * * * * *", START_MS
        result = m.apply_command(PutJob(now_ms=now, job={"name": f"job-{i}", "schedule": spec}))
        assert result.ok, result
    return m


def run(jobs: int, kind: str, fires_target: int) -> dict[str, Any]:
    m = build(jobs, kind)
    gc.collect()
    gc.freeze()  # the loaded jobs are long-lived, as in a server after restoring its state
    planner = Planner(m.state, PlannerPolicy(), START_MS)
    span_ms = max(PERIOD_MS, fires_target * PERIOD_MS // jobs)
    planner_s = apply_s = encode_s = 0.0
    fires = 0
    for now in range(START_MS + PERIOD_MS, START_MS + PERIOD_MS + span_ms, ROUND_MS):
        for i in range(NODES):
            planner.heard(f"n{i}", now, AGENT)
        t0 = time.process_time()
        entries = planner.plan(now)
        t1 = time.process_time()
        blobs = [encode_command(entry) for entry in entries]
        t2 = time.process_time()
        results = [m.apply(m.state.applied_index + 1, blob) for blob in blobs]
        t3 = time.process_time()
        effects = [e for r in results for e in r.all_effects()]
        planner.observe(effects)
        t4 = time.process_time()
        planner_s += (t1 - t0) + (t4 - t3)
        encode_s += t2 - t1
        apply_s += t3 - t2
        fires += sum(1 for r in results for c in r.children for f in c.children if f.ok)
        _finish_all(m, effects, now)
    assert m.state.totals["missed"] == 0 and m.state.totals["skipped"] == 0
    gc.unfreeze()
    return {
        "jobs": jobs, "schedule": kind, "fires": fires, "simulated_s": span_ms / 1000,
        "planner_fires_per_s": round(fires / planner_s),
        "apply_fires_per_s": round(fires / apply_s),
        "end_to_end_fires_per_s": round(fires / (planner_s + encode_s + apply_s)),
        "planner_us_per_fire": round(planner_s / fires * 1e6, 2),
        "end_to_end_us_per_fire": round((planner_s + encode_s + apply_s) / fires * 1e6, 2),
    }


def _finish_all(m: SchedulerStateMachine, effects: list[Any], now: int) -> None:
    """The pretend agents: every attempt that was leased succeeds at once (not timed)."""
    finishes = tuple(Finish(now_ms=now, key=e.key, node=e.node, ok=True) for e in effects
                     if isinstance(e, Lease) and e.node is not None and e.why == "fire")
    if finishes:
        m.apply_command(Batch(commands=finishes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1000,10000,100000")
    parser.add_argument("--kinds", default="every,cron")
    parser.add_argument("--fires", type=int, default=100_000,
                        help="fires to measure per configuration (at least one per job)")
    args = parser.parse_args(argv)
    results = [run(int(jobs), kind, args.fires) for kind in args.kinds.split(",")
               for jobs in args.jobs.split(",")]
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                      "round_ms": ROUND_MS, "period_ms": PERIOD_MS, "results": results},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
