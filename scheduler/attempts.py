"""Executions and attempts: creation, leases, finishing, expiry, retries, children.

Rules of this module:

1. Check, then change: every handler validates the whole command before it touches state,
   so a rejected command leaves the state exactly as it was.
2. An attempt is live only while queued or leased. The lease deadline is in leader-clock
   milliseconds and is the only "running" flag: nothing here believes a node is running
   something because it said so once (Dkron #349, #1483).
3. Placement is the leader's choice, re-checked here: an assigned node that is unknown, down,
   lacks the tags or the tokens, or already holds another slot of the same firing, gets the
   slot queued instead (a node can then claim it). The replicated log is the authority.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from scheduler.commands import AttemptKey, Assign, Claim, ExecKey, Expire, Finish, Renew
from scheduler.job import JobSpec
from scheduler.lifecycle import step
from scheduler.results import (
    AttemptEnd, Effect, JobChanged, Lease, Outcome, Result, Waiting, ok, rejected,
)
from scheduler.state import Attempt, Execution, Firing, JobRecord, SchedulerState

__all__ = ["assign", "backoff_ms", "claim", "create_firing", "expire", "finish", "renew",
           "start_run"]

BACKOFF_BASE_MS: Final = 1_000
BACKOFF_MAX_MS: Final = 60_000
RECENT_EXECUTIONS_MAX: Final = 16


def backoff_ms(attempts_made: int) -> int:
    """Delay before retry number `attempts_made` (1, 2, 4 ... s, capped at a minute)."""
    return min(BACKOFF_BASE_MS << min(attempts_made - 1, 16), BACKOFF_MAX_MS)


def eligible(state: SchedulerState, node_name: str, spec: JobSpec, job: str, tick: int) -> bool:
    """May `node_name` take a slot of firing (job, tick) now? Tags, liveness, tokens, and one
    slot per node per firing (`role: web:2` means two distinct nodes)."""
    node = state.nodes.get(node_name)
    if node is None or not spec.tags.matches(node.tags):
        return False
    if node.capacity(spec.priority) < spec.weight:
        return False
    firing = state.firings.get((job, tick))
    if firing is None:
        return True
    for slot in range(firing.slots):
        execution = state.executions.get(ExecKey(job, tick, slot))
        if execution is None or execution.attempts == 0:
            continue
        held = state.attempts.get(AttemptKey(job, tick, slot, execution.attempts))
        if held is not None and held.node == node_name:
            return False
    return True


def _open_attempt(state: SchedulerState, key: AttemptKey, node: str | None, now_ms: int,
                  lease_ms: int, queue_ms: int, execution: Execution, why: str,
                  effects: list[Effect]) -> None:
    if node is None:
        attempt = Attempt(key, None, "queued", now_ms + queue_ms, execution.weight,
                          execution.priority)
        state.queued[key] = None
        effects.append(Lease(key, None, attempt.deadline_ms, "queue"))
    else:
        attempt = Attempt(key, node, "leased", now_ms + lease_ms, execution.weight,
                          execution.priority)
        state.nodes[node].used_tokens += execution.weight
        execution.nodes_tried.append(node)
        effects.append(Lease(key, node, attempt.deadline_ms, why))
    state.attempts[key] = attempt


def create_firing(state: SchedulerState, job: JobRecord, tick: int, nodes: Sequence[str | None],
                  now_ms: int, lease_ms: int, queue_ms: int, effects: list[Effect]) -> None:
    """A fired tick: one execution per slot, each with attempt 1 leased or queued."""
    spec = job.spec
    state.firings[(spec.name, tick)] = Firing(slots=len(nodes))
    for slot, node in enumerate(nodes):
        key = ExecKey(spec.name, tick, slot)
        if key in state.executions:
            continue  # only under the fire-twice bug: the tick was fired before
        execution = Execution(key, "schedule", step("execution", "waiting", "assign"), 1, now_ms,
                              spec.weight, spec.priority, spec.retries)
        state.executions[key] = execution
        job.live_executions += 1
        if node is not None and not eligible(state, node, spec, spec.name, tick):
            node = None
        _open_attempt(state, AttemptKey(spec.name, tick, slot, 1), node, now_ms, lease_ms,
                      queue_ms, execution, "fire", effects)


def start_run(state: SchedulerState, job: JobRecord, now_ms: int, trigger: str,
              effects: list[Effect]) -> int:
    """An on-demand run (run-now, or a child after its parent): executions that wait for
    the planner to place them. Returns the run's name (its "tick"), unique for the job and
    never equal to a schedule tick, so attempts stay uniquely named."""
    spec = job.spec
    tick = max(now_ms, job.last_run_ms + 1)
    while job.schedule.first_at_or_after(tick) == tick or (spec.name, tick) in state.firings:
        tick += 1
    job.last_run_ms = tick
    if spec.concurrency == "forbid" and job.live_executions > 0:
        outcome = Outcome(spec.name, "skipped", tick, tick, 1, "overlap", trigger)
        job.note(outcome)
        effects.append(outcome)
        return tick
    count = spec.tags.count
    if count is None:
        count = sum(1 for node in state.nodes.values()
                    if node.state == "up" and spec.tags.matches(node.tags))
    state.firings[(spec.name, tick)] = Firing(slots=count)
    for slot in range(count):
        key = ExecKey(spec.name, tick, slot)
        state.executions[key] = Execution(key, trigger, "waiting", 0, now_ms, spec.weight,
                                          spec.priority, spec.retries)
        job.live_executions += 1
        effects.append(Waiting(key, now_ms))
    outcome = Outcome(spec.name, "fired", tick, tick, 1, "", trigger, count)
    job.note(outcome)
    effects.append(outcome)
    if count == 0:
        del state.firings[(spec.name, tick)]
    return tick


# ---- commands ----------------------------------------------------------------------------------


def assign(state: SchedulerState, cmd: Assign) -> Result:
    execution = state.executions.get(cmd.key.execution)
    if execution is None:
        return rejected("unknown_execution", f"no live execution {tuple(cmd.key.execution)}")
    job = state.jobs.get(cmd.key.job)
    if job is None:
        return rejected("unknown_job", f"job {cmd.key.job!r} is gone")
    if cmd.key.attempt != execution.attempts + 1:
        return rejected("wrong_attempt", f"next attempt is {execution.attempts + 1}")
    if cmd.now_ms < execution.ready_at_ms:
        return rejected("not_ready", f"ready at {execution.ready_at_ms}")
    new_state = step("execution", execution.state, "assign")
    node = cmd.node
    if node is not None and not eligible(state, node, job.spec, cmd.key.job, cmd.key.tick):
        node = None
    effects: list[Effect] = []
    execution.state = new_state
    execution.attempts += 1
    _open_attempt(state, cmd.key, node, cmd.now_ms, cmd.lease_ms, cmd.queue_ms, execution,
                  "assign", effects)
    return ok(effects)


def claim(state: SchedulerState, cmd: Claim) -> Result:
    attempt = state.attempts.get(cmd.key)
    if attempt is None:
        return rejected("unknown_attempt", "no live attempt by that name")
    new_state = step("attempt", attempt.state, "claim")
    job = state.jobs.get(cmd.key.job)
    if job is None:
        return rejected("unknown_job", f"job {cmd.key.job!r} is gone")
    if not eligible(state, cmd.node, job.spec, cmd.key.job, cmd.key.tick):
        return rejected("not_eligible", f"node {cmd.node!r} may not run this attempt now")
    execution = state.executions[cmd.key.execution]
    del state.queued[cmd.key]
    attempt.state, attempt.node = new_state, cmd.node
    attempt.deadline_ms = cmd.now_ms + cmd.lease_ms
    state.nodes[cmd.node].used_tokens += attempt.weight
    execution.nodes_tried.append(cmd.node)
    return ok([Lease(cmd.key, cmd.node, attempt.deadline_ms, "claim")])


def renew(state: SchedulerState, cmd: Renew) -> Result:
    attempt = state.attempts.get(cmd.key)
    if attempt is None:
        return rejected("unknown_attempt", "no live attempt by that name (finished or expired)")
    new_state = step("attempt", attempt.state, "renew")
    if attempt.node != cmd.node:
        return rejected("not_holder", f"the lease is held by {attempt.node!r}")
    attempt.state = new_state
    attempt.deadline_ms = max(attempt.deadline_ms, cmd.now_ms + cmd.lease_ms)
    return ok([Lease(cmd.key, cmd.node, attempt.deadline_ms, "renew")])


def finish(state: SchedulerState, cmd: Finish) -> Result:
    attempt = state.attempts.get(cmd.key)
    if attempt is None:
        return rejected("unknown_attempt", "no live attempt by that name (finished or expired)")
    new_state = step("attempt", attempt.state, "finish_ok" if cmd.ok else "finish_failed")
    if attempt.node != cmd.node:
        return rejected("not_holder", f"the lease is held by {attempt.node!r}")
    effects: list[Effect] = []
    _end_attempt(state, attempt, new_state, effects)
    _after_attempt(state, cmd.key, "ok" if cmd.ok else "failed", cmd.now_ms, effects)
    return ok(effects)


def expire(state: SchedulerState, cmd: Expire) -> Result:
    attempt = state.attempts.get(cmd.key)
    if attempt is None:
        return rejected("unknown_attempt", "no live attempt by that name (finished or expired)")
    if attempt.deadline_ms != cmd.deadline_ms:
        return rejected("deadline_changed", f"deadline is now {attempt.deadline_ms}")
    if cmd.now_ms <= attempt.deadline_ms + cmd.drift_bound_ms:
        return rejected("not_expired", f"{cmd.now_ms} is not past {attempt.deadline_ms} + "
                                       f"{cmd.drift_bound_ms}")
    was_queued = attempt.state == "queued"
    new_state = step("attempt", attempt.state, "expire")
    effects: list[Effect] = []
    _end_attempt(state, attempt, new_state, effects)
    _after_attempt(state, cmd.key, "unclaimed" if was_queued else "lost", cmd.now_ms, effects)
    return ok(effects)


# ---- endings -----------------------------------------------------------------------------------


def _end_attempt(state: SchedulerState, attempt: Attempt, new_state: str,
                 effects: list[Effect]) -> None:
    if attempt.state == "queued":
        del state.queued[attempt.key]
    elif attempt.node is not None and attempt.node in state.nodes:
        state.nodes[attempt.node].used_tokens -= attempt.weight
    del state.attempts[attempt.key]
    effects.append(AttemptEnd(attempt.key, attempt.node, new_state))


def _after_attempt(state: SchedulerState, key: AttemptKey, how: str, now_ms: int,
                   effects: list[Effect]) -> None:
    """The current attempt of an execution ended `how` (ok, failed, lost, unclaimed): finish
    the execution or schedule a retry. Priority-1 jobs are never retried (Dianemo)."""
    execution = state.executions[key.execution]
    if how == "ok":
        execution.state = step("execution", execution.state, "succeed")
        _end_execution(state, execution, now_ms, effects)
        return
    job = state.jobs.get(key.job)
    retry = (job is not None and execution.priority != 1
             and how != "unclaimed" and execution.attempts < execution.retries + 1)
    if retry:
        execution.state = step("execution", execution.state, "retry")
        execution.ready_at_ms = now_ms + backoff_ms(execution.attempts)
        effects.append(Waiting(execution.key, execution.ready_at_ms))
        return
    event = "lose" if how == "lost" else "fail"
    execution.state = step("execution", execution.state, event)
    _end_execution(state, execution, now_ms, effects)


def _end_execution(state: SchedulerState, execution: Execution, now_ms: int,
                   effects: list[Effect]) -> None:
    key = execution.key
    del state.executions[key]
    job = state.jobs.get(key.job)
    if job is not None:
        job.live_executions -= 1
        if execution.state == "succeeded":
            job.last_success_ms = now_ms
        else:
            job.last_error_ms = now_ms
        job.note_execution(key.tick, key.slot, execution.state, execution.attempts,
                           RECENT_EXECUTIONS_MAX)
    firing = state.firings.get((key.job, key.tick))
    if firing is None:
        return
    firing.ended += 1
    firing.succeeded += execution.state == "succeeded"
    if firing.ended < firing.slots:
        return
    del state.firings[(key.job, key.tick)]
    if firing.succeeded == firing.slots and firing.slots > 0:
        for child_name in state.children.get(key.job, ()):
            child = state.jobs.get(child_name)
            if child is not None and child.state == "enabled":
                start_run(state, child, now_ms, "parent", effects)
        if job is not None and job.spec.ephemeral and not state.children.get(key.job):
            # Dkron's `ephemeral`: gone after its first successful run (kept while it has
            # children, which could never run again otherwise: deleting a parent is refused).
            state.retire_job(key.job)
            end_waiting(state, key.job, now_ms, effects)
            effects.append(JobChanged(key.job))


def end_waiting(state: SchedulerState, job_name: str, now_ms: int, effects: list[Effect]) -> None:
    """A deleted job's executions that wait for an attempt will never get one: fail them."""
    waiting = [e for e in state.executions.values()
               if e.key.job == job_name and e.state == "waiting"]
    for execution in waiting:
        execution.state = step("execution", execution.state, "cancel")
        _end_execution(state, execution, now_ms, effects)
