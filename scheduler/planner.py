"""The leader's planner: which ticks are due by the leader's clock, and what to propose.

Rules of this module:

1. Volatile and rebuildable. A planner holds nothing the log does not: a new leader builds
   one from its replicated state alone (`rebuild`), starting at each job's replicated next
   due tick (the cursor's successor), never at "now". Dkron rebuilds its cron from now on
   leader change and loses the due run (#1210); the `leader-clock-trust` bug switch does that.
2. Proposals, not decisions. Everything it emits is re-checked by the state machine, so a
   planner that is stale (it has not applied its predecessor's last fires yet) proposes
   duplicates that the log rejects, and nothing worse.
3. O(log jobs) per tick: a min-heap of (next due tick, job). A heap entry is valid only if it
   matches `_planned[job]`; anything else is a leftover and is dropped when popped (lazy
   deletion), so updates cost a push, never a search.
4. Bounded work per round: a job catches up at most `catch_up_per_job_max` ticks per round;
   ticks older than the grace window become one missed range, never a storm of fires.
5. Nothing is proposed only once and forgotten: every proposal leaves a recheck; if the state
   did not move as expected after `recheck_after_ms` (a lost or rejected proposal), the
   planner re-reads the state and tries again.

Drive it with `observe(effects)` for every entry the leader applies, `heard(...)` for agent
heartbeats, `submit(...)` for agent requests, and `plan(now_ms)` every planner period.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from scheduler.commands import (
    Assign, AttemptKey, Batch, Beat, Claim, Command, ExecKey, Expire, Finish, Fire, FireItem,
    Heartbeats, NodeDown, RecordTicks, RegisterNode, Renew,
)
from scheduler.dispatch import Dispatcher
from scheduler.leases import LeasePolicy
from scheduler.results import Effect, JobChanged, Lease, Waiting
from scheduler.state import RANGE_TICKS_MAX, JobRecord, SchedulerState, tick_range

__all__ = ["AgentInfo", "Planner", "PlannerPolicy"]


@dataclass(frozen=True, slots=True)
class PlannerPolicy:
    lease: LeasePolicy = field(default_factory=LeasePolicy)
    queue_ms: int = 30_000  # how long a queued slot waits for a claim before it fails
    items_per_entry_max: int = 2_000  # fire items per log entry
    catch_up_per_job_max: int = 64  # ticks of one job handled per round
    node_timeout_ms: int = 3_000  # a node not heard for this long is proposed down
    summary_every_ms: int = 5_000  # how often the heartbeat summary is written to the log
    recheck_after_ms: int = 2_000
    pull_only: bool = False  # queue every slot; nodes claim (pure work stealing)
    trust_clock: bool = False  # the `leader-clock-trust` bug


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent's heartbeat says about it (registration data and load)."""

    tags: dict[str, str]
    tokens: int
    reserved_tokens: int
    load_permille: int = 0


class Planner:
    def __init__(self, state: SchedulerState, policy: PlannerPolicy, now_ms: int) -> None:
        self.state = state
        self.policy = policy
        self.drift_bound_ms = policy.lease.drift_bound_ms
        self.dispatcher = Dispatcher(state, self._alive, pull_only=policy.pull_only)
        self._now = now_ms
        self._started_ms = now_ms
        self._last_summary_ms = now_ms
        self._ticks: list[tuple[int, str]] = []
        self._planned: dict[str, int] = {}
        self._expiries: list[tuple[int, int, AttemptKey]] = []  # (expire at, deadline, key)
        self._waiting: list[tuple[int, ExecKey]] = []
        # Proposals to verify later: (when, job, tick) / (when, attempt) / (when, execution).
        self._job_rechecks: deque[tuple[int, str, int]] = deque()
        self._lease_rechecks: deque[tuple[int, AttemptKey]] = deque()
        self._execution_rechecks: deque[tuple[int, ExecKey]] = deque()
        self._heard: dict[str, tuple[int, AgentInfo]] = {}
        self._node_proposed: dict[tuple[str, str], int] = {}
        self._inbox: list[Callable[[int], Command]] = []
        self.proposed_fires = 0
        self.rebuild(now_ms)

    # ---- inputs ---------------------------------------------------------------------------------
    def rebuild(self, now_ms: int) -> None:
        """Forget everything volatile and read the replicated state again."""
        jobs = self.state.jobs
        self._planned = {}
        for name, job in jobs.items():
            tick = job.schedule.next_after(now_ms) if self.policy.trust_clock else job.next_tick_ms
            if tick is not None:
                self._planned[name] = tick
        self._ticks = [(tick, name) for name, tick in self._planned.items()]
        heapq.heapify(self._ticks)
        self._expiries = [(self._expire_at(a.node, a.deadline_ms), a.deadline_ms, a.key)
                          for a in self.state.attempts.values()]
        heapq.heapify(self._expiries)
        self._waiting = [(e.ready_at_ms, e.key) for e in self.state.executions.values()
                         if e.state == "waiting"]
        heapq.heapify(self._waiting)
        self._job_rechecks.clear()
        self._lease_rechecks.clear()
        self._execution_rechecks.clear()

    def observe(self, effects: Iterable[Effect]) -> None:
        """Follow what the leader applied (its own proposals and everyone else's)."""
        for effect in effects:
            if isinstance(effect, Lease):
                heapq.heappush(self._expiries, (self._expire_at(effect.node, effect.deadline_ms),
                                                effect.deadline_ms, effect.key))
            elif isinstance(effect, Waiting):
                heapq.heappush(self._waiting, (effect.ready_at_ms, effect.key))
            elif isinstance(effect, JobChanged):
                self._resync_job(effect.name)

    def heard(self, node: str, now_ms: int, info: AgentInfo) -> None:
        """An agent's heartbeat reached the leader at `now_ms` (leader clock)."""
        self._heard[node] = (now_ms, info)

    def submit(self, make: Callable[[int], Command]) -> None:
        """An agent's request, turned into a command stamped with the leader's clock at the
        next round (so leases are always in leader-clock time)."""
        self._inbox.append(make)

    def renew(self, node: str, key: AttemptKey) -> None:
        lease_ms = self.policy.lease.lease_ms
        self.submit(lambda now: Renew(now_ms=now, key=key, node=node, lease_ms=lease_ms))

    def finish(self, node: str, key: AttemptKey, ok: bool, detail: str = "") -> None:
        self.submit(lambda now: Finish(now_ms=now, key=key, node=node, ok=ok, detail=detail))

    def claim(self, node: str, key: AttemptKey) -> None:
        lease_ms = self.policy.lease.lease_ms
        self.submit(lambda now: Claim(now_ms=now, key=key, node=node, lease_ms=lease_ms))

    # ---- the round ------------------------------------------------------------------------------
    def plan(self, now_ms: int) -> list[Batch]:
        """Everything due by `now_ms` (this leader's clock), as log entries in order."""
        self._now = now_ms
        self.dispatcher.begin_round()
        self._run_rechecks(now_ms)
        head: list[Command] = self._node_commands(now_ms)
        head.extend(make(now_ms) for make in self._inbox)
        self._inbox.clear()
        head.extend(self._expire_commands(now_ms))
        records, items = self._tick_work(now_ms)
        head.extend(records)
        tail: list[Command] = self._assign_commands(now_ms)
        entries = [Batch(commands=tuple(head))] if head else []
        lease, step = self.policy.lease.lease_ms, self.policy.items_per_entry_max
        for start in range(0, len(items), step):
            fire = Fire(now_ms=now_ms, lease_ms=lease, queue_ms=self.policy.queue_ms,
                        items=tuple(items[start:start + step]))
            entries.append(Batch(commands=(fire,)))
        if tail:
            entries.append(Batch(commands=tuple(tail)))
        self.proposed_fires += len(items)
        return entries

    def _tick_work(self, now_ms: int) -> tuple[list[Command], list[FireItem]]:
        records: list[Command] = []
        items: list[FireItem] = []
        later: list[tuple[int, str]] = []
        heap, planned, jobs = self._ticks, self._planned, self.state.jobs
        while heap and heap[0][0] <= now_ms:
            tick, name = heapq.heappop(heap)
            if planned.get(name) != tick:
                continue  # a leftover of an update or a resync
            job = jobs.get(name)
            if job is None:
                del planned[name]
                continue
            next_tick = self._plan_job(job, tick, now_ms, records, items)
            if next_tick is None:
                del planned[name]
                continue
            planned[name] = next_tick
            if next_tick <= now_ms:
                later.append((next_tick, name))  # catch-up cap reached: next round
            else:
                heapq.heappush(heap, (next_tick, name))
        for entry in later:
            heapq.heappush(heap, entry)
        return records, items

    def _plan_job(self, job: JobRecord, tick: int, now_ms: int, records: list[Command],
                  items: list[FireItem]) -> int | None:
        """Handle a job's due ticks from `tick` on; return its next tick to plan."""
        spec, schedule = job.spec, job.schedule
        grace_ms = spec.grace_seconds * 1000
        current: int | None = tick
        for _ in range(self.policy.catch_up_per_job_max):
            if current is None or current > now_ms:
                break
            if job.state == "disabled" or now_ms - current > grace_ms:
                outcome = "skipped" if job.state == "disabled" else "missed"
                until = now_ms if outcome == "skipped" else now_ms - grace_ms - 1
                found = tick_range(schedule, current - 1, until, RANGE_TICKS_MAX)
                assert found is not None and found[0] == current
                last = found[1]
                records.append(RecordTicks(now_ms=now_ms, job=spec.name, version=job.version,
                                           first_ms=current, last_ms=last, outcome=outcome))
            else:
                last = current
                items.append(FireItem(job=spec.name, version=job.version, tick_ms=current,
                                      nodes=self.dispatcher.place(spec)))
            self._job_rechecks.append((now_ms + self.policy.recheck_after_ms, spec.name, last))
            current = schedule.next_after(last)
        return current

    def _expire_commands(self, now_ms: int) -> list[Command]:
        out: list[Command] = []
        heap, attempts = self._expiries, self.state.attempts
        while heap and heap[0][0] < now_ms:
            _at, deadline, key = heapq.heappop(heap)
            attempt = attempts.get(key)
            if attempt is None or attempt.deadline_ms != deadline:
                continue
            bound = 0 if attempt.node is None else self.drift_bound_ms
            out.append(Expire(now_ms=now_ms, key=key, deadline_ms=deadline, drift_bound_ms=bound))
            self._lease_rechecks.append((now_ms + self.policy.recheck_after_ms, key))
        return out

    def _assign_commands(self, now_ms: int) -> list[Command]:
        out: list[Command] = []
        heap, executions, jobs = self._waiting, self.state.executions, self.state.jobs
        policy = self.policy
        while heap and heap[0][0] <= now_ms:
            ready_at, key = heapq.heappop(heap)
            execution = executions.get(key)
            if execution is None or execution.state != "waiting":
                continue
            if execution.ready_at_ms != ready_at or key.job not in jobs:
                continue
            node = self.dispatcher.place_retry(jobs[key.job].spec, key, execution.nodes_tried)
            attempt = AttemptKey(key.job, key.tick, key.slot, execution.attempts + 1)
            out.append(Assign(now_ms=now_ms, key=attempt, node=node,
                              lease_ms=policy.lease.lease_ms, queue_ms=policy.queue_ms))
            self._execution_rechecks.append((now_ms + policy.recheck_after_ms, key))
        return out

    def _node_commands(self, now_ms: int) -> list[Command]:
        """Register agents we hear that the log does not know (or knows as down or with
        other tags); propose down the ones we stopped hearing; now and then, a summary."""
        out: list[Command] = []
        nodes, proposed = self.state.nodes, self._node_proposed
        quiet_after = self.policy.recheck_after_ms
        for name, (seen, info) in self._heard.items():
            record = nodes.get(name)
            stale = (record is None or record.state != "up" or record.tags != info.tags
                     or record.tokens != info.tokens
                     or record.reserved_tokens != info.reserved_tokens)
            if stale and self._alive(name) and \
                    now_ms - proposed.get((name, "register"), -quiet_after) >= quiet_after:
                out.append(RegisterNode(now_ms=now_ms, node=name, tags=dict(info.tags),
                                        tokens=info.tokens, reserved_tokens=info.reserved_tokens))
                proposed[(name, "register")] = now_ms
        for name, record in nodes.items():
            if record.state == "up" and not self._alive(name) and \
                    now_ms - proposed.get((name, "down"), -quiet_after) >= quiet_after:
                out.append(NodeDown(now_ms=now_ms, node=name, reason="no heartbeat"))
                proposed[(name, "down")] = now_ms
        if now_ms - self._last_summary_ms >= self.policy.summary_every_ms and self._heard:
            beats = tuple(Beat(node=name, seen_ms=max(0, seen), load_permille=info.load_permille)
                          for name, (seen, info) in sorted(self._heard.items())
                          if name in nodes)
            if beats:
                out.append(Heartbeats(now_ms=now_ms, beats=beats))
            self._last_summary_ms = now_ms
        return out

    # ---- helpers --------------------------------------------------------------------------------
    def _alive(self, node: str) -> bool:
        """Heard within the node timeout; a node never heard gets the benefit of the doubt
        while this leader is younger than the timeout (it cannot know better yet)."""
        heard = self._heard.get(node)
        limit = self.policy.node_timeout_ms
        if heard is None:
            return self._now - self._started_ms <= limit
        return self._now - heard[0] <= limit

    def _expire_at(self, node: str | None, deadline_ms: int) -> int:
        return deadline_ms if node is None else deadline_ms + self.drift_bound_ms

    def _resync_job(self, name: str) -> None:
        job = self.state.jobs.get(name)
        if job is None or job.next_tick_ms is None:
            self._planned.pop(name, None)
            return
        self._planned[name] = job.next_tick_ms
        heapq.heappush(self._ticks, (job.next_tick_ms, name))

    def _run_rechecks(self, now_ms: int) -> None:
        """Proposals whose effect has not shown up in time are planned again from the state."""
        state = self.state
        jobs, leases, executions = (self._job_rechecks, self._lease_rechecks,
                                    self._execution_rechecks)
        while jobs and jobs[0][0] <= now_ms:
            _at, name, tick = jobs.popleft()
            job = state.jobs.get(name)
            if job is not None and job.cursor_ms < tick:
                self._resync_job(name)
        while leases and leases[0][0] <= now_ms:
            attempt = state.attempts.get(leases.popleft()[1])
            if attempt is not None:
                heapq.heappush(self._expiries, (self._expire_at(attempt.node, attempt.deadline_ms),
                                                attempt.deadline_ms, attempt.key))
        while executions and executions[0][0] <= now_ms:
            execution = state.executions.get(executions.popleft()[1])
            if execution is not None and execution.state == "waiting":
                heapq.heappush(self._waiting, (execution.ready_at_ms, execution.key))
