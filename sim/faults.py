"""Fault schedules: what goes wrong, when. Generated from a seed, or loaded from JSON to replay.

A schedule is a list of actions at true times (ms). Targets may be symbolic (`"leader"`, `"random"`)
and are resolved when the action runs; the run is deterministic, so replaying the same schedule
with the same seed resolves them the same way, and the trace records the concrete node.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("crash", "partition", "pause", "skew", "loss", "dup", "transfer")

ACTION_KINDS = frozenset(
    {"crash", "restart", "pause", "resume", "partition", "one_way", "heal", "clock_jump",
     "clock_rate", "net", "transfer", "add_server", "remove_server",
     # Triggered crashes (Figure 8 needs leaders dying with entries half replicated): arm at
     # `at_ms`, then crash the next node to propose / win an election / grant a vote, `value`
     # ms later. On any crash, `loss` is the share of its messages still in flight that die too.
     "crash_after_propose", "crash_after_elect", "crash_after_vote",
     # The liveness phase: heal, restart and reconnect the majority `sides[0]`, stop new client
     # operations, and require it to converge within `value` ms (TigerBeetle's VOPR).
     "core",
     # One client operation on key `value`, sent to `node` (a stateful test's explicit op).
     "client_read", "client_write", "client_cas",
     # The scheduler (`--jobs`), as an operator: put (add or update) the job `job`, delete,
     # enable/disable (`job["disabled"]`) or run now the job `job["name"]`, through the leader,
     # retried until the leader's state shows it (`SchedulerWorld.operate`).
     "job_put", "job_delete", "job_toggle", "job_run_now",
     # Like crash_after_propose, for the next scheduler leader to propose a Fire.
     "crash_after_fire",
     # The agent alone on `node` dies (its runs are killed; the server stays up) / comes back.
     "agent_crash", "agent_restart"}
)
_ACTION_FIELDS = ("node", "sides", "value", "loss", "dup", "duration", "job")


@dataclass(slots=True)
class FaultAction:
    at_ms: float
    kind: str
    node: str | None = None
    sides: list[list[str]] | None = None
    value: float | None = None
    loss: float | None = None
    dup: float | None = None
    duration: float | None = None  # crash/pause (and triggered crashes): restart/resume after ms
    job: dict[str, Any] | None = None  # job_*: the job definition (put) or {"name": ...}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at_ms": round(self.at_ms, 3), "kind": self.kind}
        for name in _ACTION_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> FaultAction:
        if not isinstance(obj, dict) or obj.get("kind") not in ACTION_KINDS:
            raise ValueError(f"not a fault action (kind must be one of {sorted(ACTION_KINDS)}): {obj!r}")
        unknown = set(obj) - {"at_ms", "kind", *_ACTION_FIELDS}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} in fault action {obj!r}")
        return FaultAction(at_ms=float(obj["at_ms"]), kind=obj["kind"], node=obj.get("node"),
                           sides=obj.get("sides"), value=obj.get("value"), loss=obj.get("loss"),
                           dup=obj.get("dup"), duration=obj.get("duration"), job=obj.get("job"))


@dataclass(slots=True)
class FaultSchedule:
    actions: list[FaultAction] = field(default_factory=list)
    clock_offsets_ms: dict[str, float] = field(default_factory=dict)
    clock_rates: dict[str, float] = field(default_factory=dict)
    # With these two a schedule replays alone: `raftcron sim --replay FILE` needs nothing else.
    seed: int | None = None
    options: dict[str, Any] | None = None  # `SimOptions.to_json()` of the run that made it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.options is not None:
            out["options"] = self.options
        out.update({
            "actions": [a.to_json() for a in self.actions],
            "clock_offsets_ms": self.clock_offsets_ms,
            "clock_rates": self.clock_rates,
        })
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> FaultSchedule:
        actions = [FaultAction.from_json(a) for a in obj.get("actions", [])]
        actions.sort(key=lambda a: a.at_ms)
        seed = obj.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"the schedule's seed must be an integer, got {seed!r}")
        options = obj.get("options")
        if options is not None and not isinstance(options, dict):
            raise ValueError("the schedule's options must be a JSON object")
        return FaultSchedule(actions, dict(obj.get("clock_offsets_ms", {})), dict(obj.get("clock_rates", {})),
                             seed=seed, options=options)

    def normalized(self) -> FaultSchedule:
        """This schedule as its JSON reads back (times rounded to µs as `to_json` writes them),
        so a run from a generated schedule and its replay from the file are the same run."""
        return FaultSchedule.from_json(json.loads(json.dumps(self.to_json())))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)


def leader_crash_schedule(seconds: float) -> FaultSchedule:
    """The default story: crash whoever leads a third of the way in, restart it later."""
    crash_at = seconds * 1000.0 / 3.0
    return FaultSchedule([
        FaultAction(at_ms=crash_at, kind="crash", node="leader"),
        FaultAction(at_ms=min(crash_at + 15_000.0, seconds * 1000.0 * 0.8), kind="restart", node="crashed"),
    ])


def random_schedule(
    rng: random.Random,
    node_ids: list[str],
    seconds: float,
    kinds: set[str],
    *,
    mean_gap_ms: float = 4000.0,
    keep_quorum: bool = True,
    drift_ppm_max: float = 200.0,
    skew_ms_max: float = 500.0,
) -> FaultSchedule:
    """Swarm-style: each run draws which faults to use and how often (VOPR, FDB swarm testing).
    Faults come in pairs (crash/restart, partition/heal, pause/resume) and, with
    `keep_quorum`, never take more than a minority down at once, so liveness can be judged."""
    unknown = kinds - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
    schedule = FaultSchedule()
    end = seconds * 1000.0
    if "skew" in kinds:
        for node in node_ids:
            schedule.clock_offsets_ms[node] = rng.uniform(-skew_ms_max, skew_ms_max)
            schedule.clock_rates[node] = 1.0 + rng.uniform(-drift_ppm_max, drift_ppm_max) * 1e-6
    choices = [k for k in FAULT_KINDS if k in kinds]
    if not choices:
        return schedule
    minority = (len(node_ids) - 1) // 2
    t = 1000.0 + rng.expovariate(1.0 / mean_gap_ms)
    while t < end * 0.85:
        kind = rng.choice(choices)
        duration = rng.uniform(300.0, 6000.0)
        _add_fault(schedule, rng, kind, node_ids, t, min(t + duration, end * 0.9), minority, keep_quorum)
        t += duration + rng.expovariate(1.0 / mean_gap_ms)
    schedule.actions.sort(key=lambda a: a.at_ms)
    return schedule


def _add_fault(schedule: FaultSchedule, rng: random.Random, kind: str, node_ids: list[str], start: float,
               stop: float, minority: int, keep_quorum: bool) -> None:
    add = schedule.actions.append
    count = rng.randint(1, max(1, minority)) if keep_quorum else rng.randint(1, len(node_ids))
    victims = rng.sample(node_ids, count)
    if kind == "crash":
        for node in victims:
            target = "leader" if rng.random() < 0.5 and node == victims[0] else node
            add(FaultAction(at_ms=start, kind="crash", node=target))
            add(FaultAction(at_ms=stop, kind="restart", node="crashed" if target == "leader" else node))
    elif kind == "pause":
        for node in victims:
            add(FaultAction(at_ms=start, kind="pause", node=node))
            add(FaultAction(at_ms=stop, kind="resume", node=node))
    elif kind == "partition":
        rest = [n for n in node_ids if n not in victims]
        mode = rng.choice(["partition", "partition", "one_way"])
        add(FaultAction(at_ms=start, kind=mode, sides=[sorted(victims), sorted(rest)]))
        add(FaultAction(at_ms=stop, kind="heal"))
    elif kind == "skew":
        add(FaultAction(at_ms=start, kind="clock_jump", node=victims[0], value=rng.uniform(-2000.0, 2000.0)))
    elif kind == "loss":
        add(FaultAction(at_ms=start, kind="net", loss=rng.uniform(0.01, 0.3)))
        add(FaultAction(at_ms=stop, kind="net", loss=0.0))
    elif kind == "dup":
        add(FaultAction(at_ms=start, kind="net", dup=rng.uniform(0.01, 0.3)))
        add(FaultAction(at_ms=stop, kind="net", dup=0.0))
