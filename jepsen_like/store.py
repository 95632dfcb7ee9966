"""The store: one directory per run, and the analysis that turns it into `results.json`.

Layout of `STORE/<run>/` (`STORE/latest` points at the newest):

    run.json         what was run: options, seed, nodes, network and clock modes, time origins
    nemesis.json     the planned fault schedule, and what the nemesis actually did
    history.jsonl    client operations (and nemesis ops), Jepsen's shape (jepsen_like.history)
    nemesis.jsonl    the fault timeline in the simulator's trace schema (t, node, local, kind)
    nodes/<id>.log   each server's output; nodes/<id>.trace.jsonl its Raft events (--trace)
    ledger.jsonl     cron: every attempt's start and finish, written by the job itself
    outcomes.json    cron: the job's replicated outcomes as polled, and the final job view
    timeline.jsonl   all of the above on one true-time axis (ms since the run began)
    timeline.png     that timeline drawn by papers/plots/timeline.py
    results.json     every checker's verdict, with its evidence

Rules of this module:

1. `analyze(run_dir)` reads only the files above and is a pure function of them: checking a
   run again after it ended (or after someone edited its history) gives the verdict the
   files deserve. The runner calls the same function.
2. Times: the history uses the runner's monotonic clock (ns), the timeline true ms since
   the run began, the ledger and the cron checkers epoch ms; `run.json` holds both origins,
   taken at the same instant, to convert between them.
3. `valid` is False if any checker found a violation, "unknown" if one could not decide
   (a time limit, or nothing to judge), and True only when every checker passed.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Final

from jepsen_like.exactly_once import (
    FaultWindows, JobTimeline, LedgerEvent, OutcomeRecord, Violation, check_exactly_once,
    check_no_spof, check_tick_liveness,
)
from jepsen_like.history import NEMESIS_PROCESS, Event, HistoryError, load_history, pair_operations
from jepsen_like.linearizability import UNKNOWN, check
from jepsen_like.models import KVModel, ModelError

__all__ = ["RUN_FILES", "TimelineWriter", "analyze", "combine", "new_run_dir", "read_json",
           "write_json"]

RUN_FILES: Final = {
    "run": "run.json", "plan": "nemesis.json", "history": "history.jsonl",
    "timeline": "nemesis.jsonl", "ledger": "ledger.jsonl", "outcomes": "outcomes.json",
    "merged": "timeline.jsonl", "plot": "timeline.png", "results": "results.json",
}
FAILURES_KEPT_MAX: Final = 5
VIOLATIONS_KEPT_MAX: Final = 50
NODE_TRACE_LINES_MAX: Final = 500_000  # per node, when merging into the timeline


def new_run_dir(store: Path, name: str) -> Path:
    """`store/<name>` (suffixed if taken), and `store/latest` pointing at it."""
    store.mkdir(parents=True, exist_ok=True)
    run_dir = store / name
    for suffix in range(1, 1000):
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            run_dir = store / f"{name}-{suffix}"
    else:
        raise FileExistsError(f"{store / name}: too many runs with this name")
    latest = store / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(run_dir.name)
    except OSError:
        pass  # a convenience only (some filesystems have no symlinks)
    return run_dir


def write_json(path: Path, document: Any) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(document, indent=2, default=repr) + "\n")
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class TimelineWriter:
    """Fault and process events in the simulator's trace schema, one JSON line each:
    `t` true ms since the run began, `node` (or "net"), `local` that node's wall clock on the
    same axis (t plus its fake offset), `kind`, then the event's fields. Thread-safe, and
    flushed per line so a crashed runner still leaves its timeline."""

    def __init__(self, sink: IO[str], origin_ns: int, *,
                 echo: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._sink = sink
        self._origin_ns = origin_ns
        self._echo = echo
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []

    def now_ms(self) -> float:
        return (time.monotonic_ns() - self._origin_ns) / 1e6

    def write(self, node: str, kind: str, *, local_offset_ms: float = 0.0, **fields: Any) -> None:
        with self._lock:
            t = self.now_ms()
            record: dict[str, Any] = {"t": round(t, 3), "node": node,
                                      "local": round(t + local_offset_ms, 3), "kind": kind}
            record.update(fields)
            self._sink.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._sink.flush()
            self.records.append(record)
        if self._echo is not None:
            self._echo(record)


def combine(verdicts: Iterable[Any]) -> bool | str:
    """False beats unknown beats True."""
    combined: bool | str = True
    for verdict in verdicts:
        if verdict is False:
            return False
        if verdict is not True:
            combined = UNKNOWN
    return combined


# ---- analysis -----------------------------------------------------------------------------------

def analyze(run_dir: Path, *, check_time_limit_s: float = 60.0,
            plot: bool = True) -> dict[str, Any]:
    """Check a stored run and write its `results.json` (and timeline); returns the results."""
    run = read_json(run_dir / RUN_FILES["run"])
    timeline = _read_lines(run_dir / RUN_FILES["timeline"])
    results: dict[str, Any] = {
        "run": run_dir.name, "workload": run["workload"], "nodes": run["nodes"],
        "network": run["network"], "clock": run["clock"],
        "time_limit_s": run["options"]["time_limit_s"], "seed": run["options"]["seed"],
        "duration_s": run.get("duration_s"),
    }
    try:
        events = load_history(run_dir / RUN_FILES["history"])
    except (OSError, HistoryError) as error:
        events = []
        results["history_error"] = str(error)
    results["ops"] = op_counts(events)
    results["nemesis"] = nemesis_summary(run_dir, timeline)
    checkers: dict[str, Any] = {}
    if "history_error" in results:
        checkers["history"] = {"valid": False, "error": results["history_error"]}
    if run["workload"] == "register":
        checkers["linearizability"] = check_register(events, check_time_limit_s)
    else:
        checkers.update(check_cron(run_dir, run, timeline))
    results["checkers"] = checkers
    results["valid"] = combine(checker["valid"] for checker in checkers.values())
    if plot:
        results["plot"] = draw_timeline(run_dir, run, timeline)
    write_json(run_dir / RUN_FILES["results"], results)
    return results


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a crash; the rest still tells the story
    return records


def op_counts(events: Iterable[Event]) -> dict[str, Any]:
    """Completions by type and function, clients only (Jepsen's :ok/:fail/:info tallies)."""
    by_type: Counter[str] = Counter()
    by_f: dict[str, Counter[str]] = defaultdict(Counter)
    invokes = 0
    for event in events:
        if event.process == NEMESIS_PROCESS:
            continue
        if event.type == "invoke":
            invokes += 1
            continue
        by_type[event.type] += 1
        by_f[event.f][event.type] += 1
    return {"invoked": invokes, "ok": by_type["ok"], "fail": by_type["fail"],
            "info": by_type["info"], "open": invokes - sum(by_type.values()),
            "by_f": {f: dict(counts) for f, counts in sorted(by_f.items())}}


def nemesis_summary(run_dir: Path, timeline: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = Counter(record["kind"] for record in timeline)
    summary: dict[str, Any] = {"events": dict(sorted(kinds.items()))}
    plan_path = run_dir / RUN_FILES["plan"]
    if plan_path.exists():
        plan = read_json(plan_path)
        summary["planned"] = len(plan.get("steps", []))
        summary["done"] = plan.get("done", [])
        summary["errors"] = plan.get("errors", [])
    return summary


def check_register(events: list[Event], time_limit_s: float) -> dict[str, Any]:
    """Linearizability of the kv registers (one register per key, checked per key)."""
    try:
        operations = pair_operations(events)
        result = check(operations, KVModel(), time_limit_s=time_limit_s)
    except (HistoryError, ModelError) as error:
        return {"valid": False, "error": str(error)}
    document = result.to_json()
    bad = [part for part in document.pop("partitions") if part["valid"] is not True]
    document["failures"] = [part for part in bad if part["failure"] is not None][:FAILURES_KEPT_MAX]
    document["explanation"] = [line for failure in result.failures[:FAILURES_KEPT_MAX]
                               for line in failure.describe()]
    if not operations:
        document["valid"] = UNKNOWN
        document["explanation"] = ["no completed operation to check"]
    return document


# ---- cron: exactly once, liveness, no single point of failure ------------------------------------

def fault_windows(timeline: list[dict[str, Any]], origin_ms: float, end_ms: float) -> FaultWindows:
    """Down (crashed or paused) intervals and partitions from the timeline, in epoch ms."""
    windows = FaultWindows()
    since: dict[tuple[str, str], float] = {}
    cut: tuple[float, list[list[str]]] | None = None
    for record in sorted(timeline, key=lambda r: r["t"]):
        t, node, kind = origin_ms + record["t"], record["node"], record["kind"]
        if kind in ("crash", "pause"):
            since.setdefault((node, kind), t)
        elif kind in ("start", "resume"):
            opened = since.pop((node, "crash" if kind == "start" else "pause"), None)
            if opened is not None:
                windows.down.append((node, opened, t))
        elif kind == "partition":
            if cut is not None:
                windows.partitions.append((cut[0], t, cut[1]))
            cut = (t, record.get("sides", []))
        elif kind == "heal" and cut is not None:
            windows.partitions.append((cut[0], t, cut[1]))
            cut = None
    windows.down.extend((node, opened, end_ms) for (node, _), opened in since.items())
    if cut is not None:
        windows.partitions.append((cut[0], end_ms, cut[1]))
    return windows


def check_cron(run_dir: Path, run: dict[str, Any],
               timeline: list[dict[str, Any]]) -> dict[str, Any]:
    from jepsen_like.clients import read_ledger  # late: clients imports httpx and trio
    from scheduler.schedule import ScheduleError, parse_schedule

    cron = run["cron"]
    path = run_dir / RUN_FILES["outcomes"]
    stored = read_json(path) if path.exists() else {}
    ledger, problems = read_ledger(run_dir / RUN_FILES["ledger"])
    items = [item for item in stored.get("outcomes", []) if item.get("trigger") == "schedule"]
    view = stored.get("final_view") or {}
    anchor_ms = view.get("anchor_ms", cron.get("anchor_ms"))
    checkers = {"exactly_once": _exactly_once(_records(items, ledger, "seen"), ledger, problems)}
    if anchor_ms is None:
        checkers["liveness"] = {"valid": UNKNOWN,
                                "error": "the job was never read back: no anchor to judge by"}
        return checkers
    try:
        schedule = parse_schedule(cron["schedule"], anchor_ms=anchor_ms)
    except ScheduleError as error:
        checkers["liveness"] = {"valid": False, "error": f"schedule: {error}"}
        return checkers
    job = JobTimeline(cron["job"], schedule, anchor_ms)
    horizon_ms = float(stored.get("last_poll_ms") or run["t0_unix_ms"])
    bound_ms = float(cron["bound_ms"])
    seen = _records(items, ledger, "seen")
    checkers["liveness"] = _liveness(job, seen, stored, horizon_ms, bound_ms)
    checkers["no_spof"] = _no_spof(job, items, ledger, run, timeline, horizon_ms, bound_ms)
    checkers["exactly_once"]["execution_lag_ms"] = execution_lag(ledger)
    return checkers


def _first_starts(ledger: list[LedgerEvent]) -> dict[tuple[str, int], float]:
    first: dict[tuple[str, int], float] = {}
    for event in ledger:
        if event.kind == "start":
            key = (event.attempt[0], event.attempt[1])
            first[key] = min(first.get(key, event.t_ms), event.t_ms)
    return first


def _records(items: list[dict[str, Any]], ledger: list[LedgerEvent],
             when: str) -> list[OutcomeRecord]:
    """Outcome records for the checkers, `t_ms` being when the outcome was committed as far
    as the evidence shows. It lies between `after_ms` (a poll that did not see it yet) and
    `seen_ms` (a poll that did, or the first attempt's start in the ledger, if earlier).
    With `when="proven"`, t_ms is the tick itself unless the evidence puts the commit for
    certain after it (then the earliest possible time) or before it (the latest possible),
    so a late or early verdict is never a guess."""
    starts = _first_starts(ledger)
    records = []
    for position, item in enumerate(items):
        tick = int(item["first_ms"])
        upper = min(float(item.get("seen_ms", tick)), starts.get((item["job"], tick), math.inf))
        lower = float(item.get("after_ms", -math.inf))
        t_ms = upper
        if when == "proven":
            t_ms = lower if lower > tick else upper if upper < tick else float(tick)
        records.append(OutcomeRecord(item["job"], item["outcome"], tick, int(item["last_ms"]),
                                     int(item.get("count", 1)), item.get("trigger", "schedule"),
                                     position, t_ms))
    return records


def execution_lag(ledger: list[LedgerEvent]) -> dict[str, Any]:
    """How long after its tick each tick's first attempt started (true time): the delay a job
    owner sees. Not a verdict, evidence: a tick dispatched to a dead node starts late."""
    lags = sorted((start - tick, job, tick) for (job, tick), start in _first_starts(ledger).items())
    if not lags:
        return {"count": 0}
    values = [lag for lag, _, _ in lags]
    return {"count": len(values), "p50": round(values[len(values) // 2], 1),
            "max": round(values[-1], 1),
            "slowest": [{"job": job, "tick_ms": tick, "lag_ms": round(lag, 1)}
                        for lag, job, tick in lags[-3:][::-1]]}


def _violations(violations: list[Violation]) -> list[dict[str, Any]]:
    return [violation.to_json() for violation in violations[:VIOLATIONS_KEPT_MAX]]


def _exactly_once(outcomes: list[OutcomeRecord], ledger: list[LedgerEvent],
                  problems: list[str]) -> dict[str, Any]:
    violations = check_exactly_once(outcomes, [], ledger)
    starts = Counter(event.attempt[:2] for event in ledger if event.kind == "start")
    result: dict[str, Any] = {
        "valid": not violations and not problems,
        "ledger_events": len(ledger),
        "ticks_started": len(starts),
        "ticks_started_more_than_once": sum(1 for count in starts.values() if count > 1),
        "violation_count": len(violations),
        "violations": _violations(violations),
    }
    if problems:
        result["unreadable_ledger_lines"] = problems[:VIOLATIONS_KEPT_MAX]
    if not ledger and not outcomes:
        result["valid"] = UNKNOWN
    return result


def _liveness(job: JobTimeline, outcomes: list[OutcomeRecord], stored: dict[str, Any],
              horizon_ms: float, margin_ms: float) -> dict[str, Any]:
    gaps = [tuple(gap) for gap in stored.get("gaps", [])]
    report = check_tick_liveness([job], outcomes, horizon_ms, margin_ms)
    kept = [violation for violation in report.violations
            if violation.tick_ms is None
            or not any(low < violation.tick_ms < high for low, high in gaps)]
    view = stored.get("final_view") or {}
    counters = {name: view.get(name) for name in ("fired", "skipped", "missed")}
    return {"valid": not kept, "due": report.due, "fired": report.fired,
            "skipped": report.skipped, "missed": report.missed, "lost": report.lost,
            "unjudged_gaps": [list(gap) for gap in gaps], "replicated_counters": counters,
            "horizon_ms": horizon_ms, "margin_ms": margin_ms,
            "violations": _violations(kept)}


def _no_spof(job: JobTimeline, items: list[dict[str, Any]], ledger: list[LedgerEvent],
             run: dict[str, Any], timeline: list[dict[str, Any]], horizon_ms: float,
             bound_ms: float) -> dict[str, Any]:
    """Judged on proven commit times; ticks whose commit may (but need not) have been late,
    judging by the looser evidence, are listed as warnings."""
    origin = float(run["t0_unix_ms"])
    windows = fault_windows(timeline, origin, horizon_ms)
    nodes = run["nodes"]
    violations = check_no_spof([job], _records(items, ledger, "proven"), windows, nodes,
                               horizon_ms, bound_ms)
    loose = check_no_spof([job], _records(items, ledger, "seen"), windows, nodes, horizon_ms,
                          bound_ms)
    proven = {(v.kind, v.tick_ms) for v in violations}
    maybe = [v for v in loose if (v.kind, v.tick_ms) not in proven]
    return {"valid": not violations, "bound_ms": bound_ms,
            "down_windows": len(windows.down), "partitions": len(windows.partitions),
            "violations": _violations(violations), "possibly_late": _violations(maybe)}


# ---- one timeline for the plot -------------------------------------------------------------------

def merged_timeline(run_dir: Path, run: dict[str, Any],
                    timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nemesis timeline, every node's Raft trace and the ledger on one axis: true ms
    since the run began. A node's trace stamps its own (maybe fake) wall clock, so the offset
    the nemesis had set on it is taken off again."""
    origin = float(run["t0_unix_ms"])
    offsets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in timeline:
        if record["kind"] == "clock_jump":
            offsets[record["node"]].append((record["t"], float(record.get("offset_ms", 0.0))))
    merged = list(timeline)
    for node in run["nodes"]:
        path = run_dir / "nodes" / f"{node}.trace.jsonl"
        for number, record in enumerate(_read_lines(path)):
            if number >= NODE_TRACE_LINES_MAX or not isinstance(record.get("t"), (int, float)):
                break
            if record.get("kind") in ("start", "crash", "pause", "resume"):
                continue  # the nemesis timeline has the authoritative ones
            t = record["t"] - origin
            t -= _offset_at(offsets.get(node, []), t)
            merged.append({**record, "t": round(t, 3), "node": node})
    ledger_path = run_dir / RUN_FILES["ledger"]
    if ledger_path.exists():
        from jepsen_like.clients import read_ledger

        events, _ = read_ledger(ledger_path)
        for event in events:
            job, tick, slot, attempt = event.attempt
            merged.append({"t": round(event.t_ms - origin, 3), "node": event.node,
                           "local": round(event.t_ms - origin, 3), "kind": f"exec_{event.kind}"
                           if event.kind in ("start", "finish") else event.kind,
                           "job": job, "tick": tick, "slot": slot, "attempt": attempt})
    merged.sort(key=lambda record: record["t"])
    return merged


def _offset_at(changes: list[tuple[float, float]], t: float) -> float:
    current = 0.0
    for at, offset in changes:
        if at > t:
            break
        current = offset
    return current


def draw_timeline(run_dir: Path, run: dict[str, Any],
                  timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """Write timeline.jsonl and draw timeline.png; a missing plotter is reported, not fatal."""
    records = merged_timeline(run_dir, run, timeline)
    with open(run_dir / RUN_FILES["merged"], "w") as sink:
        for record in records:
            sink.write(json.dumps(record, separators=(",", ":")) + "\n")
    try:
        from papers.plots.timeline import build_timeline, plot_timeline
    except ImportError as error:
        return {"drawn": False, "reason": f"papers.plots.timeline unavailable: {error}"}
    title = (f"raftcron jepsen run {run_dir.name}: {run['workload']}, {len(run['nodes'])} nodes, "
             f"nemesis {','.join(run['options']['nemesis']) or 'none'}, {run['network']['mode']}")
    try:
        summary = plot_timeline(build_timeline(records), str(run_dir / RUN_FILES["plot"]),
                                title=title)
    except Exception as error:  # noqa: BLE001 - a plotting failure must not lose the verdict
        return {"drawn": False, "reason": f"{type(error).__name__}: {error}"}
    return {"drawn": True, "file": RUN_FILES["plot"],
            "leaderless_periods": len(summary.get("leaderless", []))}
