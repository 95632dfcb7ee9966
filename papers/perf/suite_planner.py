"""`raftcron bench planner`: fires/s of the leader's planner plus the state machine, no network.

The measurement itself is papers/perf/bench_planner.py (its docstring says exactly what is
timed: planner rounds every 100 ms of simulated time, the replicated state machine applying the
entries, jobs ticking once per 10 s with phases spread evenly); this wrapper repeats it, takes
medians, and checks the issue's targets:

- planner >= 20k fires/s for `@every` jobs and >= 5k fires/s for cron expressions;
- cost per fire flat from 1k to 100k jobs (we call it flat when the 100k cost is within 1.5x
  of the 1k cost);
- server memory with 100k jobs <= 300 MB RSS, measured by papers/perf/planner_memory.py (its
  docstring says how): a real `raftcron server` process whose Raft snapshot holds 100k jobs
  that each ran 32 times (full histories), at rest; and, for the part this bench is about, a
  process holding only the state machine and planner for the same jobs (created, full,
  restored from the snapshot). Each is read from /proc/<pid>/status of its own process: the
  earlier `ru_maxrss` of a child carried the bench's own high-water mark over fork and exec.

No peer: no other cron planner exposes a comparable library entry point.
"""

from __future__ import annotations

import importlib
from typing import Any

from papers.perf.harness import BenchContext, BenchResult, Sample, Target, alternate, summarise

FLAT_FACTOR_MAX = 1.5
RSS_MB_MAX = 300.0

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
    rss, state_rss = _memory(result, rss_jobs, ctx)
    _targets(result, levels, rss, state_rss)
    return result


def _memory(result: BenchResult, jobs: int, ctx: BenchContext) -> tuple[float | None, float | None]:
    """The server's RSS and the state-machine-and-planner process's, both with full histories."""
    memory = importlib.import_module("papers.perf.planner_memory")
    rows: dict[str, Any] = {}
    for scenarios in (["created", "full", "restored"], ["server"]):
        try:
            rows.update((row["scenario"], row) for row in memory.run(jobs, scenarios))
        except (RuntimeError, TimeoutError, OSError) as error:
            result.notes.append(f"memory scenarios {scenarios} failed: {str(error)[-300:]}")
    ctx.say(f"memory with {jobs} jobs: " + ", ".join(f"{name} {row['rss_mb']} MB"
                                                      for name, row in rows.items()))
    server = rows.get("server", {}).get("rss_mb")
    state = rows.get("full", {}).get("rss_mb")
    result.ours["memory"] = {"jobs": jobs, "rss_mb": server if server is not None else state,
                             **{name: {k: v for k, v in row.items() if k not in ("scenario", "jobs")}
                                for name, row in rows.items()}}
    return server, state


def _targets(result: BenchResult, levels: tuple[int, ...], rss: float | None,
             state_rss: float | None) -> None:
    ours = result.ours
    low, high = str(levels[0]), str(levels[-1])
    for kind, floor in (("every", 20_000.0), ("cron", 5_000.0)):
        worst = min(ours[str(jobs)][kind]["planner_fires_s"] for jobs in levels)
        result.targets.append(Target(f"planner fires/s, {kind} jobs (slowest level)", worst, floor, ">="))
        growth = ours[high][kind]["end_to_end_us_per_fire"] / ours[low][kind]["end_to_end_us_per_fire"]
        result.targets.append(Target(f"cost per fire {high} jobs / {low} jobs, {kind} (flat)", growth,
                                     FLAT_FACTOR_MAX, "<="))
    result.targets.append(Target(f"server process RSS with {levels[-1]} jobs (full histories, at "
                                 "rest), MB", rss, RSS_MB_MAX, "<="))
    result.targets.append(Target(f"state machine + planner process RSS with {levels[-1]} jobs "
                                 "(full histories; no Raft, HTTP or snapshot), MB", state_rss,
                                 RSS_MB_MAX, "<="))
