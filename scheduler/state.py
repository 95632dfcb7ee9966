"""The replicated scheduler state: jobs, executions, attempts, nodes; and its snapshot.

Rules of this module:

1. Plain records, no behaviour beyond derived values: the handlers in `machine.py` and
   `attempts.py` change them, through the lifecycle tables.
2. Derived fields (a job's parsed schedule and next due tick, a node's used tokens, the set
   of queued attempts, the parent -> children index) are never in the snapshot; `restore`
   recomputes them, so there is one source of truth.
3. Everything is bounded: live executions and attempts are removed when they end (a
   summary stays in the job's short `recent_*` lists), idempotency keys are kept for the
   last `IDEMPOTENCY_KEYS_MAX` runs, outcome logs per job hold `RECENT_MAX` entries.
4. Iteration order is insertion order and the snapshot keeps it, so a restored replica
   behaves exactly like the one that wrote the snapshot.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from scheduler.commands import AttemptKey, ExecKey
from scheduler.history import (
    append_row, decode_executions, decode_outcomes, encode_execution, encode_outcome,
    execution_row, outcome_row, pack_rows,
)
from scheduler.job import JobSpec
from scheduler.results import Outcome
from scheduler.schedule import EverySchedule, Schedule, ticks_between

__all__ = ["Attempt", "Execution", "Firing", "JobRecord", "NodeRecord", "SchedulerState",
           "RANGE_TICKS_MAX", "tick_range"]

RECENT_MAX: Final = 32
IDEMPOTENCY_KEYS_MAX: Final = 10_000
RETIRED_MAX: Final = 10_000
RANGE_TICKS_MAX: Final = 4096  # ticks one missed/skipped record may cover, unless @every (O(1))
SNAPSHOT_FORMAT: Final = 2  # 2: histories as packed (history.py's vocabularies); 1 is still read


@dataclass(slots=True)
class JobRecord:
    spec: JobSpec
    version: int  # log index of the PutJob that wrote this definition
    anchor_ms: int  # creation or last update time (the command's now_ms): phases @every
    cursor_ms: int  # the last tick with an outcome; anchor_ms while there is none
    state: str  # enabled | disabled (lifecycle.JOB_TRANSITIONS)
    schedule: Schedule  # derived
    next_tick_ms: int | None  # derived: schedule.next_after(cursor_ms)
    fired: int = 0
    skipped: int = 0
    missed: int = 0
    live_executions: int = 0
    last_run_ms: int = -1  # name (tick) of the last on-demand run, to keep names unique
    last_success_ms: int | None = None
    last_error_ms: int | None = None
    # The short histories, packed (scheduler/history.py says why); read them through
    # `recent` and `recent_executions`.
    _recent: bytes = field(default=b"", repr=False)
    _recent_count: int = field(default=0, repr=False)
    _executions: bytes = field(default=b"", repr=False)
    _executions_count: int = field(default=0, repr=False)

    @property
    def recent(self) -> list[Outcome]:
        """The last RECENT_MAX outcomes, oldest first (a fresh list: changing it changes
        nothing; assign to replace the history)."""
        return decode_outcomes(self._recent, self.spec.name)

    @recent.setter
    def recent(self, outcomes: Iterable[Outcome]) -> None:
        name = self.spec.name
        self._recent, self._recent_count = pack_rows(
            (outcome_row(outcome, name) for outcome in outcomes), RECENT_MAX)

    @property
    def recent_executions(self) -> list[list[Any]]:
        """The last ended executions as [tick, slot, state, attempts], oldest first."""
        return decode_executions(self._executions)

    @recent_executions.setter
    def recent_executions(self, rows: Iterable[Sequence[Any]]) -> None:
        self._executions, self._executions_count = pack_rows(
            execution_row(*row) for row in rows)

    def note(self, outcome: Outcome) -> None:
        self._recent, self._recent_count = append_row(
            self._recent, self._recent_count, encode_outcome(outcome, self.spec.name), RECENT_MAX)

    def note_execution(self, tick: int, slot: int, state: str, attempts: int, keep: int) -> None:
        """An execution ended; keep the last `keep` of them."""
        self._executions, self._executions_count = append_row(
            self._executions, self._executions_count,
            encode_execution(tick, slot, state, attempts), keep)


@dataclass(slots=True)
class Execution:
    key: ExecKey
    trigger: str  # schedule | run-now | parent
    state: str  # lifecycle.EXECUTION_TRANSITIONS
    attempts: int  # attempts made so far; the current one is number `attempts`
    ready_at_ms: int  # when waiting: the earliest time for the next attempt
    weight: int
    priority: int
    retries: int  # copied at fire time, so a later job update does not change a run
    nodes_tried: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Attempt:
    key: AttemptKey
    node: str | None  # None while queued
    state: str  # queued | leased (only live attempts are kept)
    deadline_ms: int  # lease expiry when leased, claim deadline when queued (leader clock)
    weight: int
    priority: int


@dataclass(slots=True)
class Firing:
    """The slots of one firing, to know when all succeeded (then children run)."""

    slots: int
    succeeded: int = 0
    ended: int = 0


@dataclass(slots=True)
class NodeRecord:
    name: str
    tags: dict[str, str]
    tokens: int
    reserved_tokens: int
    state: str  # up | down
    last_seen_ms: int
    load_permille: int = 0
    used_tokens: int = 0  # derived: weights of attempts leased to this node

    def capacity(self, priority: int) -> int:
        """Free tokens for a job of `priority` (Dianemo): capacity falls with the reported load
        and is zero from 90% load on; priority-2 jobs may not touch the reserved tokens."""
        if self.state != "up" or self.load_permille >= 900:
            return 0
        effective = self.tokens * (1000 - self.load_permille) // 1000
        if priority != 1:
            effective -= self.reserved_tokens
        return effective - self.used_tokens


def tick_range(schedule: Schedule, after_ms: int, until_ms: int,
               limit: int = RANGE_TICKS_MAX) -> tuple[int, int, int] | None:
    """(first, last, count) of the ticks in (after_ms, until_ms], or None if there are none.

    Exact and O(1) for `@every`; otherwise at most `limit` ticks are walked and the range
    ends at the limit-th tick (the caller records the rest in a later range).
    """
    if isinstance(schedule, EverySchedule):
        first = schedule.next_after(after_ms)
        if first is None or first > until_ms:
            return None
        period = schedule.period_ms
        last = schedule.anchor_ms + (until_ms - schedule.anchor_ms) // period * period
        return first, last, (last - first) // period + 1
    ticks = ticks_between(schedule, after_ms, until_ms, limit)
    if not ticks:
        return None
    return ticks[0], ticks[-1], len(ticks)


class SchedulerState:
    """All replicated data. `machine.SchedulerStateMachine` is the only writer."""

    def __init__(self) -> None:
        self.applied_index = 0
        self.jobs: dict[str, JobRecord] = {}
        self.executions: dict[ExecKey, Execution] = {}
        self.attempts: dict[AttemptKey, Attempt] = {}
        self.firings: dict[tuple[str, int], Firing] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.idempotency: dict[str, list[Any]] = {}  # key -> [job, run tick]
        self.retired: dict[str, int] = {}  # deleted job -> its cursor: a re-created job's
        # ticks start after it, so a tick's identity (name, time) is never reused
        self.totals: dict[str, int] = {"fired": 0, "skipped": 0, "missed": 0, "rejected": 0}
        # derived
        self.queued: dict[AttemptKey, None] = {}
        self.children: dict[str, list[str]] = {}

    def make_job(self, spec: JobSpec, version: int, anchor_ms: int, cursor_ms: int,
                 state: str) -> JobRecord:
        schedule = spec.schedule_obj(anchor_ms)
        return JobRecord(spec=spec, version=version, anchor_ms=anchor_ms, cursor_ms=cursor_ms,
                         state=state, schedule=schedule,
                         next_tick_ms=schedule.next_after(cursor_ms))

    def link_parent(self, name: str, old: str | None, new: str | None) -> None:
        """Keep the parent -> children index right when `name` changes its parent."""
        children = self.children
        if old == new:
            return
        if old is not None and name in children.get(old, ()):
            children[old].remove(name)
            if not children[old]:
                del children[old]
        if new is not None:
            children[new] = sorted([*children.get(new, []), name])

    def retire_job(self, name: str) -> JobRecord:
        """Remove a job (deleted, or ephemeral after its first success). Its cursor is kept
        (the last RETIRED_MAX of them), so a job re-created under the name never reuses a tick."""
        job = self.jobs.pop(name)
        self.link_parent(name, job.spec.parent_job, None)
        self.retired[name] = job.cursor_ms
        if len(self.retired) > RETIRED_MAX:
            del self.retired[next(iter(self.retired))]
        return job

    def reindex_children(self) -> None:
        index: dict[str, list[str]] = {}
        for name, job in self.jobs.items():
            if job.spec.parent_job is not None:
                index.setdefault(job.spec.parent_job, []).append(name)
        self.children = {parent: sorted(kids) for parent, kids in index.items()}

    # ---- snapshot -----------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """msgpack of [format, applied, jobs, executions, attempts, firings, nodes, idempotency,
        retired, totals], packed one job row at a time into one buffer.

        Format 2 writes each job's two histories as the packed bytes it holds
        (scheduler/history.py), with their row counts: format 1 decoded every row to an
        `Outcome` and packed it again, 60 us per full job, 6 s for 100k jobs on the event
        loop of a leader compacting its log (longer than an election timeout); 2 is ~10x
        quicker and a third of the size. The packed rows use history.py's vocabularies, so
        changing those means a format 3. `restore` reads both formats."""
        out, packer = io.BytesIO(), msgpack.Packer(use_bin_type=True)
        write, pack = out.write, packer.pack
        write(packer.pack_array_header(10))
        write(pack(SNAPSHOT_FORMAT))
        write(pack(self.applied_index))
        write(packer.pack_array_header(len(self.jobs)))
        for j in self.jobs.values():
            write(pack([j.spec.to_json(), j.version, j.anchor_ms, j.cursor_ms, j.state, j.fired,
                        j.skipped, j.missed, j.live_executions, j.last_run_ms,
                        j.last_success_ms, j.last_error_ms,
                        j._recent, j._recent_count, j._executions, j._executions_count]))
        write(pack([[list(e.key), e.trigger, e.state, e.attempts, e.ready_at_ms, e.weight,
                     e.priority, e.retries, e.nodes_tried] for e in self.executions.values()]))
        write(pack([[list(a.key), a.node, a.state, a.deadline_ms, a.weight, a.priority]
                    for a in self.attempts.values()]))
        write(pack([[job, tick, f.slots, f.succeeded, f.ended]
                    for (job, tick), f in self.firings.items()]))
        write(pack([[n.name, n.tags, n.tokens, n.reserved_tokens, n.state, n.last_seen_ms,
                     n.load_permille] for n in self.nodes.values()]))
        write(pack(list(self.idempotency.items())))
        write(pack(list(self.retired.items())))
        write(pack(self.totals))
        data: bytes = out.getvalue()  # no copy: BytesIO hands over its buffer
        return data

    @classmethod
    def restore(cls, data: bytes) -> SchedulerState:
        # Read row by row: the decoded form of 100k jobs' rows is several times the
        # snapshot's size, and a server restores while it holds the snapshot bytes too.
        unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False, strict_map_key=False,
                                    max_buffer_size=max(len(data), 1 << 20))
        assert unpacker.read_array_header() == 10, "a scheduler snapshot has 10 parts"
        version, applied = unpacker.unpack(), unpacker.unpack()
        if version not in (1, 2):
            raise ValueError(f"unknown scheduler snapshot format {version!r} (this version "
                             f"reads 1 and 2)")
        state = cls()
        state.applied_index = applied
        restore_job = _restore_job if version == 2 else _restore_job_format_1
        for _ in range(unpacker.read_array_header()):
            restore_job(state, unpacker.unpack())
        (executions, attempts, firings, nodes, idempotency, retired,
         totals) = (unpacker.unpack() for _ in range(7))
        for (key_fields, trigger, execution_state, made, ready_at, weight, priority, retries,
             tried) in executions:
            key = ExecKey(*key_fields)
            state.executions[key] = Execution(key, trigger, execution_state, made, ready_at,
                                              weight, priority, retries, list(tried))
        for row in attempts:
            attempt = Attempt(AttemptKey(*row[0]), *row[1:])
            state.attempts[attempt.key] = attempt
        for job, tick, slots, succeeded, ended in firings:
            state.firings[(job, tick)] = Firing(slots, succeeded, ended)
        for name, tags, tokens, reserved, node_state, seen, load in nodes:
            state.nodes[name] = NodeRecord(name, dict(tags), tokens, reserved, node_state, seen,
                                           load)
        state.idempotency = {key: list(value) for key, value in idempotency}
        state.retired = {name: cursor for name, cursor in retired}
        state.totals = dict(totals)
        state._rebuild_derived()
        return state

    def _rebuild_derived(self) -> None:
        for attempt in self.attempts.values():
            if attempt.state == "queued":
                self.queued[attempt.key] = None
            elif attempt.node is not None and attempt.node in self.nodes:
                self.nodes[attempt.node].used_tokens += attempt.weight
        self.reindex_children()


def _outcome_fields(o: Outcome) -> list[Any]:
    return [o.job, o.kind, o.first_ms, o.last_ms, o.count, o.reason, o.trigger, o.slots]


def _restore_job(state: SchedulerState, row: list[Any]) -> None:
    recent, recent_count, executions, executions_count = row[12:]
    if not (isinstance(recent, bytes) and isinstance(executions, bytes)
            and 0 <= recent_count <= RECENT_MAX and 0 <= executions_count):
        raise ValueError(f"malformed job row in a scheduler snapshot: {row[0]!r}")
    job = _restored_job(state, row[:12])
    job._recent, job._recent_count = recent, recent_count
    job._executions, job._executions_count = executions, executions_count


def _restore_job_format_1(state: SchedulerState, row: list[Any]) -> None:
    """Format 1: the histories as rows of plain fields (snapshots written before format 2)."""
    recent, recent_executions = row[12:]
    job = _restored_job(state, row[:12])
    job.recent = (Outcome(*fields) for fields in recent)
    job.recent_executions = recent_executions


def _restored_job(state: SchedulerState, head: list[Any]) -> JobRecord:
    """A job from the twelve fields both formats start its row with: the definition, its
    place and its counters (the histories follow, in each format's own form)."""
    (spec_json, version, anchor, cursor, job_state, fired, skipped, missed, live, last_run,
     last_success, last_error) = head
    spec = JobSpec.from_json(spec_json)
    job = state.make_job(spec, version, anchor, cursor, job_state)
    job.fired, job.skipped, job.missed, job.live_executions = fired, skipped, missed, live
    job.last_run_ms, job.last_success_ms, job.last_error_ms = last_run, last_success, last_error
    state.jobs[spec.name] = job
    return job
