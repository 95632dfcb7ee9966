"""The world ledger: what really happened, in true time, for the exactly-once checkers.

Two halves. `Ledger` is written by the simulated executors: every start and every stop of a
run (finish, abandon, killed, suspend/resume), stamped with the simulator's true time, which
no node can see. `History` is written from the replicated side: every outcome and accepted
Finish, taken from the first node that applied the entry, with that true time. The checkers
in `jepsen_like/exactly_once.py` compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jepsen_like.exactly_once import FinishRecord, LedgerEvent, OutcomeRecord
from scheduler.commands import AttemptKey, Batch, Command, Finish, Fire
from scheduler.results import Outcome, Result
from sim.trace import TraceWriter

__all__ = ["History", "Ledger"]


@dataclass(slots=True)
class Ledger:
    trace: TraceWriter | None = None
    events: list[LedgerEvent] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def record(self, true_ms: float, node: str, kind: str, key: AttemptKey,
               ok: bool | None = None) -> None:
        event = LedgerEvent(true_ms, node, kind, tuple(key), ok)  # type: ignore[arg-type]
        self.events.append(event)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.trace is not None:
            fields: dict[str, Any] = {"attempt": list(key)}
            if ok is not None:
                fields["ok"] = ok
            self.trace.write(true_ms, node, true_ms, f"exec_{kind}", fields)


@dataclass(slots=True)
class History:
    """Committed outcomes and Finishes, once per log index, in commit order."""

    outcomes: list[OutcomeRecord] = field(default_factory=list)
    finishes: list[FinishRecord] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)

    def first_apply(self, index: int) -> bool:
        """True the first time any node applies `index` (state machine safety makes every
        node's result equal, which the Raft observer checks)."""
        if index in self._seen:
            return False
        self._seen.add(index)
        return True

    def record(self, index: int, true_ms: float, command: Command | None, result: Result
               ) -> list[Outcome]:
        """Collect one applied entry (`command` is None if it did not decode); returns its
        outcomes, for the trace."""
        outcomes: list[Outcome] = []
        pairs: list[tuple[Command | None, Result]] = [(command, result)]
        if isinstance(command, Batch) and len(result.children) == len(command.commands):
            pairs = list(zip(command.commands, result.children))
        for one, one_result in pairs:
            self._one(index, true_ms, one, one_result, outcomes)
        return outcomes

    def _one(self, index: int, true_ms: float, command: Command | None, result: Result,
             outcomes: list[Outcome]) -> None:
        parts = result.children if isinstance(command, Fire) else (result,)
        for part in parts:
            if not part.ok:
                self.rejected[part.reason] = self.rejected.get(part.reason, 0) + 1
        if result.ok and isinstance(command, Finish):
            self.finishes.append(FinishRecord(tuple(command.key), index,  # type: ignore[arg-type]
                                              command.ok))
        for effect in result.all_effects():
            if isinstance(effect, Outcome):
                outcomes.append(effect)
                self.outcomes.append(OutcomeRecord(effect.job, effect.kind, effect.first_ms,
                                                   effect.last_ms, effect.count, effect.trigger,
                                                   index, true_ms))
