"""The nemesis: faults injected from outside real server processes, on a seeded schedule.

Rules of this module:

1. The schedule is data, drawn up front from the seed (`plan_faults`): which fault, when,
   for how long, aimed at which kind of target. Only what cannot be known in advance (who
   leads at that moment) is resolved at run time, from a draw that is also in the plan, so
   one seed gives one schedule and the schedule is written to the store before the run.
2. Everything is bounded: at most `FAULTS_MAX` faults, each fault's start and stop under
   `OPERATION_TIMEOUT_S`, every fault undone by the time limit, and `heal_everything` (run
   whatever happened) restarts, resumes, reconnects and resets every clock.
3. Faults are minority faults: kill, pause and skew hit one node, the leader, or a minority;
   a partition cuts a minority (or the leader alone) from the rest. So DESIGN.md's no-SPOF
   promise applies throughout, and the liveness checker can hold the system to it.
4. Each fault is logged twice: in the client history as Jepsen does (process "nemesis",
   `invoke` then `info`), and in the timeline (the simulator's trace schema) by the cluster
   control that carries it out, which is what plots and the liveness checker read.

Clock skew uses libfaketime (Debian's `faketime` package): each server process starts with
`LD_PRELOAD=libfaketime` and reads its offset from a file that the nemesis rewrites
(`FAKETIME_NO_CACHE`, so a change applies at the next clock read). Only the wall clock is
faked (`FAKETIME_DONT_FAKE_MONOTONIC`): the scheduler's leader clock, leases and job
commands read the wall clock, and a real OS never steps CLOCK_MONOTONIC, which Raft's
timers and lease reads rely on (docs/jepsen.md has the measurements behind this choice).
"""

from __future__ import annotations

import math
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import trio

from jepsen_like.history import NEMESIS_PROCESS, HistoryRecorder
from jepsen_like.run_options import TARGETS

__all__ = [
    "FAMILIES", "TARGETS", "ClusterControl", "FakeTime", "FaultStep", "Nemesis",
    "NemesisOptions", "choose_nodes", "find_libfaketime", "plan_faults",
]

FAMILIES: Final = ("kill", "pause", "partition", "skew")
FAULTS_MAX: Final = 1_000
OPERATION_TIMEOUT_S: Final = 20.0  # one start or stop of a fault (a restart waits for the port)
HEAL_TIMEOUT_S: Final = 30.0
LIBFAKETIME_PATHS: Final = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
# How a fault starts and stops, as Jepsen names its nemesis operations.
START_F: Final = {"kill": "kill", "pause": "pause", "partition": "start-partition",
                  "skew": "bump-clock"}
STOP_F: Final = {"kill": "start", "pause": "resume", "partition": "stop-partition",
                 "skew": "reset-clock"}


@dataclass(frozen=True, slots=True, kw_only=True)
class NemesisOptions:
    """What faults, how long each lasts, how long the cluster is left alone in between."""

    families: tuple[str, ...] = ("kill", "pause")
    targets: tuple[str, ...] = TARGETS
    first_s: float = 1.0  # the first fault starts this long after the workload
    fault_s_min: float = 1.5
    fault_s_max: float = 4.0
    quiet_s_min: float = 1.0
    quiet_s_max: float = 3.0
    skew_ms_min: float = 200.0  # a clock bump moves a wall clock by this much at least ...
    skew_ms_max: float = 1_500.0  # ... and at most (below the servers' 2000 ms offset bound)
    skew_rate_max: float = 0.002  # each server process's clock runs at 1 ± this (libfaketime)

    def __post_init__(self) -> None:
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown nemesis {sorted(unknown)}; "
                             f"choose from {', '.join(FAMILIES)}")
        wrong = set(self.targets) - set(TARGETS)
        if wrong or not self.targets:
            raise ValueError(f"targets must be some of {', '.join(TARGETS)}, "
                             f"got {list(self.targets)}")
        if not 0 < self.fault_s_min <= self.fault_s_max:
            raise ValueError("fault durations must satisfy 0 < min <= max")
        if not 0 <= self.quiet_s_min <= self.quiet_s_max:
            raise ValueError("quiet periods must satisfy 0 <= min <= max")
        if not 0 <= self.skew_ms_min <= self.skew_ms_max:
            raise ValueError("clock bumps must satisfy 0 <= min <= max")
        if not 0 <= self.skew_rate_max < 0.5:
            raise ValueError("the clock rate bound must be in [0, 0.5)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One planned fault: starts `at_s` after the workload began, lasts `duration_s`."""

    at_s: float
    duration_s: float
    family: str
    target: str
    draw: int  # picks the concrete nodes at run time, deterministically
    offset_ms: float = 0.0  # skew: the clock bump

    def to_json(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 3), "duration_s": round(self.duration_s, 3),
                "family": self.family, "target": self.target, "draw": self.draw,
                "offset_ms": round(self.offset_ms, 3)}


def plan_faults(options: NemesisOptions, time_limit_s: float,
                rng: random.Random) -> list[FaultStep]:
    """The whole schedule: faults one after another, each undone before the next starts and
    before the time limit. Empty when no nemesis is enabled."""
    steps: list[FaultStep] = []
    if not options.families:
        return steps
    at_s = options.first_s
    while len(steps) < FAULTS_MAX:
        duration_s = rng.uniform(options.fault_s_min, options.fault_s_max)
        if at_s + min(duration_s, options.fault_s_min) > time_limit_s:
            break
        duration_s = min(duration_s, time_limit_s - at_s)
        family = rng.choice(options.families)
        target = rng.choice(options.targets)
        offset_ms = 0.0
        if family == "skew":
            offset_ms = rng.uniform(options.skew_ms_min, options.skew_ms_max) * rng.choice((-1, 1))
        steps.append(FaultStep(at_s, duration_s, family, target, rng.randrange(2**31), offset_ms))
        at_s += duration_s + rng.uniform(options.quiet_s_min, options.quiet_s_max)
    return steps


def minority_size(node_count: int) -> int:
    """The most nodes that can fail while a majority stays: (n - 1) // 2, at least one."""
    return max(1, (node_count - 1) // 2)


def choose_nodes(step: FaultStep, nodes: Sequence[str], leader: str | None) -> list[str]:
    """The nodes a step hits. `leader` falls back to `one` when no leader is known."""
    assert nodes, "no nodes to choose from"
    picker = random.Random(step.draw)
    if step.target == "leader" and leader is not None and leader in nodes:
        return [leader]
    if step.target == "minority":
        return sorted(picker.sample(list(nodes), min(minority_size(len(nodes)), len(nodes))))
    return [nodes[picker.randrange(len(nodes))]]


def partition_sides(cut: Sequence[str], nodes: Sequence[str]) -> list[list[str]]:
    """The two sides when `cut` is isolated from the rest (the minority side first)."""
    rest = [node for node in nodes if node not in cut]
    return [sorted(cut), rest]


# ---- libfaketime ---------------------------------------------------------------------------------

def find_libfaketime() -> str | None:
    """The preload library of Debian's `faketime` package, if installed."""
    for path in LIBFAKETIME_PATHS:
        if os.path.exists(path):
            return path
    tool = shutil.which("faketime")
    if tool is not None:  # e.g. /usr/local/bin/faketime next to ../lib/faketime/
        candidate = Path(tool).resolve().parent.parent / "lib" / "faketime" / "libfaketime.so.1"
        if candidate.exists():
            return str(candidate)
    return None


@dataclass(slots=True)
class FakeTime:
    """One server's fake wall clock: a file libfaketime re-reads at every clock read.

    The file holds `+S.sss xR`: an offset in seconds and a rate. libfaketime applies the rate
    from the process's own start, so the rate is fixed per process (drawn at each start) and
    the nemesis changes only the offset, which moves the clock by exactly the difference.
    """

    library: str
    path: Path
    offset_ms: float = 0.0
    rate: float = 1.0
    history: list[tuple[float, float]] = field(default_factory=list)  # (true ms, offset ms)

    def environment(self) -> dict[str, str]:
        return {"LD_PRELOAD": self.library, "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}

    def write(self) -> None:
        """Replace the file atomically, so a reader never sees half a line (which it would
        read as offset zero)."""
        assert math.isfinite(self.offset_ms) and 0.5 < self.rate < 1.5
        text = f"{self.offset_ms / 1000.0:+.3f} x{self.rate:.6f}\n"
        partial = self.path.with_suffix(".partial")
        partial.write_text(text)
        os.replace(partial, self.path)


# ---- carrying out the schedule -------------------------------------------------------------------

class ClusterControl(Protocol):
    """What the nemesis needs from the cluster; each call records its own timeline event."""

    node_ids: list[str]

    async def leader(self) -> str | None: ...

    async def kill(self, node: str) -> None: ...

    async def start(self, node: str) -> None: ...

    async def pause(self, node: str) -> None: ...

    async def resume(self, node: str) -> None: ...

    async def partition(self, sides: list[list[str]]) -> None: ...

    async def heal(self) -> None: ...

    async def set_clock(self, node: str, offset_ms: float) -> None: ...

    async def heal_everything(self) -> None: ...


class Nemesis:
    """Runs a planned schedule against a cluster and logs each fault in the history."""

    def __init__(self, control: ClusterControl, steps: Sequence[FaultStep],
                 history: HistoryRecorder) -> None:
        assert len(steps) <= FAULTS_MAX
        self.control = control
        self.steps = list(steps)
        self.history = history
        self.done: list[dict[str, Any]] = []  # what was actually done, for results.json
        self.errors: list[str] = []

    async def run(self, started_at: float, deadline: float) -> None:
        """Carry out every step, in trio time from `started_at`; stop at `deadline`. Whatever
        happens (cancellation included), every fault is undone before this returns."""
        try:
            for step in self.steps:
                begin = started_at + step.at_s
                if begin >= deadline:
                    break
                await trio.sleep_until(begin)
                await self._one(step, min(begin + step.duration_s, deadline))
        finally:
            with trio.move_on_after(HEAL_TIMEOUT_S) as scope:
                scope.shield = True
                await self.control.heal_everything()
            if scope.cancelled_caught:
                self.errors.append(f"healing did not finish within {HEAL_TIMEOUT_S:g} s")

    async def _one(self, step: FaultStep, stop_at: float) -> None:
        nodes = choose_nodes(step, self.control.node_ids, await self._leader(step))
        value: Any = nodes
        if step.family == "partition":
            value = partition_sides(nodes, self.control.node_ids)
        record = {"family": step.family, "target": step.target, "nodes": nodes,
                  "at_s": round(step.at_s, 3), "planned_s": round(step.duration_s, 3)}
        self.history.record(NEMESIS_PROCESS, "invoke", START_F[step.family], value)
        try:
            await self._apply(step, nodes, value, start=True)
            self.history.record(NEMESIS_PROCESS, "info", START_F[step.family], value)
            await trio.sleep_until(stop_at)
        finally:
            with trio.CancelScope(shield=True):
                self.history.record(NEMESIS_PROCESS, "invoke", STOP_F[step.family], value)
                await self._apply(step, nodes, value, start=False)
                self.history.record(NEMESIS_PROCESS, "info", STOP_F[step.family], value)
            self.done.append(record)

    async def _leader(self, step: FaultStep) -> str | None:
        if step.target != "leader":
            return None
        with trio.move_on_after(OPERATION_TIMEOUT_S):
            return await self.control.leader()
        return None

    async def _apply(self, step: FaultStep, nodes: list[str], value: Any, *, start: bool) -> None:
        control = self.control
        with trio.move_on_after(OPERATION_TIMEOUT_S) as scope:
            try:
                if step.family == "kill":
                    for node in nodes:
                        await (control.kill(node) if start else control.start(node))
                elif step.family == "pause":
                    for node in nodes:
                        await (control.pause(node) if start else control.resume(node))
                elif step.family == "partition":
                    await (control.partition(value) if start else control.heal())
                elif step.family == "skew":
                    for node in nodes:
                        await control.set_clock(node, step.offset_ms if start else 0.0)
            except (OSError, RuntimeError) as error:
                self.errors.append(f"{START_F[step.family] if start else STOP_F[step.family]} "
                                   f"{nodes}: {error}")
        if scope.cancelled_caught:
            self.errors.append(f"{step.family} on {nodes} took over {OPERATION_TIMEOUT_S:g} s")
