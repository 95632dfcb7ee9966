"""`raftcron bench planner`: fires/s of the leader's planner plus the state machine, no network.

The measurement itself is papers/perf/bench_planner.py (its docstring says exactly what is
timed: planner rounds every 100 ms of simulated time, the replicated state machine applying the
entries, jobs ticking once per 10 s with phases spread evenly); this wrapper repeats it, takes
medians, and checks the issue's targets:

- planner >= 20k fires/s for `@every` jobs and >= 5k fires/s for cron expressions;
- cost per fire flat from 1k to 100k jobs (we call it flat when the 100k cost is within 1.5x
  of the 1k cost);
- memory with 100k jobs <= 300 MB RSS: a fresh Python process builds the state machine and a
  planner over 100k jobs and reports its peak RSS (what a server holds for them, without the
  HTTP and Raft parts, which do not grow with jobs).

No peer: no other cron planner exposes a comparable library entry point.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

from papers.perf.harness import BenchContext, BenchResult, Sample, Target, alternate, summarise

FLAT_FACTOR_MAX = 1.5
RSS_MB_MAX = 300.0

_RSS_SCRIPT = """
import json, resource, sys
from papers.perf.bench_planner import build, START_MS
from scheduler.planner import Planner, PlannerPolicy
machine = build(int(sys.argv[1]), sys.argv[2])
planner = Planner(machine.state, PlannerPolicy(), START_MS)
planner.plan(START_MS + 10_000)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(ctx: BenchContext) -> BenchResult:
    levels = (100, 1000) if ctx.quick else (1000, 10_000, 100_000)
    fires = 2000 if ctx.quick else 100_000
    settings: dict[str, Any] = {"jobs": list(levels), "fires_per_level": fires, "kinds": ["every", "cron"],
                                "round_ms": 100, "period_ms": 10_000}
    result = BenchResult("planner", settings, ours={})
    try:
        bench = importlib.import_module("papers.perf.bench_planner")
    except ImportError as error:
        result.notes.append(f"papers/perf/bench_planner.py not importable yet: {error}")
        return result

    def ours() -> Sample:
        sample: Sample = {}
        for jobs in levels:
            for kind in ("every", "cron"):
                row = bench.run(jobs, kind, max(fires, jobs))
                sample.setdefault(str(jobs), {})[kind] = {
                    "planner_fires_s": row["planner_fires_per_s"],
                    "end_to_end_fires_s": row["end_to_end_fires_per_s"],
                    "planner_us_per_fire": row["planner_us_per_fire"],
                    "end_to_end_us_per_fire": row["end_to_end_us_per_fire"],
                }
        return sample

    samples = alternate(ctx.repeats, {"ours": ours}, ctx.say)
    result.repeats = ctx.repeats
    result.ours = summarise(samples["ours"])
    rss_jobs = levels[-1]
    rss = _rss_mb(rss_jobs)
    if rss is not None:
        result.ours["memory"] = {"jobs": rss_jobs, "rss_mb": rss}
    _targets(result, levels, rss)
    return result


def _rss_mb(jobs: int) -> float | None:
    done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(jobs), "every"], capture_output=True,
                          text=True, timeout=900, check=False)
    if done.returncode != 0:
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rss_mb"])


def _targets(result: BenchResult, levels: tuple[int, ...], rss: float | None) -> None:
    ours = result.ours
    low, high = str(levels[0]), str(levels[-1])
    for kind, floor in (("every", 20_000.0), ("cron", 5_000.0)):
        worst = min(ours[str(jobs)][kind]["planner_fires_s"] for jobs in levels)
        result.targets.append(Target(f"planner fires/s, {kind} jobs (slowest level)", worst, floor, ">="))
        growth = ours[high][kind]["end_to_end_us_per_fire"] / ours[low][kind]["end_to_end_us_per_fire"]
        result.targets.append(Target(f"cost per fire {high} jobs / {low} jobs, {kind} (flat)", growth,
                                     FLAT_FACTOR_MAX, "<="))
    result.targets.append(Target(f"RSS with {levels[-1]} jobs, MB", rss, RSS_MB_MAX, "<="))
