"""`raftcron bench sim`: simulated seconds per wall second, and raw event dispatch vs SimPy.

Ours, for a 5-server cluster (150-300 ms election timeouts, 50 ms heartbeats, 1-5 ms
latency, no faults): idle; with 100 proposals/s; with 1,000 scheduler jobs firing every second
(SimOptions.jobs: the scheduler's planner, state machine and agents in the simulator). Each
scenario reports
`sim_speedup` (simulated s / wall s), `events_s` (heap events handled per wall second) and
`messages_s` (Raft messages per wall second).

The peer, SimPy, has no Raft: it gets the same traffic as our idle cluster, as idiomatic SimPy
processes. A leader process wakes every 50 ms and sends a heartbeat to each of four followers;
each message is a `timeout(latency)` whose callback puts it in the receiver's `Store`; each
follower process waits for `inbox.get() | timeout(election)` and answers. That is the same
message count per simulated second as our idle cluster (checked: `messages` in both samples),
so the idle ratio reads "what all of Raft, the safety observer and the trace cost on top of
plain event dispatch".

The same two cluster scenarios also run on the mypyc-compiled build of the same sources
(`sim/native.py`; built here if missing, ~20 s of gcc, cached by source digest) in a
subprocess, as `idle_native` and `proposals_100_native`; their runs must give the same
`trace_sha256` as the interpreted ones (checked here, every repeat). That build is what
`raftcron sim` runs by default (made in the background on first use), so the targets apply to
it; the interpreted figures are listed beside them. Without mypyc or a C compiler the compiled
side is skipped with a note, and the targets apply to the sources.

The full Figure 16 reproduction (papers/raft_election/fig16.py, 11 configurations) is timed
once per invocation, on the same default build (`--quick` runs 3 trials per configuration).
"""

from __future__ import annotations

import importlib
import json
import random
import subprocess
import sys
import time
from typing import Any

from papers.perf.harness import BenchContext, BenchResult, Sample, Target, alternate, summarise
from papers.perf.peers import python_module

NODES = 5
HEARTBEAT_MS = 50.0
ELECTION_MS = (150.0, 300.0)
LATENCY_MS = (1.0, 5.0)
JOBS = 1000


def run(ctx: BenchContext) -> BenchResult:
    idle_s, busy_s, jobs_s = (5.0, 2.0, 2.0) if ctx.quick else (60.0, 20.0, 10.0)
    settings: dict[str, Any] = {
        "nodes": NODES, "election_timeout_ms": list(ELECTION_MS), "heartbeat_ms": HEARTBEAT_MS,
        "latency_ms": list(LATENCY_MS), "faults": "none", "idle_sim_seconds": idle_s,
        "proposals_sim_seconds": busy_s, "proposals_per_second": 100, "jobs": JOBS,
        "jobs_schedule": "@every 1s", "jobs_sim_seconds": jobs_s,
    }
    result = BenchResult("sim", settings, ours={})
    jobs_side = _jobs_scenario()
    if jobs_side is None:
        result.notes.append("jobs_1000 not run: the simulator has no scheduler workload yet")

    native_path = _native_build(ctx, result)

    def ours() -> Sample:
        sample = _cluster_scenarios(idle_s, busy_s)
        if native_path is not None:
            native: dict[str, Sample] = _on_build(native_path, "_cluster_scenarios", idle_s, busy_s)
            for name in ("idle", "proposals_100"):
                trace = native[name].pop("trace_sha256")
                assert trace == sample[name]["trace_sha256"], f"{name}: the compiled build ran another story"
                sample[name + "_native"] = native[name]
        for scenario in sample.values():
            scenario.pop("trace_sha256", None)
        if jobs_side is not None:
            sample["jobs_1000"] = jobs_side(jobs_s)
        return sample

    sides = {"ours": ours}
    simpy, why = python_module("simpy", "simpy", install=ctx.install)
    if simpy is not None:
        sides["simpy"] = lambda: {"idle": _simpy_pingpong(simpy, idle_s)}
        settings["simpy_version"] = getattr(simpy, "__version__", "?")
    else:
        result.skipped["simpy"] = why
    samples = alternate(ctx.repeats, sides, ctx.say)
    result.repeats = ctx.repeats
    result.ours = summarise(samples["ours"])
    if "simpy" in samples:
        result.peers["simpy"] = summarise(samples["simpy"])
        result.strongest = "simpy"
    fig16 = _fig16(ctx, native_path)
    if fig16 is not None:
        result.ours["fig16"] = fig16
    _targets(result, ctx)
    return result


# ---- ours ------------------------------------------------------------------------------------
def _ours(seconds: float, rate: float) -> Sample:
    from sim.runner import SimOptions, run_simulation

    # "counter": blind proposals at a fixed rate, as the "100 proposals/s" means (the
    # default kv workload adds clients, reads and a linearizability check at the end).
    options = SimOptions(nodes=NODES, seconds=seconds, seed=1, faults=set(), proposals_per_second=rate,
                         workload="counter")
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = run_simulation(options)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert not summary["safety_violations"], summary["safety_violations"]
    return {
        "sim_speedup": seconds / wall,
        "sim_speedup_cpu": seconds / cpu,  # per CPU second: steadier on a shared machine
        "events_s": summary["events"] / wall,
        "messages_s": summary["messages_sent"] / wall,
        "messages": summary["messages_sent"],
        "commits": summary["commits"],
        "trace_sha256": summary["trace_sha256"],  # compared with the compiled run, then dropped
    }


def _native_build(ctx: BenchContext, result: BenchResult) -> Any:
    """The compiled build's directory (built now if missing), or None with a note."""
    try:
        from sim import native

        if ctx.quick and native.build_path() is None:
            result.notes.append("compiled build skipped: --quick does not compile (python -m sim.native build)")
            return None
        ctx.say("compiled build (sim/native.py): " + ("cached" if native.build_path() else "building, ~20 s"))
        path = native.build()
    except Exception as error:  # noqa: BLE001 - no mypyc or no compiler: reported, never fatal
        result.notes.append(f"compiled build skipped: {type(error).__name__}: {str(error)[:200]}")
        return None
    result.settings["native_modules"] = list(native.MODULES)
    return path


def _cluster_scenarios(idle_s: float, busy_s: float) -> dict[str, Sample]:
    return {"idle": _ours(idle_s, 0.0), "proposals_100": _ours(busy_s, 100.0)}


_ON_BUILD = """
import json, sys
sys.path.insert(0, sys.argv[1])  # before anything imports raft or sim
import raft.node
assert raft.node.__file__.endswith(".so"), raft.node.__file__
from papers.perf import suite_sim
print(json.dumps(getattr(suite_sim, sys.argv[2])(*json.loads(sys.argv[3]))))
"""


def _on_build(path: Any, function: str, *args: Any) -> Any:
    """`function(*args)` of this module in a subprocess that imports `raft` and `sim` from the
    compiled build at `path`, and its JSON result."""
    from sim import native

    done = subprocess.run([sys.executable, "-c", _ON_BUILD, str(path), function, json.dumps(args)],
                          capture_output=True, text=True, check=True, cwd=str(native.ROOT))
    return json.loads(done.stdout)


def _jobs_scenario() -> Any:
    """1,000 `@every 1s` jobs on the simulated scheduler (SimOptions.jobs, sim/scheduler_world.py),
    or None while the simulator has no such option. The wall time includes building the world."""
    import dataclasses

    from sim.runner import SimOptions, run_simulation

    if "jobs" not in {spec.name for spec in dataclasses.fields(SimOptions)}:
        return None
    jobs = [{"name": f"job-{i}", "schedule": "@every 1s"} for i in range(JOBS)]

    def side(seconds: float) -> Sample:
        options = SimOptions(nodes=NODES, seconds=seconds, seed=1, faults=set(), proposals_per_second=0.0,
                             workload="counter", jobs=jobs)
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = run_simulation(options)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        return {"sim_speedup": seconds / wall, "sim_speedup_cpu": seconds / cpu,
                "events_s": summary["events"] / wall, "fires_proposed": summary.get("fires_proposed", 0),
                "ticks_fired": summary.get("ticks_fired", 0)}

    return side


# ---- the peer: SimPy ping-pong ------------------------------------------------------------------
def _simpy_pingpong(simpy: Any, seconds: float) -> Sample:
    env = simpy.Environment()
    rng = random.Random(1)
    inboxes = {name: simpy.Store(env) for name in range(NODES)}
    sent = [0]

    def send(dst: int, message: tuple[str, int]) -> None:
        sent[0] += 1
        wire = env.timeout(rng.uniform(*LATENCY_MS))
        wire.callbacks.append(lambda _event: inboxes[dst].put(message))

    def leader() -> Any:
        while True:
            for follower in range(1, NODES):
                send(follower, ("ping", 0))
            yield env.timeout(HEARTBEAT_MS)

    def leader_inbox() -> Any:
        while True:
            yield inboxes[0].get()

    def follower(me: int) -> Any:
        while True:
            get = inboxes[me].get()
            outcome = yield get | env.timeout(rng.uniform(*ELECTION_MS))
            if get in outcome:
                send(0, ("pong", me))
            else:
                get.cancel()  # an election timeout: a real node would campaign; none fires here

    env.process(leader())
    env.process(leader_inbox())
    for me in range(1, NODES):
        env.process(follower(me))
    end = seconds * 1000.0
    steps = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    while env.peek() <= end:
        env.step()
        steps += 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"sim_speedup": seconds / wall, "sim_speedup_cpu": seconds / cpu, "events_s": steps / wall,
            "messages_s": sent[0] / wall, "messages": sent[0]}


# ---- Figure 16 ----------------------------------------------------------------------------------
def _fig16(ctx: BenchContext, native_path: Any) -> Sample | None:
    """Time papers/raft_election/fig16.py's `run` once, at its defaults (the paper's trial
    counts) or 3 trials a line with --quick, on the build `raftcron paper fig16` runs by default:
    the compiled one when there is one. Any failure is a note, not a crash: that script is a
    colleague's and may be mid-change."""
    trials = 3 if ctx.quick else 0
    try:
        sample = _time_fig16(trials) if native_path is None else _on_build(native_path, "_time_fig16", trials)
    except Exception as error:  # noqa: BLE001 - reported, never fatal
        detail = getattr(error, "stderr", "") or ""
        ctx.say(f"figure 16 not timed: {type(error).__name__}: {error} {detail[-500:]}")
        return None
    sample["build"] = "interpreted" if native_path is None else "native"
    ctx.say(f"figure 16: {sample['configurations']} configurations, {sample['trials']} trials, "
            f"{sample['wall_s']:.1f} s ({sample['build']} build)")
    return sample


def _time_fig16(trials: int) -> Sample:
    """One timed Figure 16 run with 2 workers; `trials` > 0 overrides the paper's counts."""
    fig16 = importlib.import_module("papers.raft_election.fig16")
    options = fig16.Fig16Options(workers=2)
    if trials:
        options.trials = trials
    configs = len(options.configs)
    trials_for = getattr(options, "trials_for", None)
    total = sum(trials_for(c) for c in options.configs) if trials_for else configs * options.trials
    started = time.perf_counter()
    fig16.run(options)
    return {"wall_s": time.perf_counter() - started, "configurations": configs, "trials": total}


def _targets(result: BenchResult, ctx: BenchContext) -> None:
    """The targets apply to the build `raftcron sim` runs by default: the compiled one when this
    machine can make it (made in the background on first use), else the sources. The other
    build's figures are listed beside them, without a target."""
    ours = result.ours
    compiled = "idle_native" in ours
    default, other = ("_native", "") if compiled else ("", "_native")
    note = ("the default build: compiled by mypyc from the same sources (sim/native.py), made on first use; "
            "same traces" if compiled else "the default build here: the sources (no compiled build)")
    result.targets.append(Target("idle: simulated s per wall s", ours["idle" + default]["sim_speedup"],
                                 1000.0, ">=", note))
    result.targets.append(Target("100 proposals/s: simulated s per wall s",
                                 ours["proposals_100" + default]["sim_speedup"], 200.0, ">=", note))
    if compiled:
        note = "the Python sources (--build interpreted), for reference"
        for name, label in (("idle", "idle"), ("proposals_100", "100 proposals/s")):
            result.targets.append(Target(f"{label}, interpreted: simulated s per wall s",
                                         ours[name + other]["sim_speedup"], None, ">=", note))
    fig16 = ours.get("fig16")
    if fig16 is not None:
        note = f"{fig16['build']} build" + ("; quick: 3 trials per configuration" if ctx.quick else "")
        result.targets.append(Target("Figure 16 reproduction, wall seconds", fig16["wall_s"], 120.0, "<=", note))
