"""`SchedulerStateMachine`: the replicated, deterministic heart of raftcron.

Rules of this module (the guarantees in DESIGN.md rest on them):

1. Pure: `apply(index, data) -> Result` depends only on the state and the entry. No clock,
   no randomness, no I/O; times come inside commands.
2. A tick gets an outcome only if it is the job's *next due tick* (`schedule.next_after`
   of the cursor, the last tick with an outcome). So a duplicate or stale Fire, from this
   leader or an old one, is rejected, and every tick gets at most one outcome, in order.
3. Late is missed: a Fire whose `now_ms` is more than `grace_seconds` after the tick records
   it as missed, not fired. When in doubt, miss rather than fire twice.
4. Malformed or impossible commands are rejected with a reason and change nothing. An
   exception escaping `apply` is a bug in this package, never a consequence of input.

Bug switches (`bugs`, for teaching; docs/scheduler.md): `fire-twice` accepts a Fire for a
tick that already has an outcome; `leader-clock-trust` accepts any later schedule tick,
skipping the cursor's successors, as a leader that trusts its clock over the log would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from scheduler import attempts
from scheduler.commands import (
    Assign, Batch, Claim, Command, CommandError, DeleteJob, Expire, Finish, Fire, FireItem,
    Heartbeats, NodeDown, PutJob, RecordTicks, RegisterNode, Renew, RunNow, ToggleJob,
    decode_command,
)
from scheduler.job import JobSpec, JobValidationError
from scheduler.lifecycle import IllegalTransition, step
from scheduler.results import Effect, JobChanged, NodeChanged, Outcome, Result, ok, rejected
from scheduler.schedule import EverySchedule
from scheduler.state import (
    IDEMPOTENCY_KEYS_MAX, RANGE_TICKS_MAX, JobRecord, NodeRecord, SchedulerState, tick_range,
)

__all__ = ["SCHEDULER_BUGS", "SchedulerStateMachine"]

SCHEDULER_BUGS: Final = frozenset({"fire-twice", "leader-clock-trust", "lease-no-drift"})
SUPERSEDE_SCAN_MAX: Final = 100_000


class SchedulerStateMachine:
    """The scheduler state machine; also a `ServerMachine` part and a `SimCluster` machine."""

    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.state = SchedulerState()
        self.bugs = bugs & SCHEDULER_BUGS
        self._handlers: dict[type[Any], Callable[[int, Any], Result]] = {
            PutJob: self._put_job, DeleteJob: self._delete_job, ToggleJob: self._toggle_job,
            Fire: self._fire, RecordTicks: self._record_ticks, RunNow: self._run_now,
            Assign: lambda _i, c: attempts.assign(self.state, c),
            Claim: lambda _i, c: attempts.claim(self.state, c),
            Renew: lambda _i, c: attempts.renew(self.state, c),
            Finish: lambda _i, c: attempts.finish(self.state, c),
            Expire: lambda _i, c: attempts.expire(self.state, c),
            RegisterNode: self._register_node, Heartbeats: self._heartbeats,
            NodeDown: self._node_down,
        }

    # ---- the runtime interface ----------------------------------------------------------------
    def apply(self, index: int, data: bytes) -> Result:
        """Apply log entry `index`; malformed data is a rejected result, not an exception."""
        assert index > self.state.applied_index, f"apply {index} after {self.state.applied_index}"
        self.state.applied_index = index
        try:
            command = decode_command(data)
        except CommandError as error:
            self.state.totals["rejected"] += 1
            return rejected("malformed", str(error))
        return self._apply_decoded(index, command)

    def apply_command(self, command: Command, index: int | None = None) -> Result:
        """Apply a command object (tests, benchmarks): the next index unless one is given."""
        index = self.state.applied_index + 1 if index is None else index
        assert index > self.state.applied_index
        self.state.applied_index = index
        return self._apply_decoded(index, command)

    def skip(self, index: int) -> None:
        """A Raft no-op or configuration entry: nothing to do but count it."""
        assert index > self.state.applied_index
        self.state.applied_index = index

    def snapshot(self) -> bytes:
        return self.state.snapshot()

    def restore(self, data: bytes) -> None:
        self.state = SchedulerState.restore(data)

    # ---- dispatch -----------------------------------------------------------------------------
    def _apply_decoded(self, index: int, command: Command) -> Result:
        if isinstance(command, Batch):
            children = tuple(self._apply_one(index, c) for c in command.commands)
            return Result(True, children=children, value=len(children))
        return self._apply_one(index, command)

    def _apply_one(self, index: int, command: Command) -> Result:
        try:
            result = self._handlers[type(command)](index, command)
        except IllegalTransition as error:
            result = rejected("illegal_transition", str(error))
        if not result.ok:
            self.state.totals["rejected"] += 1
        return result

    # ---- jobs ---------------------------------------------------------------------------------
    def _put_job(self, index: int, cmd: PutJob) -> Result:
        try:
            spec = JobSpec.from_json(cmd.job)
        except JobValidationError as error:
            return rejected("invalid_job", str(error))
        jobs = self.state.jobs
        existing = jobs.get(spec.name)
        problem = self._parent_problem(spec)
        if problem:
            return rejected("bad_parent", problem)
        if existing is not None and existing.spec == spec:
            return ok(value={"version": existing.version, "unchanged": True})
        new_state = step("job", existing.state if existing else "absent",
                         "put_disabled" if spec.disabled else "put")
        effects: list[Effect] = []
        cursor = max(cmd.now_ms, self.state.retired.pop(spec.name, 0))
        if existing is not None:
            cursor = max(cursor, existing.cursor_ms)
            self._supersede(existing, cmd.now_ms, effects)
        job = self.state.make_job(spec, index, cmd.now_ms, cursor, new_state)
        if existing is not None:
            _carry_over(existing, job)
        jobs[spec.name] = job
        self.state.link_parent(spec.name, existing.spec.parent_job if existing else None,
                               spec.parent_job)
        effects.append(JobChanged(spec.name))
        return ok(effects, value={"version": index, "next_tick_ms": job.next_tick_ms})

    def _parent_problem(self, spec: JobSpec) -> str:
        """Dkron's rules: the parent must exist first; and no cycles (ours)."""
        parent = spec.parent_job
        if parent is None:
            return ""
        if parent not in self.state.jobs:
            return f"parent job {parent!r} does not exist"
        for _ in range(len(self.state.jobs) + 1):
            if parent is None:
                return ""
            if parent == spec.name:
                return "the parent chain leads back to the job (a cycle)"
            record = self.state.jobs.get(parent)
            parent = record.spec.parent_job if record is not None else None
        return ""

    def _supersede(self, job: JobRecord, now_ms: int, effects: list[Effect]) -> None:
        """An update replaces the definition from `now_ms` on; the old definition's ticks in
        (cursor, now] that have no outcome yet are recorded as missed, never dropped."""
        found = tick_range(job.schedule, job.cursor_ms, now_ms, SUPERSEDE_SCAN_MAX)
        if found is None:
            return
        first, last, count = found
        outcome = Outcome(job.spec.name, "missed", first, last, count, "superseded")
        job.missed += count
        self.state.totals["missed"] += count
        job.note(outcome)
        effects.append(outcome)

    def _delete_job(self, _index: int, cmd: DeleteJob) -> Result:
        job = self.state.jobs.get(cmd.name)
        if job is None:
            return rejected("unknown_job", f"no job {cmd.name!r}")
        if self.state.children.get(cmd.name):
            return rejected("has_children", f"jobs {self.state.children[cmd.name]} depend on it")
        step("job", job.state, "delete")
        effects: list[Effect] = []
        self.state.retire_job(cmd.name)
        attempts.end_waiting(self.state, cmd.name, cmd.now_ms, effects)
        effects.append(JobChanged(cmd.name))
        return ok(effects)

    def _toggle_job(self, _index: int, cmd: ToggleJob) -> Result:
        job = self.state.jobs.get(cmd.name)
        if job is None:
            return rejected("unknown_job", f"no job {cmd.name!r}")
        disable = (job.state == "enabled") if cmd.disabled is None else cmd.disabled
        job.state = step("job", job.state, "disable" if disable else "enable")
        return ok([JobChanged(cmd.name)], value={"disabled": job.state == "disabled"})

    # ---- ticks --------------------------------------------------------------------------------
    def _fire(self, _index: int, cmd: Fire) -> Result:
        children = tuple(self._fire_item(cmd, item) for item in cmd.items)
        return Result(True, children=children, value=len(children))

    def _fire_item(self, cmd: Fire, item: FireItem) -> Result:
        job = self.state.jobs.get(item.job)
        if job is None:
            return rejected("unknown_job", f"no job {item.job!r}")
        if item.version != job.version:
            return rejected("stale_version", f"job is at version {job.version}")
        tick = item.tick_ms
        if tick > cmd.now_ms:
            return rejected("future_tick", f"tick {tick} is after now {cmd.now_ms}")
        if tick != job.next_tick_ms and not self._bug_accepts(job, tick):
            return rejected("not_next_tick", f"the next due tick is {job.next_tick_ms}")
        count = job.spec.tags.count
        if count is not None and len(item.nodes) != count:
            return rejected("wrong_slot_count", f"the job has {count} slots per tick")
        named = [node for node in item.nodes if node is not None]
        if len(set(named)) != len(named):
            return rejected("duplicate_node", "one node may hold one slot of a firing")
        spec = job.spec
        effects: list[Effect] = []
        if cmd.now_ms - tick > spec.grace_seconds * 1000:
            kind, reason = "missed", "late"
        elif job.state == "disabled":
            kind, reason = "skipped", "disabled"
        elif spec.concurrency == "forbid" and job.live_executions > 0:
            kind, reason = "skipped", "overlap"
        else:
            kind, reason = "fired", ""
        step("job", job.state, {"missed": "miss", "skipped": "skip", "fired": "fire"}[kind])
        slots = len(item.nodes) if kind == "fired" else 0
        if kind == "fired":
            attempts.create_firing(self.state, job, tick, item.nodes, cmd.now_ms, cmd.lease_ms,
                                   cmd.queue_ms, effects)
        self._record(job, Outcome(spec.name, kind, tick, tick, 1, reason, "schedule", slots),
                     effects)
        return ok(effects)

    def _bug_accepts(self, job: JobRecord, tick: int) -> bool:
        is_tick = job.schedule.first_at_or_after(tick) == tick
        if "fire-twice" in self.bugs and tick <= job.cursor_ms and tick > job.anchor_ms:
            return is_tick
        if "leader-clock-trust" in self.bugs and tick > job.cursor_ms:
            return is_tick
        return False

    def _record(self, job: JobRecord, outcome: Outcome, effects: list[Effect]) -> None:
        """Count an outcome and move the cursor past it (never backwards)."""
        totals = self.state.totals
        if outcome.kind == "fired":
            job.fired += outcome.count
            totals["fired"] += outcome.count
        elif outcome.kind == "skipped":
            job.skipped += outcome.count
            totals["skipped"] += outcome.count
        else:
            job.missed += outcome.count
            totals["missed"] += outcome.count
        if outcome.last_ms > job.cursor_ms:
            job.cursor_ms = outcome.last_ms
            job.next_tick_ms = job.schedule.next_after(outcome.last_ms)
        job.note(outcome)
        effects.append(outcome)

    def _record_ticks(self, _index: int, cmd: RecordTicks) -> Result:
        job = self.state.jobs.get(cmd.job)
        if job is None:
            return rejected("unknown_job", f"no job {cmd.job!r}")
        if cmd.version != job.version:
            return rejected("stale_version", f"job is at version {job.version}")
        if cmd.first_ms != job.next_tick_ms:
            return rejected("not_next_tick", f"the next due tick is {job.next_tick_ms}")
        if cmd.last_ms > cmd.now_ms:
            return rejected("future_tick", f"tick {cmd.last_ms} is after now {cmd.now_ms}")
        count = self._range_count(job, cmd.first_ms, cmd.last_ms)
        if isinstance(count, str):
            return rejected("bad_range", count)
        if cmd.outcome == "missed":
            if cmd.now_ms - cmd.last_ms <= job.spec.grace_seconds * 1000:
                return rejected("not_late", "the last tick is still within its grace window")
            step("job", job.state, "miss")
            reason = "late"
        else:
            if job.state != "disabled":
                return rejected("not_disabled", "only a disabled job's ticks are skipped so")
            step("job", job.state, "skip")
            reason = "disabled"
        effects: list[Effect] = []
        self._record(job, Outcome(job.spec.name, cmd.outcome, cmd.first_ms, cmd.last_ms, count,
                                  reason), effects)
        return ok(effects)

    def _range_count(self, job: JobRecord, first: int, last: int) -> int | str:
        """How many ticks first..last holds, or why that is not a range of the job's ticks."""
        schedule = job.schedule
        if isinstance(schedule, EverySchedule):
            if (last - schedule.anchor_ms) % schedule.period_ms:
                return f"{last} is not a tick of the job"
            return (last - first) // schedule.period_ms + 1
        found = tick_range(schedule, job.cursor_ms, last, RANGE_TICKS_MAX + 1)
        if found is None or found[1] != last:
            return f"{last} is not a tick of the job"
        if found[2] > RANGE_TICKS_MAX:
            return f"a range may hold at most {RANGE_TICKS_MAX} ticks of this schedule"
        return found[2]

    def _run_now(self, _index: int, cmd: RunNow) -> Result:
        known = self.state.idempotency.get(cmd.idempotency_key)
        if known is not None:
            return ok(value={"job": known[0], "run_ms": known[1], "duplicate": True})
        job = self.state.jobs.get(cmd.job)
        if job is None:
            return rejected("unknown_job", f"no job {cmd.job!r}")
        step("job", job.state, "run")
        effects: list[Effect] = []
        run_ms = attempts.start_run(self.state, job, cmd.now_ms, "run-now", effects)
        keys = self.state.idempotency
        keys[cmd.idempotency_key] = [cmd.job, run_ms]
        if len(keys) > IDEMPOTENCY_KEYS_MAX:
            del keys[next(iter(keys))]
        return ok(effects, value={"job": cmd.job, "run_ms": run_ms, "duplicate": False})

    # ---- nodes --------------------------------------------------------------------------------
    def _register_node(self, _index: int, cmd: RegisterNode) -> Result:
        node = self.state.nodes.get(cmd.node)
        new_state = step("node", node.state if node else "absent", "register")
        if node is None:
            node = NodeRecord(cmd.node, dict(cmd.tags), cmd.tokens, cmd.reserved_tokens,
                              new_state, cmd.now_ms)
            self.state.nodes[cmd.node] = node
        else:
            node.tags, node.tokens, node.reserved_tokens = dict(cmd.tags), cmd.tokens, \
                cmd.reserved_tokens
            node.state, node.last_seen_ms = new_state, max(node.last_seen_ms, cmd.now_ms)
        return ok([NodeChanged(cmd.node, new_state)])

    def _heartbeats(self, _index: int, cmd: Heartbeats) -> Result:
        effects: list[Effect] = []
        unknown = []
        for beat in cmd.beats:
            node = self.state.nodes.get(beat.node)
            if node is None:
                unknown.append(beat.node)
                continue
            new_state = step("node", node.state, "heartbeat")
            if new_state != node.state:
                effects.append(NodeChanged(beat.node, new_state))
            node.state = new_state
            node.last_seen_ms = max(node.last_seen_ms, beat.seen_ms)
            node.load_permille = beat.load_permille
        return ok(effects, value={"unknown": unknown})

    def _node_down(self, _index: int, cmd: NodeDown) -> Result:
        node = self.state.nodes.get(cmd.node)
        if node is None:
            return rejected("unknown_node", f"no node {cmd.node!r}")
        node.state = step("node", node.state, "down")
        return ok([NodeChanged(cmd.node, node.state)])


def _carry_over(old: JobRecord, new: JobRecord) -> None:
    """Counters and live-run bookkeeping survive an update; the definition does not."""
    new.fired, new.skipped, new.missed = old.fired, old.skipped, old.missed
    new.live_executions, new.last_run_ms = old.live_executions, old.last_run_ms
    new.last_success_ms, new.last_error_ms = old.last_success_ms, old.last_error_ms
    new._recent, new._recent_count = old._recent, old._recent_count
    new._executions, new._executions_count = old._executions, old._executions_count
