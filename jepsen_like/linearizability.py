"""Linearizability checking: Wing & Gong / Lowe search with memoization, as Porcupine does it.

Rules of this module:

1. A verdict is never wrong. `valid` is True (a linearization exists), False (the search was
   exhaustive and none exists) or "unknown" (the time limit ran out first). The clock is read
   only to enforce the time limit: it can turn a verdict into "unknown", never into another.
2. The search works on one partition at a time (P-compositionality: the model splits the
   history, e.g. per key), so a kv history costs the sum of its keys, not their product.
3. `info` operations (outcome unknown) return at +infinity: they may be linearized anywhere
   after their call, or never. The search succeeds once every `ok` operation is linearized.

The algorithm. The ok operations' call and return entries sit in one doubly linked list
sorted by time (calls before returns on equal times, so touching intervals count as
concurrent: the lenient reading, which can only avoid false alarms). The candidates for the
next linearization point are the call entries before the first return entry still in the
list: the operation of that first return cannot be postponed past anything called after it.
Linearizing an operation lifts both of its entries out of the list (O(1), dancing-links
style) and pushes a frame; when a configuration has no candidate left, the search pops the
last frame, unlifts its entries and resumes that configuration's candidates. A memo set of
(linearized-ops bitset, model state) pairs skips every configuration seen before: the same
operations done and the same state lead to the same future.

Open-ended (info) operations are kept out of the list: they never force a backtrack, so they
are only ever candidates, and the search succeeds without them.

Four additions keep long, highly concurrent histories fast without touching soundness
(each is argued where it is implemented, and a brute-force oracle test compares verdicts):

- Candidate order: the first-returning operation goes first, preceded by the candidates it
  would make illegal; if it is illegal, the candidates that make it legal go first. Only the
  order changes, never the set tried.
- Forced observers: a legal operation that never changes the state (a read) is placed at
  once, with no alternative tried, when the model can promise that it is an observer.
- Counting arguments (`_ValueFlow`): when the model declares which value each operation
  needs and gives (`ValueFlowModel`), a configuration is abandoned at once if an unplaced ok
  operation needs a value that can never come back, or if the unplaced operations that need
  a value and change it outnumber those that can give it back, instead of after an
  exponential detour through the orderings of everything concurrent with them.
- A quick proof (`_refute`), before any search: a stale read that real time alone rules out
  is found in O(n log n), with the three operations that prove it.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from jepsen_like.history import Operation
from jepsen_like.models import NO_VALUE, Model, Partition, State, ValueFlowModel

Verdict = bool | Literal["unknown"]
UNKNOWN: Final = "unknown"
POLL_ITERATIONS: Final = 1024  # search steps between two looks at the clock
PREFIX_CONTEXT: Final = 3  # prefix operations always shown before the failing window
WINDOW_OPERATIONS_MAX: Final = 20  # prefix operations shown at most, most recent first


@dataclass(frozen=True, slots=True)
class Failure:
    """Evidence that a partition is not linearizable, from the deepest point of the search.

    After the `linearized` operations of the longest partial linearization found, the model is
    in `state`, and `stuck` cannot be placed. With `reason == "stuck"` it had to be placed
    next (its return came first) but was illegal whatever was tried among the `concurrent`
    operations called before its return. With `reason == "starved"` it needs a value that
    is not the state and that no operation left can give (a value-flow model's proof).
    With `reason == "overdrawn"` it is one of several operations that each need the value
    and change it, and fewer operations are left to give the value back than they need;
    `concurrent` then lists the other operations that need or give it.
    `prefix_tail` is the end of that partial linearization, in linearization order.

    Two reasons come from a quick real-time argument made before any search (value-flow
    models only), and name the smallest evidence: with "overwritten", `prefix_tail` is
    (s, x): s is the last operation giving the `needed` value that could precede `stuck`, but
    x gives another value and real time forces s < x < stuck; with "unwritten", nothing that
    gives the value is even invoked before `stuck` returns (and it is not the initial state).
    """

    key: Hashable
    linearized: int
    state: State
    stuck: Operation
    concurrent: tuple[Operation, ...]
    prefix_tail: tuple[Operation, ...]
    reason: Literal["stuck", "starved", "overdrawn", "overwritten", "unwritten"] = "stuck"
    needed: Hashable = None  # the value `stuck` needs (all reasons but "stuck")

    @property
    def window(self) -> tuple[Operation, ...]:
        """The smallest window to look at: prefix tail, then stuck and concurrent by call."""
        pending = sorted((self.stuck, *self.concurrent), key=lambda op: (op.call_ns, op.index))
        return (*self.prefix_tail, *pending)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "reason": self.reason,
            "needed": self.needed,
            "linearized": self.linearized,
            "state": repr(self.state),
            "stuck": self.stuck.to_json(),
            "concurrent": [op.to_json() for op in self.concurrent],
            "prefix_tail": [op.to_json() for op in self.prefix_tail],
            "window": [op.to_json() for op in self.window],
        }

    def describe(self) -> list[str]:
        """Readable lines for the CLI summary."""
        if self.reason == "overwritten":
            first, overwrite = self.prefix_tail[0], self.prefix_tail[-1]
            return [
                f"this operation needs the value {self.needed!r}:",
                f"    {self.stuck.describe()}",
                f"  the latest operation giving {self.needed!r} that may precede it is"
                + (" the initial state" if first is overwrite else ":"),
                *([f"    {first.describe()}"] if first is not overwrite else []),
                "  but this operation, invoked after that and completed before it, gives another:",
                f"    {overwrite.describe()}",
            ]
        if self.reason == "unwritten":
            return [
                f"this operation needs the value {self.needed!r}, which is not the initial state",
                f"    {self.stuck.describe()}",
                f"  and no operation giving {self.needed!r} is invoked before it returns.",
            ]
        lines = [
            f"after a legal prefix of {self.linearized} operation(s) "
            f"the state is {self.state!r}; the prefix ends with:",
            *(f"    {op.describe()}" for op in self.prefix_tail),
        ]
        if self.reason == "starved":
            lines.append("  and this operation can never be placed: it needs a value that is")
            lines.append("  not the state and that no operation left can give:")
        elif self.reason == "overdrawn":
            lines.append(f"  and the operations left that need {self.needed!r} and change it")
            lines.append(f"  outnumber those that can give {self.needed!r} back; the first:")
        else:
            lines.append("  and this operation, the first to return, cannot be placed next:")
        lines.append(f"    {self.stuck.describe()}")
        if self.concurrent and self.reason == "overdrawn":
            lines.append(f"  the other operations left that need or give {self.needed!r}:")
            lines.extend(f"    {op.describe()}" for op in self.concurrent)
        elif self.concurrent:
            lines.append("  operations called before it returned and not in the prefix:")
            lines.extend(f"    {op.describe()}" for op in self.concurrent)
        else:
            lines.append("  and no other operation is concurrent with it.")
        return lines


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """The verdict for one partition (one key of a kv history, or the whole register)."""

    key: Hashable
    valid: Verdict
    op_count: int
    pruned: int
    failure: Failure | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "valid": self.valid,
            "op_count": self.op_count,
            "pruned_info_ops": self.pruned,
            "failure": None if self.failure is None else self.failure.to_json(),
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict for a whole history: False if any partition is False, else unknown if any
    is unknown, else True."""

    valid: Verdict
    model: str
    op_count: int
    info_count: int
    partitions: tuple[PartitionResult, ...]
    elapsed_s: float

    @property
    def failures(self) -> tuple[Failure, ...]:
        return tuple(part.failure for part in self.partitions if part.failure is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "model": self.model,
            "op_count": self.op_count,
            "info_count": self.info_count,
            "partition_count": len(self.partitions),
            "invalid_keys": [p.key for p in self.partitions if p.valid is False],
            "unknown_keys": [p.key for p in self.partitions if p.valid == UNKNOWN],
            "elapsed_s": round(self.elapsed_s, 6),
            "partitions": [part.to_json() for part in self.partitions],
        }


def check(
    operations: Sequence[Operation],
    model: Model,
    *,
    time_limit_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[int, int], None] | None = None,
) -> CheckResult:
    """Check that `operations` (from `pair_operations`) are linearizable under `model`.

    `time_limit_s` bounds the whole check (all partitions share it); when it runs out the
    affected partitions, and so the result, are "unknown". `clock` is read only for it.
    `progress(done, total)` is called after each partition, for long checks.
    """
    started = clock()
    deadline = None if time_limit_s is None else started + time_limit_s
    parts = model.partition(operations)
    results: list[PartitionResult] = []
    for part in parts:
        results.append(_check_partition(part, deadline, clock))
        if progress is not None:
            progress(len(results), len(parts))
    return CheckResult(
        valid=_combine(part.valid for part in results),
        model=model.name,
        op_count=len(operations),
        info_count=sum(1 for op in operations if op.status == "info"),
        partitions=tuple(results),
        elapsed_s=clock() - started,
    )


def _combine(verdicts: Any) -> Verdict:
    combined: Verdict = True
    for verdict in verdicts:
        if verdict is False:
            return False
        if verdict == UNKNOWN:
            combined = UNKNOWN
    return combined


def _check_partition(
    part: Partition, deadline: float | None, clock: Callable[[], float]
) -> PartitionResult:
    ok_ops = tuple(op for op in part.operations if op.status == "ok")
    info_ops = tuple(
        sorted((op for op in part.operations if op.status == "info"), key=lambda op: op.call_ns)
    )
    count = len(part.operations)
    if isinstance(part.model, ValueFlowModel):
        refuted = _refute(part.key, ok_ops, info_ops, part.model)
        if refuted is not None:
            return PartitionResult(part.key, False, count, part.pruned, refuted)
    if deadline is not None and clock() > deadline:
        return PartitionResult(part.key, UNKNOWN, count, part.pruned)
    verdict, deepest = _Search(ok_ops, info_ops, part.model).run(deadline, clock)
    failure = None
    if verdict is False:
        assert deepest is not None
        failure = _failure(part.key, ok_ops, info_ops, part.model, deepest)
    return PartitionResult(part.key, verdict, count, part.pruned, failure)


def _refute(
    key: Hashable,
    ok_ops: Sequence[Operation],
    info_ops: Sequence[Operation],
    model: ValueFlowModel,
) -> Failure | None:
    """A fast proof of non-linearizability for value-flow models, found before any search.

    Why it holds: in any linearization, the state an ok operation r needs (v) was set by the
    last operation s before r that gives a value, and s gives v (or v is the initial state
    and there is no such s). Real time forces s before any x invoked after s returned, and x
    before r if x returned before r was invoked. So if every candidate s is followed by
    such an ok x that gives a value, r cannot be placed. The best candidate is the one that
    returns last (an info one returns at +infinity), and "is there an x invoked after t that
    returned before r was invoked" is a suffix minimum over writers sorted by call time.
    This catches the common stale read in O(n log n), where the search may need to try
    every order of the operations concurrent with the stale value's writer.
    """
    writers = sorted(
        (op for op in ok_ops if model.gives(op) is not NO_VALUE), key=lambda op: op.call_ns
    )
    writer_calls = [op.call_ns for op in writers]
    # After the reverse, earliest_return[i] is the earliest (return, writer) among writers[i:].
    earliest_return: list[tuple[float, Operation | None]] = [(math.inf, None)]
    for op in reversed(writers):
        assert op.return_ns is not None
        earliest_return.append(min(earliest_return[-1], (op.return_ns, op), key=_first))
    earliest_return.reverse()
    suppliers = _latest_suppliers(ok_ops, info_ops, model)
    initial = model.init()
    for op in ok_ops:
        needed = model.needs(op)
        if needed is NO_VALUE or model.gives(op) == needed:
            continue  # a cas from v to v could supply itself: leave it to the search
        assert op.return_ns is not None
        latest = _latest_before(suppliers.get(needed), op.return_ns)
        if latest is None and needed != initial:
            return Failure(key, 0, initial, op, (), (), "unwritten", needed)
        supplied_ns = -math.inf if latest is None else _returned(latest)
        position = bisect.bisect_right(writer_calls, supplied_ns)
        overwritten_ns, overwrite = earliest_return[position]
        if overwritten_ns < op.call_ns:
            assert overwrite is not None
            tail = (overwrite,) if latest is None else (latest, overwrite)
            return Failure(key, 0, initial, op, (), tail, "overwritten", needed)
    return None


def _first(item: tuple[float, Operation | None]) -> float:
    return item[0]


def _returned(op: Operation) -> float:
    return math.inf if op.return_ns is None else op.return_ns


Suppliers = tuple[list[int], list[Operation]]  # call times ascending, latest-returning so far


def _latest_suppliers(
    ok_ops: Sequence[Operation], info_ops: Sequence[Operation], model: ValueFlowModel
) -> dict[Hashable, Suppliers]:
    """Per value, its givers sorted by call, each paired with the latest-returning giver
    among those called no later (a prefix maximum), so one bisect answers a query."""
    by_value: dict[Hashable, list[Operation]] = {}
    for op in (*ok_ops, *info_ops):
        given = model.gives(op)
        if given is not NO_VALUE:
            by_value.setdefault(given, []).append(op)
    table: dict[Hashable, Suppliers] = {}
    for value, givers in by_value.items():
        givers.sort(key=lambda op: op.call_ns)
        latest: list[Operation] = []
        for op in givers:
            latest.append(op if not latest or _returned(op) > _returned(latest[-1]) else latest[-1])
        table[value] = ([op.call_ns for op in givers], latest)
    return table


def _latest_before(suppliers: Suppliers | None, moment_ns: int) -> Operation | None:
    """The latest-returning giver called no later than `moment_ns`, if any."""
    if suppliers is None:
        return None
    calls, latest = suppliers
    position = bisect.bisect_right(calls, moment_ns)
    return latest[position - 1] if position else None


def _linked_entries(ok_ops: Sequence[Operation]) -> tuple[list[int], list[int], int]:
    """The sorted call/return list as next/prev arrays; entry 2i calls op i, 2i+1 returns it.

    Returns (next, prev, head). Entry 2m is the tail sentinel and 2m+1 the head sentinel; the
    scan never reaches the tail while an ok operation is unlinearized, because that
    operation's return entry is still in the list ahead of it.
    """
    count = len(ok_ops)

    def sort_key(entry: int) -> tuple[int, int, int]:
        op = ok_ops[entry >> 1]
        moment = op.return_ns if entry & 1 else op.call_ns
        assert moment is not None
        return (moment, entry & 1, entry)

    order = sorted(range(2 * count), key=sort_key)
    tail, head = 2 * count, 2 * count + 1
    chain = [head, *order, tail]
    following = [tail] * (2 * count + 2)
    preceding = [head] * (2 * count + 2)
    for before, after in zip(chain, chain[1:]):
        following[before] = after
        preceding[after] = before
    return following, preceding, head


# A stack frame is a cons cell (slot, is_info, state_before, linearized_before,
# candidates_before, parent). slot is the call entry of an ok operation or the index of an
# info operation; candidates_before is the paused candidate generator of the configuration
# the frame left, or None for a forced step (see `_Search.candidates`). Cons cells make a
# snapshot of the whole stack O(1): that is how the deepest configuration is remembered for
# the failure report without copying the stack at every backtrack.
Candidate = tuple[int, bool, State, bool]  # (slot, is_info, new state, forced)
Frame = tuple[int, bool, State, int, "Iterator[Candidate] | None", Any]
# (stack, state, depth, why it is dead: "stuck" or a _ValueFlow reason, the value concerned)
DeadReason = Literal["stuck", "starved", "overdrawn"]
Deepest = tuple[Frame | None, State, int, DeadReason, Hashable]


class _Search:
    """The search over one partition. `run` is the hot loop; the rest are its helpers."""

    def __init__(
        self, ok_ops: Sequence[Operation], info_ops: Sequence[Operation], model: Model
    ) -> None:
        self.ok_ops, self.info_ops, self.model = ok_ops, info_ops, model
        self.following, self.preceding, self.head = _linked_entries(ok_ops)
        self.info_call_ns = [op.call_ns for op in info_ops]
        self.info_done = [False] * len(info_ops)
        self.flow: _ValueFlow | None = None
        self.observers = [False] * len(ok_ops)  # ok operations that never change the state
        if isinstance(model, ValueFlowModel):
            self.flow = _ValueFlow(ok_ops, info_ops, model)
            self.observers = [value is NO_VALUE for value in self.flow.ok_gives]

    def run(
        self, deadline: float | None, clock: Callable[[], float]
    ) -> tuple[Verdict, Deepest | None]:
        """Depth-first search for a linearization; see the module docstring for the shape."""
        ok_count, flow = len(self.ok_ops), self.flow
        state, linearized, depth, remaining = self.model.init(), 0, 0, ok_count
        top: Frame | None = None
        memo: set[tuple[int, State]] = set()
        deepest: Deepest | None = None
        polls = 0
        while remaining:  # entering a configuration no frame has left yet
            polls += 1
            if polls % POLL_ITERATIONS == 0 and deadline is not None and clock() > deadline:
                return UNKNOWN, deepest
            if flow is not None and not flow.viable(state):
                if deepest is None or depth > deepest[2]:
                    deepest = (top, state, depth, *flow.dead_reason(state))
                candidates: Iterator[Candidate] = iter(())
            else:
                candidates = self.candidates(state)
            while True:  # this configuration's candidates, then backtracking when none is left
                candidate = next(candidates, None)
                if candidate is not None:
                    slot, is_info, new_state, forced = candidate
                    new_linearized = linearized | (1 << (ok_count + slot if is_info else slot >> 1))
                    if (new_linearized, new_state) in memo:
                        continue
                    memo.add((new_linearized, new_state))
                    top = (slot, is_info, state, linearized, None if forced else candidates, top)
                    self.apply(slot, is_info)
                    state, linearized, depth = new_state, new_linearized, depth + 1
                    remaining -= not is_info
                    break
                if deepest is None or depth > deepest[2]:
                    deepest = (top, state, depth, "stuck", NO_VALUE)
                paused: Iterator[Candidate] | None = None
                while paused is None:  # forced frames are popped together with their parent
                    if top is None:
                        return False, deepest
                    slot, is_info, state, linearized, paused, top = top
                    depth, remaining = depth - 1, remaining + (not is_info)
                    self.undo(slot, is_info)
                candidates = paused
        return True, None

    def candidates(self, state: State) -> Iterator[Candidate]:
        """Legal next steps from this configuration, most promising first.

        Every legal candidate is yielded (so the search stays exhaustive) except after a
        forced step: a legal observer (an operation that never changes the state, like a
        read; only a value-flow model can promise that) is yielded alone, as forced. That is
        sound: moving such an operation r to the front of any linearization from here keeps it
        legal, since r's call precedes every pending return and the operations it jumps over
        see the same states. So if r first fails, the configuration fails. (A write of the
        current value is not an observer: later in the order it may change the state.)
        The order of the rest is a heuristic: the operation whose return comes first (it
        must be placed before anything called later) goes first, preceded by the candidates
        it would make illegal; when it is illegal, the candidates after which it becomes
        legal go first.
        """
        step, ok_ops, following, observers = (
            self.model.step, self.ok_ops, self.following, self.observers,
        )
        calls: list[int] = []
        entry = following[self.head]
        while not entry & 1:
            calls.append(entry)
            entry = following[entry]
        must = ok_ops[entry >> 1]
        must_legal, after_must = step(state, must)
        urgent: list[Candidate] = []
        later: list[Candidate] = []
        for call in calls:
            legal, new_state = step(state, ok_ops[call >> 1])
            if not legal:
                continue
            if observers[call >> 1]:
                yield call, False, new_state, True
                return
            if call == entry - 1:
                continue
            if must_legal:
                is_urgent = step(new_state, must)[0] and not step(after_must, ok_ops[call >> 1])[0]
            else:
                is_urgent = step(new_state, must)[0]
            (urgent if is_urgent else later).append((call, False, new_state, False))
        yield from urgent
        if must_legal:
            yield entry - 1, False, after_must, False
        yield from self.info_candidates(state, must, not must_legal)
        yield from later

    def info_candidates(
        self, state: State, must: Operation, enablers_first: bool
    ) -> Iterator[Candidate]:
        """Legal info operations called before `must` returns, enablers of `must` first."""
        step, info_ops, info_done, info_call_ns, flow = (
            self.model.step, self.info_ops, self.info_done, self.info_call_ns, self.flow,
        )
        bound, index = must.return_ns, 0
        assert bound is not None
        later: list[Candidate] = []
        while index < len(info_ops) and info_call_ns[index] <= bound:
            if not info_done[index] and (flow is None or flow.useful(index)):
                legal, new_state = step(state, info_ops[index])
                if legal:
                    if enablers_first and step(new_state, must)[0]:
                        yield index, True, new_state, False
                    else:
                        later.append((index, True, new_state, False))
            index += 1
        yield from later

    def apply(self, slot: int, is_info: bool) -> None:
        if is_info:
            self.info_done[slot] = True
        else:
            _lift(self.following, self.preceding, slot)
        if self.flow is not None:
            self.flow.take(slot, is_info)

    def undo(self, slot: int, is_info: bool) -> None:
        if is_info:
            self.info_done[slot] = False
        else:
            _unlift(self.following, self.preceding, slot)
        if self.flow is not None:
            self.flow.give_back(slot, is_info)


class _ValueFlow:
    """Supply and demand of values among the operations not yet linearized.

    Two counting arguments make a configuration dead (no linearization extends it), given
    the promises of `ValueFlowModel`:
    - starved: an unlinearized ok operation needs v, no unlinearized operation gives v, and
      the state is not v: v can never come back.
    - overdrawn: each unlinearized ok consumer of v (needs v, gives another value) needs v
      restored before it, except the first if the state is v now; so there must be at least
      (consumers - [state == v]) unlinearized givers of v. A cas that succeeded twice fails
      this at once, where a search would try every order of everything concurrent with it.
    Counts change in O(1) per step and are undone on backtrack.
    """

    def __init__(
        self, ok_ops: Sequence[Operation], info_ops: Sequence[Operation], model: ValueFlowModel
    ) -> None:
        self.ok_needs = [model.needs(op) for op in ok_ops]
        self.ok_gives = [model.gives(op) for op in ok_ops]
        self.info_needs = [model.needs(op) for op in info_ops]
        self.info_gives = [model.gives(op) for op in info_ops]
        self.ok_consumes = [
            need if need is not NO_VALUE and give is not NO_VALUE and give != need else NO_VALUE
            for need, give in zip(self.ok_needs, self.ok_gives)
        ]
        self.demand: dict[Hashable, int] = {}  # needs of unlinearized ok operations
        self.consumers: dict[Hashable, int] = {}  # unlinearized ok consumers, per value
        self.supply: dict[Hashable, int] = {}  # gives of unlinearized operations, ok or info
        self.info_demand: dict[Hashable, int] = {}  # needs of unlinearized info operations
        self.starving: set[Hashable] = set()  # demand > 0 and supply == 0
        self.overdrawn: set[Hashable] = set()  # consumers > supply
        for counts, values in (
            (self.demand, self.ok_needs),
            (self.consumers, self.ok_consumes),
            (self.supply, (*self.ok_gives, *self.info_gives)),
            (self.info_demand, self.info_needs),
        ):
            for value in values:
                if value is not NO_VALUE:
                    counts[value] = counts.get(value, 0) + 1
        for value in (*self.demand, *self.consumers):
            self._refresh(value)

    def _refresh(self, value: Hashable) -> None:
        supply = self.supply.get(value, 0)
        if self.demand.get(value, 0) and not supply:
            self.starving.add(value)
        else:
            self.starving.discard(value)
        if self.consumers.get(value, 0) > supply:
            self.overdrawn.add(value)
        else:
            self.overdrawn.discard(value)

    def viable(self, state: State) -> bool:
        starving, overdrawn = self.starving, self.overdrawn
        if starving and (len(starving) > 1 or state not in starving):
            return False
        if not overdrawn:
            return True
        return (
            len(overdrawn) == 1
            and state in overdrawn
            and self.consumers[state] == self.supply.get(state, 0) + 1
        )

    def dead_reason(self, state: State) -> tuple[DeadReason, Hashable]:
        """Why `viable(state)` is False, and for which value."""
        for value in self.starving:
            if value != state:
                return "starved", value
        for value in self.overdrawn:
            allowance = 1 if value == state else 0
            if self.consumers[value] > self.supply.get(value, 0) + allowance:
                return "overdrawn", value
        raise AssertionError("dead_reason() asked about a viable configuration")

    def useful(self, info_index: int) -> bool:
        """Whether placing this info operation now could matter to anything left.

        Why skipping it otherwise is sound: if no unlinearized operation needs the value it
        gives, whatever follows it in a linearization must be a blind write or nothing, so
        dropping it leaves a legal linearization (the same argument as `prune_unobservable`).
        """
        given = self.info_gives[info_index]
        return self.demand.get(given, 0) > 0 or self.info_demand.get(given, 0) > 0

    def take(self, slot: int, is_info: bool) -> None:
        self._count(slot, is_info, -1)

    def give_back(self, slot: int, is_info: bool) -> None:
        self._count(slot, is_info, +1)

    def _count(self, slot: int, is_info: bool, change: int) -> None:
        """Remove (-1) or restore (+1) one operation's needs and gives from the counts."""
        need: Hashable
        consumes: Hashable
        give: Hashable
        if is_info:
            info_need = self.info_needs[slot]
            if info_need is not NO_VALUE:
                self.info_demand[info_need] += change
            # An info operation may be left out, so it demands and consumes nothing.
            need, consumes, give = NO_VALUE, NO_VALUE, self.info_gives[slot]
        else:
            index = slot >> 1
            need, consumes, give = (
                self.ok_needs[index], self.ok_consumes[index], self.ok_gives[index],
            )
        if need is not NO_VALUE:
            self.demand[need] += change
            self._refresh(need)
        if consumes is not NO_VALUE:
            self.consumers[consumes] += change
            self._refresh(consumes)
        if give is not NO_VALUE:
            self.supply[give] += change
            self._refresh(give)


def _lift(following: list[int], preceding: list[int], call: int) -> None:
    """Unlink an operation's call entry and then its return entry."""
    for entry in (call, call + 1):
        before, after = preceding[entry], following[entry]
        following[before] = after
        preceding[after] = before


def _unlift(following: list[int], preceding: list[int], call: int) -> None:
    """Relink the entries `_lift` removed, in reverse order (each kept its old neighbours)."""
    for entry in (call + 1, call):
        following[preceding[entry]] = entry
        preceding[following[entry]] = entry


def _failure(
    key: Hashable,
    ok_ops: Sequence[Operation],
    info_ops: Sequence[Operation],
    model: Model,
    deepest: Deepest,
) -> Failure:
    """Turn the deepest configuration of a failed search into evidence a human can read."""
    top, state, depth, reason, value = deepest
    prefix: list[Operation] = []
    while top is not None:
        slot, is_info, _, _, _, top = top
        prefix.append(info_ops[slot] if is_info else ok_ops[slot >> 1])
    prefix.reverse()
    assert len(prefix) == depth
    placed = {id(op) for op in prefix}
    pending = sorted(
        (op for op in ok_ops if id(op) not in placed), key=lambda op: (op.return_ns, op.index)
    )
    assert pending, "a failed search always leaves an ok operation unplaced"
    unplaced = [op for op in (*ok_ops, *info_ops) if id(op) not in placed]
    if reason == "stuck":  # the first pending return could not be placed
        stuck = pending[0]
        bound = stuck.return_ns
        assert bound is not None
        related = [op for op in unplaced if op is not stuck and op.call_ns <= bound]
    else:  # a counting argument on `value` (see _ValueFlow)
        assert isinstance(model, ValueFlowModel)
        stuck = next(op for op in pending if model.needs(op) == value and (
            reason == "starved" or model.gives(op) not in (value, NO_VALUE)
        ))
        related = [
            op for op in unplaced
            if op is not stuck and (model.needs(op) == value or model.gives(op) == value)
        ]
    concurrent = tuple(sorted(related, key=lambda op: (op.call_ns, op.index)))
    return Failure(
        key=key,
        linearized=depth,
        state=state,
        stuck=stuck,
        concurrent=concurrent,
        prefix_tail=_prefix_tail(prefix, stuck, concurrent),
        reason=reason,
        needed=None if value is NO_VALUE else value,
    )


def _prefix_tail(
    prefix: Sequence[Operation], stuck: Operation, concurrent: Sequence[Operation]
) -> tuple[Operation, ...]:
    """The end of the prefix: its last few operations and those overlapping the window."""
    window_start = min(op.call_ns for op in (stuck, *concurrent))
    tail = [
        op
        for position, op in enumerate(prefix)
        if position >= len(prefix) - PREFIX_CONTEXT
        or op.return_ns is None
        or op.return_ns >= window_start
    ]
    return tuple(tail[-WINDOW_OPERATIONS_MAX:])
