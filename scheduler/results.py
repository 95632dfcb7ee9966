"""What applying a command tells the world: a `Result` value carrying `effects`.

Results are values, never exceptions: `ok` with effects, or rejected with a `reason` (a
short code) and a human `detail`. Effects say what changed, in order, so the runtime around
the state machine can act without diffing state: an agent starts a run when it sees a `Lease`
for itself, the leader's planner re-plans a job on `JobChanged`, the simulator's checkers
collect `Outcome`s. Every node computes the same results for the same entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scheduler.commands import AttemptKey, ExecKey

__all__ = ["AttemptEnd", "Effect", "JobChanged", "Lease", "NodeChanged", "Outcome", "Result",
           "Waiting", "ok", "rejected"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Ticks that got their outcome: `fired`, `skipped` or `missed`.

    A range (`count` > 1) is consecutive ticks first_ms..last_ms of the job's schedule.
    `trigger` is `schedule` for ticks, `run-now` or `parent` for on-demand runs, whose "tick"
    is the run's name, not a schedule time.
    """

    job: str
    kind: str
    first_ms: int
    last_ms: int
    count: int
    reason: str = ""
    trigger: str = "schedule"
    slots: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "outcome": self.kind, "first_ms": self.first_ms,
                "last_ms": self.last_ms, "count": self.count, "reason": self.reason,
                "trigger": self.trigger, "slots": self.slots}


@dataclass(frozen=True, slots=True)
class Lease:
    """An attempt is now held by `node` until `deadline_ms` (leader clock), or queued for a
    claim until `deadline_ms` when node is None. `why`: fire, assign, claim or renew."""

    key: AttemptKey
    node: str | None
    deadline_ms: int
    why: str


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """An attempt left the live set: succeeded, failed, expired or unclaimed."""

    key: AttemptKey
    node: str | None
    state: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """An execution needs an attempt from `ready_at_ms` on (a retry, a run-now, a child)."""

    key: ExecKey
    ready_at_ms: int


@dataclass(frozen=True, slots=True)
class JobChanged:
    name: str


@dataclass(frozen=True, slots=True)
class NodeChanged:
    name: str
    state: str


Effect = Outcome | Lease | AttemptEnd | Waiting | JobChanged | NodeChanged


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    reason: str = ""
    detail: str = ""
    effects: tuple[Effect, ...] = ()
    value: Any = None
    children: tuple[Result, ...] = field(default=())

    def all_effects(self) -> list[Effect]:
        """This result's effects and those of a batch's children, in apply order."""
        if not self.children:
            return list(self.effects)
        collected = list(self.effects)
        for child in self.children:
            collected.extend(child.all_effects())
        return collected


def ok(effects: list[Effect] | tuple[Effect, ...] = (), value: Any = None) -> Result:
    return Result(True, effects=tuple(effects), value=value)


def rejected(reason: str, detail: str = "") -> Result:
    return Result(False, reason=reason, detail=detail)
