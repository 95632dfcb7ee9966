"""Simulated agents: every simulated server also runs jobs, like a real raftcron server.

An agent lives as long as its node's process (one `lifetime`). It reacts to what its own
replica applies, never to the leader's intentions:

- a `Lease` naming it (a fire, an assign or a claim) starts a run, if its clock says the
  lease still has more than the drift bound D left (`LeasePolicy.stop_at_ms`), and if its
  durable journal has no record of the attempt (a restarted node replays its log; the journal
  is what a real agent writes to disk before it starts a process, so a replay never starts
  an attempt twice);
- while the run lasts it asks the leader to renew the lease every `renew_every_ms` of its
  clock; if its replica has not seen a renewal by `deadline - D` on its clock, it abandons
  the run (the leader may expire the lease from `deadline + D` on its own clock);
- at the end it records the finish and asks the leader to commit a Finish until its replica
  shows the attempt ended.

Every start and stop goes to the world ledger in TRUE time. A crash kills the runs (`killed`);
a pause freezes them (`suspend`), since a paused agent's process group is frozen with it, and
on resume the agent first re-checks the lease by its clock (`abandon` if it ran out).

Requests reach the leader through `send`, which the world routes over the simulated network
to the node this agent believes leads; the leader stamps them with its clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from random import Random
from typing import Any

from scheduler.attempts import eligible
from scheduler.commands import AttemptKey
from scheduler.job import JobSpec
from scheduler.leases import LeasePolicy
from scheduler.planner import AgentInfo, Planner
from scheduler.results import AttemptEnd, Effect, Lease
from scheduler.state import SchedulerState
from sim.cluster import SimCluster, SimNode
from sim.ledger import Ledger

__all__ = ["SimAgent", "draw_run"]

Deliver = Callable[[Planner, int], None]
RUN_MS_DEFAULT = (200, 800)
CLAIM_RETRY_MS = 2_000.0
CLAIMS_PER_TRY = 2


@dataclass(slots=True)
class SimRun:
    key: AttemptKey
    ok: bool
    end_true_ms: float
    state: str = "running"  # running | suspended | reporting | stopped
    remaining_ms: float = 0.0
    generation: int = 0


def draw_run(spec: JobSpec | None, rng: Random) -> tuple[float, bool]:
    """How long a run takes (true ms) and whether it succeeds, from the job's executor_config:
    `run_ms` (a number or [low, high]) and `fail_rate` (0..1)."""
    config: Any = spec.executor_config if spec is not None else {}
    run_ms = config.get("run_ms", RUN_MS_DEFAULT)
    if isinstance(run_ms, (int, float)) and not isinstance(run_ms, bool):
        low = high = float(run_ms)
    elif isinstance(run_ms, (list, tuple)) and len(run_ms) == 2:
        low, high = float(run_ms[0]), float(run_ms[1])
    else:
        low, high = RUN_MS_DEFAULT
    fail_rate = config.get("fail_rate", 0.0)
    fail_rate = float(fail_rate) if isinstance(fail_rate, (int, float)) else 0.0
    duration = rng.uniform(max(0.0, low), max(low, high))
    return duration, rng.random() >= fail_rate


def _claim_request(node: str, key: AttemptKey) -> Deliver:
    return lambda planner, _now: planner.claim(node, key)


class SimAgent:
    def __init__(self, node_id: str, *, cluster: SimCluster, ledger: Ledger, rng: Random,
                 lease: LeasePolicy, info: AgentInfo, journal: set[AttemptKey],
                 send: Callable[[str, Deliver], None], heartbeat_ms: float,
                 claim_delay_ms: float) -> None:
        self.node_id = node_id
        self.cluster = cluster
        self.lifetime = cluster.nodes[node_id].lifetime
        self.ledger, self.rng, self.lease, self.info = ledger, rng, lease, info
        self.journal, self.send = journal, send
        self.heartbeat_ms, self.claim_delay_ms = heartbeat_ms, claim_delay_ms
        self.runs: dict[AttemptKey, SimRun] = {}
        self._claims: dict[AttemptKey, float] = {}
        self._claim_armed = False
        self._offset = int(node_id[1:]) if node_id[1:].isdigit() else 0
        self.active = True
        self._beat()

    # ---- helpers ------------------------------------------------------------------------------
    @property
    def node(self) -> SimNode:
        return self.cluster.nodes[self.node_id]

    def _valid(self) -> bool:
        node = self.node
        return self.active and node.alive and node.lifetime == self.lifetime

    def _local(self) -> float:
        return self.node.clock.local(self.cluster.now)

    def _at_local(self, local_ms: float, action: Callable[[], None]) -> None:
        self.cluster.call_at(self.node.clock.true_at(local_ms), action)

    def _state(self) -> SchedulerState:
        return self.node.sm.state  # type: ignore[no-any-return]

    def _record(self, kind: str, key: AttemptKey, ok: bool | None = None) -> None:
        self.ledger.record(self.cluster.now, self.node_id, kind, key, ok)

    # ---- what the replica applied ---------------------------------------------------------------
    def on_effects(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Lease) and effect.node == self.node_id and effect.why != "renew":
                self._maybe_start(effect)
            elif isinstance(effect, Lease) and effect.node is None:
                self._watch_queue()
            elif isinstance(effect, AttemptEnd) and effect.key in self.runs:
                self._ended(effect)

    def _maybe_start(self, lease: Lease) -> None:
        key = lease.key
        if key in self.journal or key in self.runs:
            return
        if self._local() >= self.lease.stop_at_ms(lease.deadline_ms):
            return  # too late to start under this lease; it will expire and be retried
        job = self._state().jobs.get(key.job)
        duration, ok = draw_run(job.spec if job is not None else None, self.rng)
        self.journal.add(key)
        run = SimRun(key, ok, self.cluster.now + duration)
        self.runs[key] = run
        self._record("start", key)
        self.cluster.call_at(run.end_true_ms, lambda: self._complete(key, run.generation))
        self._at_local(self._local() + self.lease.renew_every_ms, lambda: self._renew(key))
        self._at_local(self.lease.stop_at_ms(lease.deadline_ms), lambda: self._check_lease(key))

    def _ended(self, end: AttemptEnd) -> None:
        run = self.runs.pop(end.key)
        if run.state == "running":  # expired while we still ran: cannot happen within the bound
            self._record("abandon", end.key)
        run.state = "stopped"

    # ---- the run --------------------------------------------------------------------------------
    def _complete(self, key: AttemptKey, generation: int) -> None:
        run = self.runs.get(key)
        if not self._valid() or run is None or run.generation != generation:
            return
        if run.state != "running":
            return
        self._record("finish", key, run.ok)
        run.state = "reporting"
        self._report(key)

    def _report(self, key: AttemptKey) -> None:
        run = self.runs.get(key)
        if not self._valid() or run is None or run.state != "reporting":
            return
        if not self.node.paused:
            node, ok = self.node_id, run.ok
            self.send(node, lambda planner, _now: planner.finish(node, key, ok))
        self._at_local(self._local() + self.lease.renew_every_ms, lambda: self._report(key))

    def _renew(self, key: AttemptKey) -> None:
        run = self.runs.get(key)
        if not self._valid() or run is None or run.state == "stopped":
            return
        if run.state in ("running", "reporting") and not self.node.paused:
            node = self.node_id
            self.send(node, lambda planner, _now: planner.renew(node, key))
        self._at_local(self._local() + self.lease.renew_every_ms, lambda: self._renew(key))

    def _check_lease(self, key: AttemptKey) -> None:
        """At `deadline - D` on our clock: renewed since? Then wait again; else give up."""
        run = self.runs.get(key)
        if not self._valid() or run is None or run.state == "stopped" or self.node.paused:
            return  # a paused agent re-checks on resume
        attempt = self._state().attempts.get(key)
        if attempt is not None and attempt.node == self.node_id:
            stop_at = self.lease.stop_at_ms(attempt.deadline_ms)
            if self._local() < stop_at:
                self._at_local(stop_at, lambda: self._check_lease(key))
                return
        if run.state == "running":
            self._record("abandon", key)
        run.state = "stopped"
        del self.runs[key]

    def clock_changed(self) -> None:
        """The node's clock was stepped or changed rate: timers armed in true time are now
        wrong, so re-check every lease at once (the check re-arms itself on the new clock).
        A real agent compares its clock each time it looks; this is the simulator's version."""
        for key, run in self.runs.items():
            if run.state != "stopped":
                self.cluster.call_at(self.cluster.now, partial(self._check_lease, key))

    # ---- process faults ---------------------------------------------------------------------------
    def kill(self) -> None:
        """The node crashed: its runs die with it."""
        for key, run in self.runs.items():
            if run.state in ("running", "suspended"):
                self._record("killed", key)
        self.runs.clear()
        self.active = False

    def suspend(self) -> None:
        for key, run in self.runs.items():
            if run.state == "running":
                self._record("suspend", key)
                run.state, run.remaining_ms = "suspended", run.end_true_ms - self.cluster.now
                run.generation += 1

    def resume(self) -> None:
        """Before a frozen run continues, the agent re-checks its lease by its own clock."""
        state = self._state()
        for key, run in list(self.runs.items()):
            if run.state != "suspended":
                continue
            attempt = state.attempts.get(key)
            if attempt is None or attempt.node != self.node_id or \
                    self._local() >= self.lease.stop_at_ms(attempt.deadline_ms):
                self._record("abandon", key)
                del self.runs[key]
                continue
            self._record("resume", key)
            run.state, run.end_true_ms = "running", self.cluster.now + run.remaining_ms
            self.cluster.call_at(run.end_true_ms, partial(self._complete, key, run.generation))
            self._at_local(self.lease.stop_at_ms(attempt.deadline_ms),
                           partial(self._check_lease, key))
        for key in self.runs:
            if self.runs[key].state == "reporting":
                self._report(key)

    # ---- heartbeats and work stealing --------------------------------------------------------------
    def _beat(self) -> None:
        if not self._valid():
            return
        if not self.node.paused:
            node, info = self.node_id, self.info
            self.send(node, lambda planner, now: planner.heard(node, now, info))
            self._try_claim()
        self._at_local(self._local() + self.heartbeat_ms, self._beat)

    def _watch_queue(self) -> None:
        """A slot was queued: try to claim soon, later the busier this node is, with jitter,
        so idle nodes win and nodes do not all pile onto one attempt (the etcd seed's fix)."""
        if self._claim_armed:
            return
        self._claim_armed = True
        busy = sum(1 for run in self.runs.values() if run.state == "running")
        delay = self.claim_delay_ms * (1 + busy) + self.rng.uniform(0.0, self.claim_delay_ms)

        def attempt() -> None:
            self._claim_armed = False
            if self._valid() and not self.node.paused:
                self._try_claim()

        self.cluster.call_at(self.cluster.now + delay, attempt)

    def _try_claim(self) -> None:
        """Claim up to CLAIMS_PER_TRY queued attempts this node may run, walking the queue from
        an offset of its own. The first claim committed wins; the others are rejected."""
        state = self._state()
        record = state.nodes.get(self.node_id)
        if record is None or record.state != "up" or not state.queued:
            return
        # `eligible`'s token test, hoisted: nothing in this loop changes the node's capacity, and
        # with the queue backed up most keys fail it (1,000 jobs a second: ~2,700 per try).
        free = {1: record.capacity(1), 2: record.capacity(2)}
        if free[1] < 1:
            return  # capacity(1) bounds capacity(2), and a weight is >= 1
        now, node = self.cluster.now, self.node_id
        keys = list(state.queued)
        offset = self._offset % len(keys)
        claimed = 0
        for key in keys[offset:] + keys[:offset]:
            if claimed >= CLAIMS_PER_TRY:
                break
            if now - self._claims.get(key, -CLAIM_RETRY_MS) < CLAIM_RETRY_MS:
                continue
            job = state.jobs.get(key.job)
            if job is None or free[job.spec.priority] < job.spec.weight:
                continue
            if not eligible(state, node, job.spec, key.job, key.tick):
                continue
            self._claims[key] = now
            claimed += 1
            self.send(node, _claim_request(node, key))
