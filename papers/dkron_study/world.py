"""One study scenario: servers, agents, clients and on-demand runs on a costed simulated cluster.

Vocabulary, as in Dkron and as `raftcron server` / `raftcron agent` run for real:

- a **server** is a Raft voter (`n1`..`nS`, tag `role=web`): it replicates the log, can lead,
  plans (when leading) and also executes jobs;
- an **agent** is a Raft *learner* (`n{S+1}`.., tag `role=batch`): it receives the log and
  applies it (so it sees its leases), sends heartbeats, renewals, finishes and claims to the
  leader, executes jobs, and never votes or leads. Agents join after the cluster starts,
  one configuration change at a time, as `raftcron agent` does.

Clients are outside the cluster (zero CPU; client-to-server latency drawn like the cluster's).
A request goes to a server chosen uniformly (a load balancer, as in the Dkron study's AKS
setup); a follower answers 307 with the leader, and the client re-sends there, as the real
server does. The leader's jobs API proposes the command and answers once it is applied.

Request kinds:

- `run_now`: POST /v1/jobs/{job}/run: one `run_now` entry; the client's job exists already;
- `create`: PUT /v1/jobs (a new job each time, with the scenario's schedule and payload),
  then, with `run_on_create`, a `run_now` entry (Dkron's `?runoncreate`): two commits in turn.

A client either waits for the response (`wait_for="response"`, k6's view) or for the run's
result to be committed (`wait_for="run"`: a closed loop over the whole pipeline, used for
throughput at saturation).

Every on-demand run is timed stage by stage in true (virtual) time; see `RunRecord`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import partial
from dataclasses import dataclass, field
from typing import Any

from jepsen_like.exactly_once import LedgerEvent
from raft.errors import NotLeader, ProposalDropped
from raft.messages import Entry, EntryKind
from raft.node import ConfChange
from raft.progress import Role
from scheduler.commands import (
    Assign, AttemptKey, Batch, PutJob, RunNow, encode_command,
)
from scheduler.results import AttemptEnd, Lease, Outcome, Result
from sim.cluster import RaftTimings
from sim.ledger import Ledger
from sim.network import NetworkOptions
from sim.scheduler_world import SchedulerWorld, WorldOptions, _LeaderLoop, state_machine_factory

from papers.dkron_study.costed import CostedCluster, CostModel, load_costs

__all__ = ["Scenario", "StudyWorld", "run_scenario", "percentile"]

STOPPED = ("finish", "abandon", "killed", "suspend")
# `raftcron server` defaults: --election-timeout-ms 300 (the maximum is twice it), 50 ms heartbeats.
TIMINGS = RaftTimings(election_timeout_ms_min=300.0, election_timeout_ms_max=600.0, heartbeat_interval_ms=50.0)


@dataclass(slots=True)
class Scenario:
    servers: int = 3
    agents: int = 0
    seed: int = 0
    seconds: float = 20.0  # simulated
    start_s: float = 3.0  # clients start (leader elected, agents joined and registered)
    window: tuple[float, float] | None = None  # throughput window (s); default (start+3, end)
    # load
    clients: int = 10  # constant clients (ignored when `stages` or `rate_per_s` is set)
    rate_per_s: float = 0.0  # > 0: open loop, Poisson arrivals, each request its own client
    stages: tuple[tuple[float, int], ...] = ()  # k6 ramping VUs: (duration s, target VUs)
    think_ms: float = 0.0  # pause between a client's iterations (k6 sleep)
    wait_for: str = "run"  # run | response
    request: str = "run_now"  # run_now | create
    run_on_create: bool = True
    first_schedule: str | None = None  # create: a client's first job gets this schedule, no run
    timeout_ms: float = 10_000.0
    direct_to_leader: bool = False  # clients send to the current leader (no load balancer)
    # the job
    run_ms: float = 50.0
    cpu_bound: bool = False
    payload_bytes: int = 64
    concurrency: str = "allow"
    where: str = "any"  # any | agents (role=batch:1) | servers (role=web:1)
    schedule: str = "@manually"  # of created jobs
    # resources
    millicores: float = 1000.0
    cores: int = 2
    tokens: int = 16  # per node, none reserved: `raftcron server` defaults
    latency_ms: tuple[float, float] = (0.2, 1.0)  # one-way, cluster and clients
    snapshot_entries: int = 0
    costs: CostModel | None = None

    def job(self, name: str, iteration: int = 0, schedule: str | None = None) -> dict[str, Any]:
        """A run takes run_ms ± 50% (uniform), so runs do not march in step."""
        tags = {"any": {}, "agents": {"role": "batch:1"}, "servers": {"role": "web:1"}}[self.where]
        config: dict[str, Any] = {"run_ms": [0.5 * self.run_ms, 1.5 * self.run_ms], "i": iteration}
        if self.cpu_bound:
            config["cpu"] = True
        if self.payload_bytes:
            config["payload"] = "x" * self.payload_bytes
        if schedule is None:
            schedule = self.schedule if self.request == "create" else "@manually"
        return {"name": name, "schedule": schedule,
                "executor": "sim", "executor_config": config, "tags": tags,
                "concurrency": self.concurrency, "grace_seconds": 30}

    def max_clients(self) -> int:
        if self.rate_per_s > 0:
            return self.clients  # the pool of jobs open-loop requests run
        return max((t for _d, t in self.stages), default=0) if self.stages else self.clients

    def target_clients(self, t_ms: float) -> int:
        """Clients wanted at true time t_ms: constant, or k6 ramping-vus (linear per stage)."""
        if not self.stages:
            return self.clients if t_ms < self.seconds * 1000.0 else 0
        t = t_ms / 1000.0 - self.start_s
        level = 0.0
        for duration, target in self.stages:
            if t <= duration:
                return int(math.floor(level + (target - level) * (max(0.0, t) / duration) + 1e-9))
            t -= duration
            level = target
        return 0

    def end_of_load_s(self) -> float:
        return self.start_s + sum(d for d, _t in self.stages) if self.stages else self.seconds


@dataclass(slots=True)
class Request:
    id: int
    client: int
    t_send: float
    job: str
    iteration: int
    t_arrive: float | None = None  # reached the last server it was sent to
    t_leader: float | None = None  # reached the server that proposes it (after any redirect)
    t_proposed: float | None = None  # the proposing batch's outputs left the leader
    t_committed: float | None = None  # applied on the leader (the last proposal, for create)
    t_response: float | None = None  # the response reached the client
    status: str = "pending"  # ok | timeout | unavailable | rejected
    kind: str = "run"  # run (an on-demand run is asked for) | schedule (a scheduled job is created)
    redirects: int = 0
    run: tuple[str, int] | None = None  # (job, run "tick") once the run_now is applied


@dataclass(slots=True)
class RunRecord:
    """One on-demand run, stage by stage, in true ms:

    t_send (client) -> t_leader (request reached the leader) -> t_proposed (entry left the
    leader) -> t_committed (applied on the leader) -> t_dispatch (the planner proposed the
    Assign naming a node) -> t_lease (the lease applied on the leader) -> t_start (executor
    started, world ledger) -> t_finish (executor finished) -> t_done (Finish applied)."""

    request: Request
    t_committed: float
    t_dispatch: float | None = None
    t_lease: float | None = None
    node: str | None = None
    t_start: float | None = None
    t_finish: float | None = None
    t_done: float | None = None
    state: str = "waiting"  # waiting | skipped | succeeded | failed | expired | unclaimed


class _StudyLedger(Ledger):
    """The world ledger, also telling the study about starts and stops as they happen."""

    def __init__(self, trace: Any, on_event: Callable[[float, str, str, AttemptKey], None]) -> None:
        super().__init__(trace)
        self.on_event = on_event

    def record(self, true_ms: float, node: str, kind: str, key: AttemptKey, ok: bool | None = None) -> None:
        self.events.append(LedgerEvent(true_ms, node, kind, tuple(key), ok))  # type: ignore[arg-type]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.on_event(true_ms, node, kind, key)


class StudyWorld(SchedulerWorld):
    """`SchedulerWorld` whose leader work runs on the costed CPU, with stage timing."""

    cluster: CostedCluster

    def __init__(self, cluster: CostedCluster, jobs: list[dict[str, Any]], options: WorldOptions,
                 costs: CostModel) -> None:
        self.costs = costs
        self.runs: dict[tuple[str, int], RunRecord] = {}
        self.dispatch_hook: Callable[[tuple[str, int], float], None] | None = None
        self._cpu_keys: set[AttemptKey] = set()
        self._cpu_jobs: set[str] = set()
        self.on_run_done: Callable[[RunRecord], None] | None = None
        self.pending: dict[tuple[str, int], tuple[int, Callable[[Result], None]]] = {}
        self.executions_finished: list[float] = []  # true ms of every executor finish
        self.dispatch_counts: dict[str, int] = {}  # committed leases by how, and attempt ends
        self._counted: set[int] = set()
        super().__init__(cluster, jobs, options)
        self.ledger = _StudyLedger(cluster.trace, self._ledger_event)
        for agent in self.agents.values():
            agent.ledger = self.ledger

    # ---- leader work on the CPU ------------------------------------------------------------------
    def _arrive(self, target: str, deliver: Any) -> None:
        self.cluster.cpu_call(target, self.costs.agent_request_us,
                              lambda: SchedulerWorld._arrive(self, target, deliver))

    def _round(self, loop: _LeaderLoop) -> None:
        self.cluster.cpu_call(loop.node, self.costs.planner_round_us,
                              lambda: SchedulerWorld._round(self, loop))

    def _propose(self, loop: _LeaderLoop, entries: list[Batch], now_ms: int) -> None:
        commands = 0
        for entry in entries:
            commands += len(entry.commands)
            for command in entry.commands:
                if isinstance(command, Assign) and command.key.attempt == 1:
                    run = self.runs.get((command.key.job, command.key.tick))
                    if run is not None and run.t_dispatch is None:
                        self.cluster.at_batch_end(partial(_set_dispatch, run, self.cluster))
        self.cluster.add_work(self.costs.planner_command_us * commands)
        super()._propose(loop, entries, now_ms)

    def _start_agent(self, node: str) -> None:
        super()._start_agent(node)
        ledger = getattr(self, "ledger", None)
        if isinstance(ledger, _StudyLedger):
            self.agents[node].ledger = ledger

    # ---- what happened ---------------------------------------------------------------------------
    def _ledger_event(self, true_ms: float, node: str, kind: str, key: AttemptKey) -> None:
        if kind == "start":
            if key.job in self._cpu_jobs:
                self._cpu_keys.add(key)
                self.cluster.cpu_bound_runs[node] = self.cluster.cpu_bound_runs.get(node, 0) + 1
            run = self.runs.get((key.job, key.tick))
            if run is not None and run.t_start is None:
                run.t_start, run.node = true_ms, node
        elif kind in STOPPED or kind == "resume":
            if key in self._cpu_keys:
                delta = 1 if kind == "resume" else -1
                self.cluster.cpu_bound_runs[node] = self.cluster.cpu_bound_runs.get(node, 0) + delta
                if kind != "suspend" and kind != "resume":
                    self._cpu_keys.discard(key)
            if kind == "finish":
                self.executions_finished.append(true_ms)
                run = self.runs.get((key.job, key.tick))
                if run is not None and run.t_finish is None:
                    run.t_finish = true_ms

    def _on_apply(self, node_id: str, lifetime: int, entry: Entry, result: Any) -> None:
        super()._on_apply(node_id, lifetime, entry, result)
        if entry.kind is not EntryKind.NORMAL or not isinstance(result, Result):
            return
        waiting = self.pending.pop((node_id, entry.index), None)
        if waiting is not None:
            term, callback = waiting
            if entry.term == term:
                callback(result)
        effects = result.all_effects()
        if entry.index not in self._counted:
            self._counted.add(entry.index)
            counts = self.dispatch_counts
            for effect in effects:
                if isinstance(effect, Lease) and effect.why != "renew":
                    kind = "queued" if effect.node is None else f"leased_by_{effect.why}"
                    counts[kind] = counts.get(kind, 0) + 1
                elif isinstance(effect, AttemptEnd):
                    counts[f"ended_{effect.state}"] = counts.get(f"ended_{effect.state}", 0) + 1
        if not self.runs:
            return
        now = self.cluster.now
        for effect in effects:
            if isinstance(effect, Lease) and effect.node is not None and effect.why != "renew":
                run = self.runs.get((effect.key.job, effect.key.tick))
                if run is not None and run.t_lease is None:
                    run.t_lease = now
            elif isinstance(effect, AttemptEnd):
                run = self.runs.get((effect.key.job, effect.key.tick))
                if run is not None and run.t_done is None:
                    run.t_done, run.state = now, effect.state
                    if self.on_run_done is not None:
                        self.on_run_done(run)

    def note_cpu_job(self, name: str) -> None:
        self._cpu_jobs.add(name)


def _set_dispatch(run: RunRecord, cluster: CostedCluster) -> None:
    if run.t_dispatch is None:
        run.t_dispatch = cluster.now


# ---- the scenario ----------------------------------------------------------------------------------
class ScenarioRun:
    def __init__(self, scenario: Scenario) -> None:
        self.sc = sc = scenario
        self.costs = costs = sc.costs or load_costs()
        servers = [f"n{i}" for i in range(1, sc.servers + 1)]
        agents = [f"n{i}" for i in range(sc.servers + 1, sc.servers + sc.agents + 1)]
        self.servers, self.agent_ids = servers, agents
        network = NetworkOptions(latency_ms_min=sc.latency_ms[0], latency_ms_max=sc.latency_ms[1])
        self.cluster = cluster = CostedCluster(
            servers, costs=costs, millicores=sc.millicores, cores=sc.cores, seed=sc.seed,
            timings=TIMINGS, network=network, snapshot_entries=sc.snapshot_entries,
            make_state_machine=state_machine_factory(frozenset()))
        for agent in agents:
            cluster.add_node(agent)
        jobs = ([sc.job(f"c{i}") for i in range(sc.max_clients())] if sc.request == "run_now" else [])
        options = WorldOptions(tokens=sc.tokens, reserved_tokens=0, web_nodes=sc.servers)
        self.world = world = StudyWorld(cluster, jobs, options, costs)
        if sc.cpu_bound:
            for job in jobs:
                world.note_cpu_job(job["name"])
        world.on_run_done = self._run_done
        self.rng = random.Random(f"dkron-study-clients:{sc.seed}")
        self.requests: list[Request] = []
        self.clients: dict[int, dict[str, Any]] = {}  # id -> {"stop": bool, "iteration": int}
        self._next_client = 0
        self.joined_ms: float | None = None if agents else 0.0
        self.end_ms = sc.seconds * 1000.0
        if agents:
            cluster.call_at(50.0, self._drive_membership)
        if sc.rate_per_s > 0:
            cluster.call_at(sc.start_s * 1000.0, self._arrival)
        else:
            cluster.call_at(sc.start_s * 1000.0, self._control)

    # ---- agents join as learners ---------------------------------------------------------------
    def _drive_membership(self) -> None:
        cluster = self.cluster
        leader = cluster.leader()
        if leader is not None:
            cluster.cpu_call(leader, self.costs.client_request_us, lambda: self._add_learner(leader))
        if self.joined_ms is None:
            cluster.call_at(cluster.now + 50.0, self._drive_membership)

    def _add_learner(self, leader: str) -> None:
        raft = self.cluster.nodes[leader].raft
        if raft is None or raft.role is not Role.LEADER or self.joined_ms is not None:
            return
        committed = raft.config_at(raft.commit_index)
        missing = [a for a in self.agent_ids if a not in committed.members]
        if not missing:
            self.joined_ms = self.cluster.now
            return
        try:
            raft.propose_config_change(ConfChange("add_learner", missing[0]))
        except (NotLeader, ProposalDropped):
            pass

    # ---- clients (k6-like virtual users) -------------------------------------------------------
    def target_clients(self, t_ms: float) -> int:
        return self.sc.target_clients(t_ms)

    def _control(self) -> None:
        """Every 100 ms: start clients up to the target, and ask the newest ones to stop after
        their current iteration when above it (k6's graceful ramp-down)."""
        now = self.cluster.now
        target = self.target_clients(now)
        active = [c for c, s in self.clients.items() if not s["stop"]]
        for client in active[target:]:
            self.clients[client]["stop"] = True
        for _ in range(max(0, target - len(active))):
            client = self._next_client
            self._next_client += 1
            self.clients[client] = {"stop": False, "iteration": 0}
            self._iterate(client)
        if now < self.end_ms:
            self.cluster.call_at(now + 100.0, self._control)

    def _arrival(self) -> None:
        """Open loop: a new one-shot client per request, Poisson arrivals."""
        if self.cluster.now >= self.end_ms:
            return
        client = self._next_client
        self._next_client += 1
        self.clients[client] = {"stop": False, "iteration": 0, "once": True}
        self._iterate(client)
        gap = self.rng.expovariate(self.sc.rate_per_s) * 1000.0
        self.cluster.call_at(self.cluster.now + gap, self._arrival)

    def _iterate(self, client: int) -> None:
        state = self.clients[client]
        if state["stop"] or self.cluster.now >= self.end_ms:
            return
        if state.get("once"):
            state["stop"] = True  # an open-loop client sends one request
        state["iteration"] += 1
        sc = self.sc
        if sc.request == "run_now":
            job = f"c{client % max(1, sc.clients)}"
        else:
            job = f"v{client}-{state['iteration']}"
        request = Request(len(self.requests), client, self.cluster.now, job, state["iteration"])
        self.requests.append(request)
        server = self.servers[self.rng.randrange(len(self.servers))]
        if sc.direct_to_leader:
            server = self.cluster.leader() or server
        self._to_server(request, server)
        self.cluster.call_at(self.cluster.now + sc.timeout_ms, lambda: self._timeout(request))

    def _latency(self) -> float:
        low, high = self.sc.latency_ms
        return self.rng.uniform(low, high)

    def _to_server(self, request: Request, server: str) -> None:
        self.cluster.call_at(self.cluster.now + self._latency(), lambda: self._at_server(request, server))

    def _at_server(self, request: Request, server: str) -> None:
        if request.status != "pending":
            return
        node = self.cluster.nodes[server]
        if not node.alive:
            self._respond(request, "unavailable")
            return
        request.t_arrive = self.cluster.now
        self.cluster.cpu_call(server, self.costs.client_request_us, lambda: self._handle(request, server))

    def _handle(self, request: Request, server: str) -> None:
        if request.status != "pending":
            return
        raft = self.cluster.nodes[server].raft
        if raft is None:
            return
        if raft.role is not Role.LEADER:
            leader = raft.leader
            if leader is None or request.redirects >= 3:
                self.cluster.at_batch_end(lambda: self._respond(request, "unavailable"))
                return
            request.redirects += 1
            self.cluster.at_batch_end(lambda: self._redirected(request, leader))
            return
        if request.t_leader is None:
            request.t_leader = request.t_arrive
        if self.sc.request == "create":
            scheduled = self.sc.first_schedule is not None and request.iteration == 1
            job = self.sc.job(request.job, request.iteration, self.sc.first_schedule if scheduled else None)
            request.kind = "schedule" if scheduled or not self.sc.run_on_create else "run"
            if self.sc.cpu_bound:
                self.world.note_cpu_job(request.job)
            command: Any = PutJob(now_ms=self._local(server), job=job)
            then: Callable[[Result], None] = (lambda r: self._after_put(request, server, r))
        else:
            command = RunNow(now_ms=self._local(server), job=request.job,
                             idempotency_key=f"r{request.id}")
            then = lambda r: self._after_run_now(request, r)
        self._propose(request, server, command, then)

    def _redirected(self, request: Request, leader: str) -> None:
        """The 307 travels back to the client, which re-sends to the leader."""
        self.cluster.call_at(self.cluster.now + self._latency(), lambda: self._to_server(request, leader))

    def _local(self, server: str) -> int:
        return int(self.cluster.nodes[server].clock.local(self.cluster.now))

    def _propose(self, request: Request, server: str, command: Any, then: Callable[[Result], None]) -> None:
        try:
            index, term = self.cluster.propose(server, encode_command(command))
        except (NotLeader, ProposalDropped):
            self.cluster.at_batch_end(lambda: self._respond(request, "unavailable"))
            return
        self.world.pending[(server, index)] = (term, then)
        if request.t_proposed is None:
            self.cluster.at_batch_end(lambda: setattr(request, "t_proposed", self.cluster.now))

    def _after_put(self, request: Request, server: str, result: Result) -> None:
        if not result.ok:
            self._respond(request, "rejected")
            return
        if request.kind == "schedule":
            request.t_committed = self.cluster.now
            self._respond(request, "ok")
            return
        self.cluster.cpu_call(server, self.costs.planner_command_us, lambda: self._propose(
            request, server, RunNow(now_ms=self._local(server), job=request.job,
                                    idempotency_key=f"r{request.id}"),
            lambda r: self._after_run_now(request, r)))

    def _after_run_now(self, request: Request, result: Result) -> None:
        now = self.cluster.now
        request.t_committed = now
        if not result.ok:
            self._respond(request, "rejected")
            return
        key = (result.value["job"], result.value["run_ms"])
        request.run = key
        run = RunRecord(request, now)
        skipped = any(isinstance(e, Outcome) and e.kind == "skipped" for e in result.effects)
        if skipped:
            run.state, run.t_done = "skipped", now
        self.world.runs[key] = run
        self._respond(request, "ok")
        if skipped:
            self._run_done(run)

    def _respond(self, request: Request, status: str) -> None:
        if request.status != "pending":
            return
        request.status = status
        at = self.cluster.now + self._latency()
        request.t_response = at
        if self.sc.wait_for == "response" or status != "ok":
            self.cluster.call_at(at + self.sc.think_ms, lambda: self._iterate(request.client))

    def _run_done(self, run: RunRecord) -> None:
        if self.sc.wait_for != "run":
            return
        at = self.cluster.now + self._latency() + self.sc.think_ms
        self.cluster.call_at(at, lambda: self._iterate(run.request.client))

    def _timeout(self, request: Request) -> None:
        if request.status == "pending":
            request.status = "timeout"
            self._iterate(request.client)
        elif self.sc.wait_for == "run" and request.status == "ok" and request.run is not None:
            run = self.world.runs.get(request.run)
            if run is not None and run.t_done is None and self.cluster.now - request.t_send >= self.sc.timeout_ms:
                run.state = "timeout"
                self._iterate(request.client)

    # ---- run --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.cluster.run_until(self.end_ms)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        sc, cluster, world = self.sc, self.cluster, self.world
        end = self.end_ms
        w0, w1 = (sc.window if sc.window is not None else (sc.start_s + 3.0, sc.seconds))
        w0_ms, w1_ms = w0 * 1000.0, w1 * 1000.0
        span_s = max(1e-9, w1 - w0)
        done = [r for r in world.runs.values() if r.state == "succeeded" and r.t_done is not None]
        in_window = [r for r in done if w0_ms <= r.t_done < w1_ms]  # type: ignore[operator]
        finished = [t for t in world.executions_finished if w0_ms <= t < w1_ms]
        # Requests sent at least a timeout before the end have all been answered or timed out.
        judged = [q for q in self.requests if q.t_send <= end - sc.timeout_ms]
        errors = [q for q in judged if q.status != "ok"]
        response = [q.t_response - q.t_send for q in judged if q.status == "ok" and q.t_response is not None]
        leaders = sorted({(n.raft.term, n.id) for n in cluster.nodes.values()
                          if n.raft is not None and n.raft.role is Role.LEADER})
        terms = max((n.raft.term for n in cluster.nodes.values() if n.raft is not None), default=0)
        return {
            "throughput_runs_s": round(len(in_window) / span_s, 3),
            "executions_finished_s": round(len(finished) / span_s, 3),
            "window_s": [w0, w1],
            "requests": len(judged),
            "errors": len(errors),
            "error_rate": round(len(errors) / len(judged), 5) if judged else None,
            "error_kinds": _counts(q.status for q in errors),
            "response_ms": _percentiles(response),
            "runs": _counts(r.state for r in world.runs.values()),
            "dispatch": dict(sorted(world.dispatch_counts.items())),
            "stages_ms": stage_table(list(world.runs.values())),
            "cpu_utilisation": cluster.utilisation(end),
            "leader": leaders[-1][1] if leaders else None,
            "max_term": terms,
            "safety_violations": len(cluster.observer.violations),
            "agents_joined_s": round(self.joined_ms / 1000.0, 3) if self.joined_ms is not None else None,
            "events": cluster.steps,
        }


STAGES: tuple[tuple[str, str, str], ...] = (
    ("client → leader receive", "t_send", "t_leader"),
    ("leader receive → proposed", "t_leader", "t_proposed"),
    ("propose → commit (replication)", "t_proposed", "t_committed"),
    ("apply → dispatch decision", "t_committed", "t_dispatch"),
    ("dispatch → lease applied", "t_dispatch", "t_lease"),
    ("lease applied → executor start", "t_lease", "t_start"),
    ("run", "t_start", "t_finish"),
    ("finish report → committed", "t_finish", "t_done"),
)


def _time(run: RunRecord, name: str) -> float | None:
    if hasattr(run.request, name) and name in ("t_send", "t_leader", "t_proposed"):
        return getattr(run.request, name)  # type: ignore[no-any-return]
    return getattr(run, name)  # type: ignore[no-any-return]


def stage_table(runs: list[RunRecord]) -> dict[str, Any]:
    """Per stage: mean, p50, p95, p99 (ms) over the on-demand runs that completed every stage
    (succeeded), and the end-to-end total; the stage means add up to the total's mean."""
    complete = [r for r in runs if r.state == "succeeded" and all(
        _time(r, a) is not None and _time(r, b) is not None for _n, a, b in STAGES)]
    table: dict[str, Any] = {"runs": len(complete), "stages": {}}
    for name, a, b in STAGES:
        values = [_time(r, b) - _time(r, a) for r in complete]  # type: ignore[operator]
        table["stages"][name] = _percentiles(values)
    totals = [r.t_done - r.request.t_send for r in complete]  # type: ignore[operator]
    table["total"] = _percentiles(totals)
    return table


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None}
    return {"n": len(values), "mean": round(sum(values) / len(values), 3),
            "p50": round(percentile(values, 50), 3), "p90": round(percentile(values, 90), 3),
            "p95": round(percentile(values, 95), 3), "p99": round(percentile(values, 99), 3),
            "max": round(max(values), 3)}


def _counts(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def run_scenario(scenario: Scenario) -> dict[str, Any]:
    return ScenarioRun(scenario).run()
