"""Checkers for DESIGN.md guarantees 2-4: exactly-once safety, tick liveness, no single point
of failure. Pure functions over recorded histories, for the simulator and real processes alike.

Rules of this module:

1. Inputs are plain records with JSON forms (`from_json`/`to_json`), so a real-process
   harness can write them and this code read them: the replicated outcomes (each with the
   log index and the true time it was first applied), the committed Finishes, the world
   ledger of executor starts and stops in true time, and fault windows.
2. Checkers observe, never steer, and return every violation they find (never raise on a
   bad history); each violation names its kind, the job and tick or attempt, and why.
3. A schedule's ticks come from `scheduler.schedule` (the same code the state machine runs),
   so "which ticks were due" is computed, not trusted from the system under test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from scheduler.schedule import Schedule, ticks_between

__all__ = [
    "FaultWindows", "FinishRecord", "JobTimeline", "LedgerEvent", "LivenessReport",
    "OutcomeRecord", "Violation", "check_exactly_once", "check_no_spof", "check_tick_liveness",
    "execution_intervals",
]

TICKS_PER_JOB_MAX: Final = 1_000_000
STOP_KINDS: Final = frozenset({"finish", "abandon", "killed", "suspend"})

Attempt = tuple[str, int, int, int]  # (job, tick, slot, attempt)


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    detail: str
    job: str = ""
    tick_ms: int | None = None
    attempt: Attempt | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "detail": self.detail}
        if self.job:
            out["job"] = self.job
        if self.tick_ms is not None:
            out["tick_ms"] = self.tick_ms
        if self.attempt is not None:
            out["attempt"] = list(self.attempt)
        return out


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """A committed outcome: one tick, or a range of `count` consecutive ticks of the job."""

    job: str
    outcome: str  # fired | skipped | missed
    first_ms: int
    last_ms: int
    count: int = 1
    trigger: str = "schedule"  # or run-now / parent: on-demand runs are not ticks
    index: int = 0  # the log index
    t_ms: float = 0.0  # true time it was first applied

    @staticmethod
    def from_json(obj: dict[str, Any]) -> OutcomeRecord:
        return OutcomeRecord(obj["job"], obj["outcome"], int(obj["first_ms"]),
                             int(obj["last_ms"]), int(obj.get("count", 1)),
                             obj.get("trigger", "schedule"), int(obj.get("index", 0)),
                             float(obj.get("t_ms", 0.0)))

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "outcome": self.outcome, "first_ms": self.first_ms,
                "last_ms": self.last_ms, "count": self.count, "trigger": self.trigger,
                "index": self.index, "t_ms": round(self.t_ms, 3)}


@dataclass(frozen=True, slots=True)
class FinishRecord:
    """A Finish the state machine accepted (a rejected one is not a finish)."""

    attempt: Attempt
    index: int
    ok: bool = True


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """A side effect in the world, in true time: `start`, `finish`, or a stop without a
    finish: `abandon` (the agent gave up its lease), `killed` (its process died), `suspend`
    (frozen by a pause) and `resume`."""

    t_ms: float
    node: str
    kind: str
    attempt: Attempt
    ok: bool | None = None

    @staticmethod
    def from_json(obj: dict[str, Any]) -> LedgerEvent:
        job, tick, slot, number = obj["attempt"]
        return LedgerEvent(float(obj["t_ms"]), obj["node"], obj["kind"],
                           (job, int(tick), int(slot), int(number)), obj.get("ok"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t_ms": round(self.t_ms, 3), "node": self.node,
                               "kind": self.kind, "attempt": list(self.attempt)}
        if self.ok is not None:
            out["ok"] = self.ok
        return out


@dataclass(frozen=True, slots=True)
class JobTimeline:
    """A job definition and the span it was in force: its schedule's ticks in
    (anchor_ms, until_ms] (`anchor_ms` here is where its ticks start: the creation time, or
    the cursor it inherited)."""

    name: str
    schedule: Schedule
    anchor_ms: int
    until_ms: int | None = None


@dataclass(slots=True)
class FaultWindows:
    """When servers were down (crashed or paused), cut apart, or the network degraded."""

    down: list[tuple[str, float, float]] = field(default_factory=list)
    partitions: list[tuple[float, float, list[list[str]]]] = field(default_factory=list)
    degraded: list[tuple[float, float]] = field(default_factory=list)


# ---- guarantee 2: exactly once, safety -----------------------------------------------------------


def check_exactly_once(outcomes: Iterable[OutcomeRecord], finishes: Iterable[FinishRecord],
                       ledger: Sequence[LedgerEvent]) -> list[Violation]:
    """At most one Fire per tick committed; at most one Finish per attempt; in the ledger at
    most one start per attempt, and no two attempts of one execution active at once."""
    violations: list[Violation] = []
    fired: dict[tuple[str, int], list[int]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.outcome == "fired":
            fired[(outcome.job, outcome.first_ms)].append(outcome.index)
    for (job, tick), indexes in fired.items():
        if len(indexes) > 1:
            violations.append(Violation("duplicate_fire", f"fired {len(indexes)} times, at log "
                                        f"indexes {indexes[:5]}", job, tick))
    finished: dict[Attempt, int] = defaultdict(int)
    for finish in finishes:
        finished[finish.attempt] += 1
    for attempt, times in finished.items():
        if times > 1:
            violations.append(Violation("duplicate_finish", f"{times} Finishes committed",
                                        attempt[0], attempt[1], attempt))
    started: dict[Attempt, list[str]] = defaultdict(list)
    for event in ledger:
        if event.kind == "start":
            started[event.attempt].append(event.node)
    for attempt, nodes in started.items():
        if len(nodes) > 1:
            violations.append(Violation("duplicate_start", f"started {len(nodes)} times, on "
                                        f"{nodes[:5]}", attempt[0], attempt[1], attempt))
    violations.extend(_overlaps(ledger))
    return violations


def execution_intervals(ledger: Sequence[LedgerEvent]
                        ) -> dict[Attempt, list[tuple[float, float, str]]]:
    """Per attempt, the true-time intervals in which it was active (running, not frozen),
    with the node; an attempt never stopped stays active to +infinity."""
    open_at: dict[tuple[Attempt, str], float] = {}
    intervals: dict[Attempt, list[tuple[float, float, str]]] = defaultdict(list)
    for event in sorted(ledger, key=lambda e: e.t_ms):
        slot = (event.attempt, event.node)
        if event.kind in ("start", "resume"):
            open_at.setdefault(slot, event.t_ms)
        elif event.kind in STOP_KINDS and slot in open_at:
            intervals[event.attempt].append((open_at.pop(slot), event.t_ms, event.node))
    for (attempt, node), since in open_at.items():
        intervals[attempt].append((since, float("inf"), node))
    return intervals


def _overlaps(ledger: Sequence[LedgerEvent]) -> list[Violation]:
    by_execution: dict[tuple[str, int, int], list[tuple[float, float, Attempt, str]]] = \
        defaultdict(list)
    for attempt, spans in execution_intervals(ledger).items():
        for start, stop, node in spans:
            by_execution[(attempt[0], attempt[1], attempt[2])].append((start, stop, attempt, node))
    violations = []
    for (job, tick, _slot), active in by_execution.items():
        active.sort()
        reach: tuple[float, Attempt, str] | None = None
        for start, stop, attempt, node in active:
            if reach is not None and start < reach[0] and attempt != reach[1]:
                violations.append(Violation(
                    "overlapping_attempts", f"attempt {attempt[3]} started on {node} at "
                    f"{start:.1f} ms while attempt {reach[1][3]} ran on {reach[2]} until "
                    f"{reach[0]:.1f} ms", job, tick, attempt))
            if reach is None or stop > reach[0]:
                reach = (stop, attempt, node)
    return violations


# ---- guarantee 3: exactly once, liveness -----------------------------------------------------------


@dataclass(slots=True)
class LivenessReport:
    due: int = 0
    fired: int = 0
    skipped: int = 0
    missed: int = 0
    lost: int = 0
    violations: list[Violation] = field(default_factory=list)


def _expand(timeline: JobTimeline, outcome: OutcomeRecord) -> list[int] | str:
    """The ticks an outcome record covers, or why it does not describe schedule ticks."""
    if outcome.count == 1 and outcome.first_ms == outcome.last_ms:
        ticks = [outcome.first_ms]
    else:
        ticks = ticks_between(timeline.schedule, outcome.first_ms - 1, outcome.last_ms,
                              outcome.count + 1)
        if len(ticks) != outcome.count or not ticks or ticks[-1] != outcome.last_ms:
            return (f"range {outcome.first_ms}..{outcome.last_ms} holds {len(ticks)} ticks, "
                    f"not {outcome.count}")
    for tick in ticks:
        if timeline.schedule.first_at_or_after(tick) != tick or tick <= timeline.anchor_ms:
            return f"{tick} is not a tick of the job's schedule"
    return ticks


def _timeline_of(timelines: list[JobTimeline], tick: int) -> JobTimeline | None:
    for timeline in timelines:
        if timeline.anchor_ms < tick and (timeline.until_ms is None or tick <= timeline.until_ms):
            return timeline
    return None


def tick_outcomes(jobs: Sequence[JobTimeline], outcomes: Iterable[OutcomeRecord]
                  ) -> tuple[dict[tuple[str, int], list[OutcomeRecord]], list[Violation]]:
    """Every scheduled tick's outcomes, keyed (job, tick); plus records that describe no
    ticks of their job's definition in force then (invented ticks). A job updated over time
    has one timeline per definition."""
    by_name: dict[str, list[JobTimeline]] = defaultdict(list)
    for timeline in jobs:
        by_name[timeline.name].append(timeline)
    found: dict[tuple[str, int], list[OutcomeRecord]] = defaultdict(list)
    violations = []
    for outcome in outcomes:
        if outcome.trigger != "schedule":
            continue
        covering = _timeline_of(by_name.get(outcome.job, []), outcome.first_ms)
        ticks = "no definition of the job covers it" if covering is None else \
            _expand(covering, outcome)
        if isinstance(ticks, str):
            violations.append(Violation("invented_tick", ticks, outcome.job, outcome.first_ms))
            continue
        for tick in ticks:
            found[(outcome.job, tick)].append(outcome)
    return found, violations


def due_ticks(timeline: JobTimeline, until_ms: int) -> list[int]:
    end = until_ms if timeline.until_ms is None else min(until_ms, timeline.until_ms)
    return ticks_between(timeline.schedule, timeline.anchor_ms, end, TICKS_PER_JOB_MAX)


def check_tick_liveness(jobs: Sequence[JobTimeline], outcomes: Iterable[OutcomeRecord],
                        end_ms: float, margin_ms: float) -> LivenessReport:
    """Every tick due up to `end_ms - margin_ms` has exactly one outcome; no outcome names a
    tick the schedule does not have."""
    found, violations = tick_outcomes(jobs, outcomes)
    report = LivenessReport(violations=violations)
    horizon = int(end_ms - margin_ms)
    for timeline in jobs:
        for tick in due_ticks(timeline, horizon):
            report.due += 1
            records = found.get((timeline.name, tick), [])
            if not records:
                report.lost += 1
                violations.append(Violation("lost_tick", "due, but no outcome was recorded",
                                            timeline.name, tick))
                continue
            if len(records) > 1:
                kinds = [record.outcome for record in records]
                violations.append(Violation("duplicate_outcome", f"{len(records)} outcomes: "
                                            f"{kinds}", timeline.name, tick))
            kind = records[0].outcome
            if kind == "fired":
                report.fired += 1
            elif kind == "skipped":
                report.skipped += 1
            else:
                report.missed += 1
    return report


# ---- guarantee 4: no single point of failure --------------------------------------------------------


def _quorum_connected(windows: FaultWindows, nodes: Sequence[str], start: float,
                      stop: float) -> bool:
    """Was some quorum of servers up and pairwise connected during all of [start, stop]?

    Connectivity over the span is the intersection of each overlapping partition's sides,
    an equivalence relation, so it suffices to group nodes by their sides' signature."""
    if any(a < stop and start < b for a, b in windows.degraded):
        return False
    down = {node for node, a, b in windows.down if a < stop and start < b}
    signature: dict[str, tuple[int, ...]] = {node: () for node in nodes if node not in down}
    for a, b, sides in windows.partitions:
        if a < stop and start < b:
            for node in signature:
                side = next((i for i, group in enumerate(sides) if node in group), len(sides))
                signature[node] = (*signature[node], side)
    groups: dict[tuple[int, ...], int] = defaultdict(int)
    for key in signature.values():
        groups[key] += 1
    return max(groups.values(), default=0) >= len(nodes) // 2 + 1


def check_no_spof(jobs: Sequence[JobTimeline], outcomes: Iterable[OutcomeRecord],
                  windows: FaultWindows, nodes: Sequence[str], end_ms: float,
                  bound_ms: float) -> list[Violation]:
    """If a quorum was up and connected from t - L to t + L, the tick due at t was fired
    (skipped by policy also counts: it is not missed), committed within L of t (true time)."""
    found, _ = tick_outcomes(jobs, outcomes)
    violations = []
    for timeline in jobs:
        for tick in due_ticks(timeline, int(end_ms - bound_ms)):
            if tick - bound_ms < 0 or not _quorum_connected(windows, nodes, tick - bound_ms,
                                                            tick + bound_ms):
                continue
            records = found.get((timeline.name, tick), [])
            if not records:
                violations.append(Violation("not_fired", "a quorum was up, yet no outcome",
                                            timeline.name, tick))
            elif records[0].outcome == "missed":
                violations.append(Violation("missed_with_quorum", "a quorum was up, yet it "
                                            "was recorded missed", timeline.name, tick))
            elif abs(records[0].t_ms - tick) > bound_ms:
                violations.append(Violation(
                    "late_fire", f"committed at {records[0].t_ms:.1f} ms, {records[0].t_ms - tick:+.1f} "
                    f"ms from the tick; the bound is {bound_ms:.1f} ms", timeline.name, tick))
    return violations
