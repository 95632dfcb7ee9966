"""The scheduler in the simulator: glue that makes every simulated server a scheduler too.

Each `SimCluster` node runs the `SchedulerStateMachine`. On top, this module runs, per node:

- a *planner loop* while the node leads (one `Planner` per term, rebuilt from the node's
  replicated state when it becomes leader): every `planner_period_ms` of the LEADER'S clock
  it plans and proposes what is due, and it observes every entry the leader applies;
- a *simulated agent* per process lifetime (`sim/executors.py`), which starts runs when its
  replica applies a lease for it, renews, finishes, claims queued work, and heartbeats; an
  `agent_crash` fault kills the agent alone (the server stays up) until `agent_restart`;
- an *operator* (`operate`, the `job_*` fault actions): job puts, deletes, toggles and
  run-nows, one at a time and in order, sent to whoever leads until its replica shows them.

Agents talk to the leader they believe in (`raft.leader` on their node) through the simulated
network: each request is one message with the network's latency, loss, duplication and
partitions, and the leader turns it into a command stamped with its clock. (A simplification:
the request and the reply are not Raft messages; the reply is the agent's own replica
applying the result.)

The world records, for the checkers: committed outcomes and Finishes (`History`, from the
first node that applies each index, in true time), the executors' ledger, fault windows
(from the runner's fault actions), and clock offsets. `summary()` runs the checkers of
`jepsen_like/exactly_once.py` and returns the `raftcron sim --jobs` figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from jepsen_like.exactly_once import (
    FaultWindows, JobTimeline, check_exactly_once, check_no_spof, check_tick_liveness,
)
from raft.errors import NotLeader, ProposalDropped
from raft.messages import Entry, EntryKind
from raft.progress import Role
from scheduler.commands import (
    AttemptKey, Batch, Command, CommandError, DeleteJob, Fire, PutJob, RunNow, ToggleJob,
    decode_command, encode_command,
)
from scheduler.job import JobSpec, JobValidationError
from scheduler.leases import LeasePolicy
from scheduler.machine import SchedulerStateMachine
from scheduler.planner import AgentInfo, Planner, PlannerPolicy
from scheduler.results import JobChanged, Result
from scheduler.state import SchedulerState
from sim.cluster import SimCluster
from sim.executors import Deliver, SimAgent
from sim.ledger import History, Ledger

__all__ = ["SchedulerWorld", "WorldOptions", "state_machine_factory"]

VIOLATIONS_SHOWN = 50
SAMPLE_MS = 50.0


@dataclass(slots=True)
class WorldOptions:
    planner_period_ms: float = 100.0
    lease: LeasePolicy = field(default_factory=LeasePolicy)
    heartbeat_ms: float = 500.0  # agent -> leader
    node_timeout_ms: int = 3_000
    queue_ms: int = 30_000
    pull_only: bool = False
    tokens: int = 8
    reserved_tokens: int = 2
    web_nodes: int = 3  # n1..n3 carry role=web, the others role=batch
    claim_delay_ms: float = 20.0
    submit_every_ms: float = 200.0

    def __post_init__(self) -> None:
        if isinstance(self.lease, dict):  # read back from a replayed schedule's JSON
            self.lease = LeasePolicy(**self.lease)


def state_machine_factory(bugs: frozenset[str]) -> Callable[[], SchedulerStateMachine]:
    return lambda: SchedulerStateMachine(bugs)


def _parents_first(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order jobs so a parent is put before its children (the state machine requires it)."""
    placed: list[dict[str, Any]] = []
    names: set[str] = set()
    pending = list(jobs)
    for _ in range(len(jobs) + 1):
        rest = []
        for job in pending:
            parent = job.get("parent_job") or None
            if parent is None or parent in names or parent not in {j.get("name") for j in jobs}:
                placed.append(job)
                names.add(job.get("name"))  # type: ignore[arg-type]
            else:
                rest.append(job)
        pending = rest
    return placed + pending


@dataclass(slots=True)
class _LeaderLoop:
    node: str
    lifetime: int
    term: int
    planner: Planner


class SchedulerWorld:
    def __init__(self, cluster: SimCluster, jobs: list[dict[str, Any]],
                 options: WorldOptions | None = None, *,
                 bugs: frozenset[str] = frozenset()) -> None:
        self.cluster = cluster
        self.options = options or WorldOptions()
        lease = self.options.lease
        if "lease-no-drift" in bugs:
            lease = replace(lease, no_drift_margin=True)
        lease.validate()
        self.lease = lease
        self.policy = PlannerPolicy(lease=lease, queue_ms=self.options.queue_ms,
                                    node_timeout_ms=self.options.node_timeout_ms,
                                    pull_only=self.options.pull_only,
                                    trust_clock="leader-clock-trust" in bugs)
        self.jobs = _parents_first(jobs)
        self.ledger = Ledger(cluster.trace)
        self.history = History()
        self.rng = cluster.workload_rng
        self.journal: dict[str, set[AttemptKey]] = {node: set() for node in cluster.ids}
        self.agents: dict[str, SimAgent] = {}
        self.loops: dict[str, _LeaderLoop] = {}
        self.windows = FaultWindows()
        self._down_since: dict[str, float] = {}
        self._groups: list[list[str]] = [list(cluster.ids)]
        self._groups_since = 0.0
        self._degraded_since: float | None = None
        self.max_offset_ms = 0.0
        self.jobs_loaded_ms: float | None = None
        self._jobs_seen: set[str] = set()  # the initial jobs the leader's replica has shown
        self._timelines: list[JobTimeline] = []
        self._open_timeline: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self.fires_proposed = 0
        self.on_fire_proposed: Callable[[str], None] | None = None  # tests: crash "now"
        self._operations: list[tuple[str, dict[str, Any], str]] = []  # (op, job, request id)
        self._operations_made = 0
        self._operator_armed = False
        self._hook(cluster)
        self._watch_faults(cluster)
        for node in cluster.ids:
            if cluster.nodes[node].alive:
                self._start_agent(node)
        cluster.call_at(0.0, self._submit_jobs)
        cluster.call_at(0.0, self._sample)

    def _hook(self, cluster: SimCluster) -> None:
        previous_apply, previous_role = cluster.on_apply, cluster.on_role

        def on_apply(node: str, lifetime: int, entry: Entry, result: Any) -> None:
            if previous_apply is not None:
                previous_apply(node, lifetime, entry, result)
            self._on_apply(node, lifetime, entry, result)

        def on_role(node: str, role: str, term: int) -> None:
            if previous_role is not None:
                previous_role(node, role, term)
            self._on_role(node, role, term)

        cluster.on_apply, cluster.on_role = on_apply, on_role

    # ---- agents -----------------------------------------------------------------------------------
    def agent_info(self, node: str) -> AgentInfo:
        number = int(node[1:]) if node[1:].isdigit() else 0
        role = "web" if number <= self.options.web_nodes else "batch"
        return AgentInfo(tags={"role": role}, tokens=self.options.tokens,
                         reserved_tokens=self.options.reserved_tokens)

    def _start_agent(self, node: str) -> None:
        self.agents[node] = SimAgent(
            node, cluster=self.cluster, ledger=self.ledger, rng=self.rng, lease=self.lease,
            info=self.agent_info(node), journal=self.journal.setdefault(node, set()), send=self.send_to_leader,
            heartbeat_ms=self.options.heartbeat_ms, claim_delay_ms=self.options.claim_delay_ms)

    def run_action(self, kind: str, node: str | None, job: dict[str, Any] | None) -> None:
        """A scheduler fault action (sim/faults.py): `job_*` (operator) or `agent_*`."""
        if kind.startswith("job_") and job is not None:
            self.operate(kind[len("job_"):], job)
        elif kind == "agent_crash" and node is not None:
            self.crash_agent(node)
        elif kind == "agent_restart" and node is not None:
            self.restart_agent(node)

    def crash_agent(self, node: str) -> None:
        """The agent process alone dies: its runs are killed, its server keeps serving."""
        agent = self.agents.get(node)
        if agent is not None and agent.active:
            agent.kill()
            self._trace(node, "agent_crash")

    def restart_agent(self, node: str) -> None:
        """A dead agent on a live server comes back, with its durable journal."""
        agent = self.agents.get(node)
        if self.cluster.nodes[node].alive and agent is not None and not agent.active:
            self._start_agent(node)
            self._trace(node, "agent_restart")

    def agent_down(self, node: str) -> bool:
        agent = self.agents.get(node)
        return self.cluster.nodes[node].alive and agent is not None and not agent.active

    def _trace(self, node: str, kind: str, **fields: Any) -> None:
        clock = self.cluster.nodes[node].clock
        self.cluster.trace.write(self.cluster.now, node, clock.local(self.cluster.now), kind,
                                 fields)

    def send_to_leader(self, source: str, deliver: Deliver) -> None:
        """One request from `source` to the leader it believes in, over the network."""
        node = self.cluster.nodes[source]
        if not node.alive or node.paused or node.raft is None or node.raft.leader is None:
            return
        target = node.raft.leader
        if target == source:
            self.cluster.call_at(self.cluster.now, lambda: self._arrive(target, deliver))
            return
        for delay in self.cluster.network.deliveries(source, target):
            self.cluster.call_at(self.cluster.now + delay, lambda: self._arrive(target, deliver))

    def _arrive(self, target: str, deliver: Deliver) -> None:
        loop = self._current_loop(target)
        node = self.cluster.nodes[target]
        if loop is not None and not node.paused:
            deliver(loop.planner, int(node.clock.local(self.cluster.now)))

    # ---- leaders ----------------------------------------------------------------------------------
    def _on_role(self, node_id: str, role: str, term: int) -> None:
        if role != "leader":
            self.loops.pop(node_id, None)
            return
        node = self.cluster.nodes[node_id]
        now_ms = int(node.clock.local(self.cluster.now))
        loop = _LeaderLoop(node_id, node.lifetime, term, Planner(node.sm.state, self.policy,
                                                                now_ms))
        self.loops[node_id] = loop
        self.cluster.call_at(self.cluster.now, lambda: self._round(loop))

    def _current_loop(self, node_id: str) -> _LeaderLoop | None:
        loop = self.loops.get(node_id)
        node = self.cluster.nodes[node_id]
        if loop is None:
            return None
        raft = node.raft
        if (not node.alive or node.lifetime != loop.lifetime or raft is None
                or raft.role is not Role.LEADER or raft.term != loop.term):
            del self.loops[node_id]
            return None
        return loop

    def _round(self, loop: _LeaderLoop) -> None:
        if self.loops.get(loop.node) is not loop or self._current_loop(loop.node) is None:
            return
        node = self.cluster.nodes[loop.node]
        local = node.clock.local(self.cluster.now)
        if not node.paused:
            now_ms = int(local)
            if loop.planner.state is not node.sm.state:  # a snapshot replaced the state
                loop.planner = Planner(node.sm.state, self.policy, now_ms)
            self._propose(loop, loop.planner.plan(now_ms), now_ms)
        period = self.options.planner_period_ms
        self.cluster.call_at(node.clock.true_at(local + period), lambda: self._round(loop))

    def _propose(self, loop: _LeaderLoop, entries: list[Batch], now_ms: int) -> None:
        for entry in entries:
            try:
                self.cluster.propose(loop.node, encode_command(entry))
            except (NotLeader, ProposalDropped):
                loop.planner.rebuild(now_ms)
                return
            fires = sum(len(c.items) for c in entry.commands if isinstance(c, Fire))
            self.fires_proposed += fires
            if fires and self.on_fire_proposed is not None:
                self.on_fire_proposed(loop.node)

    def _submit_jobs(self) -> None:
        """The client: put every job once, through the leader, until the log has them all. A
        job the leader's replica has shown once, or that the operator put or deleted, is loaded
        for good: were it put again after an operator's delete (which may land between two of
        these polls), the client's put and the operator's delete would undo each other forever
        (found by the SchedulerMachine: a delete right after start stayed pending)."""
        leader = self.cluster.leader()
        loop = self._current_loop(leader) if leader is not None else None
        if loop is not None:
            self._jobs_seen.update(name for name in loop.planner.state.jobs)
            missing = [job for job in self.jobs if job.get("name") not in self._jobs_seen]
            if not missing:
                self.jobs_loaded_ms = self.cluster.now
                return
            for job in missing:
                loop.planner.submit(partial(_put_job, job))
        self.cluster.call_at(self.cluster.now + self.options.submit_every_ms, self._submit_jobs)

    # ---- the operator ---------------------------------------------------------------------------
    def operate(self, op: str, job: dict[str, Any]) -> None:
        """Queue an operator request (`put`, `delete`, `toggle`, `run_now`). Requests go out
        one at a time, in order, to whoever leads, again every `submit_every_ms` until the
        leader's replica shows the request done: every one is safe to repeat (an unchanged
        put is a no-op, a toggle names its target state, a run-now carries an idempotency key,
        a delete of a deleted job is rejected)."""
        self._operations_made += 1
        self._operations.append((op, dict(job), f"operator-{self._operations_made}"))
        if op in ("put", "delete"):  # the operator owns this job's definition from now on
            self._jobs_seen.add(str(job.get("name")))
        if not self._operator_armed:
            self._operator_armed = True
            self.cluster.call_at(self.cluster.now, self._operate)

    @property
    def operations_pending(self) -> int:
        return len(self._operations)

    def _operate(self) -> None:
        leader = self.cluster.leader()
        loop = self._current_loop(leader) if leader is not None else None
        if loop is not None and not self.cluster.nodes[loop.node].paused:
            while self._operations and _operation_done(loop.planner.state, *self._operations[0]):
                self._operations.pop(0)
            if self._operations:
                loop.planner.submit(partial(_operation_command, *self._operations[0]))
        if not self._operations:
            self._operator_armed = False
            return
        self.cluster.call_at(self.cluster.now + self.options.submit_every_ms, self._operate)

    # ---- applies ----------------------------------------------------------------------------------
    def _on_apply(self, node_id: str, lifetime: int, entry: Entry, result: Any) -> None:
        if entry.kind is not EntryKind.NORMAL or not isinstance(result, Result):
            return
        effects = result.all_effects()
        loop = self.loops.get(node_id)
        if loop is not None and loop.lifetime == lifetime:
            loop.planner.observe(effects)
        agent = self.agents.get(node_id)
        if agent is not None and agent.lifetime == lifetime and agent.active:
            agent.on_effects(effects)
        if self.history.first_apply(entry.index):
            command: Command | None
            try:
                command = decode_command(entry.data)
            except CommandError:
                command = None
            changed = [e.name for e in effects if isinstance(e, JobChanged)]
            if changed:
                self._track_jobs(node_id, changed)
            for outcome in self.history.record(entry.index, self.cluster.now, command, result):
                kind = {"fired": "fire", "skipped": "skip", "missed": "miss"}[outcome.kind]
                node = self.cluster.nodes[node_id]
                self.cluster.trace.write(self.cluster.now, node_id,
                                         node.clock.local(self.cluster.now), kind,
                                         outcome.to_json())

    # ---- faults -----------------------------------------------------------------------------------
    def _watch_faults(self, cluster: SimCluster) -> None:
        """See every crash, restart, pause, resume and clock step at its exact true time, by
        whichever path it comes (fault schedule, armed crashes, tests): the cluster's
        `NodeWatcher`. The network (partitions, loss) is sampled instead, see `_sample`."""
        assert cluster.watcher is None, "one scheduler world per cluster"
        cluster.watcher = self

    # `NodeWatcher` (sim/cluster.py): agents follow their servers; down windows for no-SPOF.
    def crashed(self, node_id: str) -> None:
        self._went_down(node_id, "crash")

    def started(self, node_id: str) -> None:
        self._start_agent(node_id)
        self._came_back(node_id)

    def paused(self, node_id: str) -> None:
        self._went_down(node_id, "pause")

    def resumed(self, node_id: str, was_paused: bool) -> None:
        if was_paused and node_id in self.agents:
            self.agents[node_id].resume()
        self._came_back(node_id)

    def clock_jumping(self, node_id: str) -> None:
        self._sample_offsets()

    def clock_changed(self, node_id: str) -> None:
        self._sample_offsets()
        agent = self.agents.get(node_id)
        if agent is not None and agent.active:
            agent.clock_changed()

    def _went_down(self, node: str, how: str) -> None:
        agent = self.agents.get(node)
        if agent is not None and agent.active:
            agent.kill() if how == "crash" else agent.suspend()
        self._down_since.setdefault(node, self.cluster.now)

    def _came_back(self, node: str) -> None:
        state = self.cluster.nodes[node]
        if state.alive and not state.paused and node in self._down_since:
            self.windows.down.append((node, self._down_since.pop(node), self.cluster.now))

    def _sample(self) -> None:
        """Every SAMPLE_MS: partitions and message loss as windows (widened by one sample on
        each side, so the no-SPOF checker only ever demands less), and clock offsets."""
        cluster, now = self.cluster, self.cluster.now
        groups = _connected_groups(cluster.ids, cluster.network.blocked)
        if groups != self._groups:
            if len(self._groups) > 1:
                self.windows.partitions.append((self._groups_since - SAMPLE_MS, now,
                                                self._groups))
            self._groups, self._groups_since = groups, now
        degraded = cluster.network.options.loss_probability > 0
        if degraded and self._degraded_since is None:
            self._degraded_since = now - SAMPLE_MS
        elif not degraded and self._degraded_since is not None:
            self.windows.degraded.append((self._degraded_since, now))
            self._degraded_since = None
        self._sample_offsets()
        cluster.call_at(now + SAMPLE_MS, self._sample)

    def _sample_offsets(self) -> None:
        now = self.cluster.now
        for node in self.cluster.nodes.values():
            self.max_offset_ms = max(self.max_offset_ms, abs(node.clock.local(now) - now))

    def _close_windows(self, end_ms: float) -> FaultWindows:
        windows = FaultWindows(list(self.windows.down), list(self.windows.partitions),
                               list(self.windows.degraded))
        windows.down.extend((node, since, end_ms) for node, since in self._down_since.items())
        if len(self._groups) > 1:
            windows.partitions.append((self._groups_since - SAMPLE_MS, end_ms, self._groups))
        if self._degraded_since is not None:
            windows.degraded.append((self._degraded_since, end_ms))
        return windows

    # ---- the figures ------------------------------------------------------------------------------
    def fire_bound_ms(self) -> float:
        """L of guarantee 4, term by term (docs/scheduler.md): a failover needs the last
        heartbeat plus a full election timeout to notice, the pre-vote and vote round trips,
        possibly one more timeout after a split vote, and the Fire entry's replication round
        trip; a tick may also wait one planner period, and a leader fires by its own clock,
        so the largest clock offset seen is added too."""
        timings, delay = self.cluster.timings, self._delay_max()
        detect = timings.heartbeat_interval_ms + timings.election_timeout_ms_max
        elect = 2 * (2 * delay)
        split_vote = timings.election_timeout_ms_max
        commit = 2 * delay
        return (detect + elect + split_vote + commit + self.options.planner_period_ms
                + self.max_offset_ms)

    def design_bound_ms(self) -> float:
        """DESIGN.md's L: max election timeout + heartbeat + max network delay + planner
        period (plus the clock offset): it leaves out the election's and the commit's round
        trips and split votes, so the summary counts the fires beyond it, to be open about it."""
        timings = self.cluster.timings
        return (timings.election_timeout_ms_max + timings.heartbeat_interval_ms
                + self._delay_max() + self.options.planner_period_ms + self.max_offset_ms)

    def _delay_max(self) -> float:
        net = self.cluster.network.options
        return net.latency_ms_max + (net.reorder_delay_ms_max if net.reorder_probability else 0)

    def timelines(self) -> list[JobTimeline]:
        """Every job definition that was in force, with its span, in commit order."""
        return list(self._timelines)

    def _track_jobs(self, node_id: str, names: list[str]) -> None:
        """After the first apply of an entry that changed jobs: close the span of a replaced
        or removed definition, open one for a new definition (toggles change neither)."""
        state = self.cluster.nodes[node_id].sm.state
        for name in names:
            job = state.jobs.get(name)
            open_at = self._open_timeline.get(name)
            version = None if job is None else job.version
            if open_at is not None and self._versions.get(name) == version:
                continue
            if open_at is not None:
                old = self._timelines[open_at]
                # a replaced definition is in force up to where the new one starts: the
                # later of the put's time and the old cursor (a leader whose clock ran ahead
                # may have fired the old definition past the put's time)
                until = job.cursor_ms if job is not None else state.retired.get(name, 0)
                self._timelines[open_at] = replace(old, until_ms=until)
                del self._open_timeline[name]
            if job is not None:
                self._open_timeline[name] = len(self._timelines)
                self._versions[name] = job.version
                self._timelines.append(JobTimeline(name, job.schedule, job.cursor_ms))
            else:
                self._versions.pop(name, None)

    def summary(self, end_ms: float) -> dict[str, Any]:
        self._sample_offsets()
        bound = self.fire_bound_ms()
        margin = bound + 1_000.0
        jobs = self.timelines()
        outcomes = self.history.outcomes
        liveness = check_tick_liveness(jobs, outcomes, end_ms, margin)
        safety = check_exactly_once(outcomes, self.history.finishes, self.ledger.events)
        spof = check_no_spof(jobs, outcomes, self._close_windows(end_ms), self.cluster.ids,
                             end_ms - margin + bound, bound)
        delays = sorted(o.t_ms - o.first_ms for o in outcomes
                        if o.outcome == "fired" and o.trigger == "schedule"
                        and o.first_ms <= end_ms - margin)
        kinds = [v.kind for v in safety]
        return {
            "jobs": len(jobs),
            "ticks_due": liveness.due,
            "ticks_fired": liveness.fired,
            "ticks_skipped": liveness.skipped,
            "ticks_missed": liveness.missed,
            "duplicate_fires": kinds.count("duplicate_fire"),
            "duplicate_starts": kinds.count("duplicate_start"),
            "overlapping_attempts": kinds.count("overlapping_attempts"),
            "lost_ticks": liveness.lost,
            "max_fire_delay_s": round(delays[-1] / 1000.0, 3) if delays else None,
            "p99_fire_delay_s": (round(delays[max(0, math.ceil(0.99 * len(delays)) - 1)] /
                                       1000.0, 3) if delays else None),
            "exactly_once_violations": [v.to_json() for v in safety[:VIOLATIONS_SHOWN]],
            "liveness_violations": [v.to_json() for v in liveness.violations[:VIOLATIONS_SHOWN]],
            "no_spof_violations": [v.to_json() for v in spof[:VIOLATIONS_SHOWN]],
            "runs": dict(sorted(self.ledger.counts.items())),
            "fires_proposed": self.fires_proposed,
            "stale_proposals_rejected": dict(sorted(self.history.rejected.items())),
            "drift_bound_ms": self.lease.drift_bound_ms,
            "max_clock_offset_ms": round(self.max_offset_ms, 1),
            "fire_bound_s": round(bound / 1000.0, 3),
            "design_bound_s": round(self.design_bound_ms() / 1000.0, 3),
            "fires_over_design_bound": sum(1 for d in delays if d > self.design_bound_ms()),
            "judged_until_s": round((end_ms - margin) / 1000.0, 3),
        }


def _put_job(job: dict[str, Any], now_ms: int) -> Command:
    return PutJob(now_ms=now_ms, job=job)


def _operation_command(op: str, job: dict[str, Any], request: str, now_ms: int) -> Command:
    name = str(job.get("name"))
    if op == "put":
        return PutJob(now_ms=now_ms, job=job)
    if op == "delete":
        return DeleteJob(now_ms=now_ms, name=name)
    if op == "toggle":
        return ToggleJob(now_ms=now_ms, name=name, disabled=bool(job.get("disabled")))
    return RunNow(now_ms=now_ms, job=name, idempotency_key=request)


def _operation_done(state: SchedulerState, op: str, job: dict[str, Any], request: str) -> bool:
    """Has `state` (the leader's replica) taken the request, or would it reject it forever?"""
    record = state.jobs.get(str(job.get("name")))
    if op == "put":
        try:
            spec = JobSpec.from_json(job)
        except JobValidationError:
            return True
        if spec.parent_job is not None and spec.parent_job not in state.jobs:
            return True
        return record is not None and record.spec == spec
    if op == "delete":
        return record is None or bool(state.children.get(record.spec.name))
    if op == "toggle":
        return record is None or (record.state == "disabled") == bool(job.get("disabled"))
    # a run-now of a disabled job is rejected (docs/scheduler.md), and nothing queued behind
    # it can enable the job first
    return request in state.idempotency or record is None or record.state == "disabled"


def _connected_groups(ids: list[str], blocked: set[tuple[str, str]]) -> list[list[str]]:
    """Nodes that can talk both ways with every other member of their group."""
    groups: list[list[str]] = []
    for node in ids:
        for group in groups:
            if all((node, other) not in blocked and (other, node) not in blocked
                   for other in group):
                group.append(node)
                break
        else:
            groups.append([node])
    return groups
