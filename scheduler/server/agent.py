"""`AgentService`: runs the attempts the log leases to this node, and keeps their leases.

Rules:
  1. Start only on a fresh, committed `Lease` for this node, seen in an entry applied after
     start-up. Entries replayed from the local log may have been seen by a previous life of
     this process, which may have started them: they are never started again, so an attempt
     starts at most once (a crashed run's lease expires and the planner names a new attempt).
     The boundary (`replay_until`) is the last index the log held at boot, not the stored
     commit index: the commit index is volatile (Raft's Figure 2) and saved only along with
     entries or a term/vote change, so it may lag what the previous life applied; the stored
     log never does (an entry is saved before it can be applied, and applied entries are
     never truncated). Entries of the log's tail that commit only after the restart are
     treated as replay too: their leases expire and are retried, the price of at-most-once.
  2. Never start, and stop running, once this node's clock reads the lease's stop time
     (`LeasePolicy.stop_at_ms`): from then on the leader may expire it and retry elsewhere.
  3. A renewal is asked for every `renew_every_ms`; the renewed deadline arrives as a new
     `Lease` effect. A finish is re-sent every report until its `AttemptEnd` is applied.
  4. Everything is bounded: concurrent runs (`runs_max`), pending finishes, claim candidates.
  5. Reports go to the leader over HTTP (`POST /v1/internal/report`); on the leader itself
     they are handed to its planner directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx
import trio

from raft.messages import Entry
from raft.storage import Storage
from scheduler.commands import AttemptKey
from scheduler.leases import LeasePolicy
from scheduler.planner import AgentInfo
from scheduler.results import AttemptEnd, Lease, Result
from scheduler.server.executors import AttemptInfo, ExecutionResult, run_executor
from scheduler.server.leader import wall_ms

if TYPE_CHECKING:
    from scheduler.server.node import Server

__all__ = ["AgentService", "replay_boundary", "report_body"]

log = logging.getLogger("raftcron.agent")
RUNS_MAX: Final = 256
FINISHES_MAX: Final = 4096
CLAIMS_MAX: Final = 256
OUTPUT_KEPT_CHARS: Final = 4096


@dataclass(slots=True)
class _Run:
    deadline_ms: int
    renew_sent_ms: int
    scope: trio.CancelScope


@dataclass(slots=True)
class AgentStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    abandoned: int = 0  # stopped at the lease's stop time, or the lease was lost
    skipped_stale: int = 0  # a lease already past its stop time when it reached us
    reports_failed: int = 0


async def join_cluster(server: Server, period_s: float = 1.0) -> None:
    """An agent asks the servers to add it as a learner until the replicated configuration
    names it (a restarted agent is already named and asks nothing)."""
    options = server.options
    own_raft = f"{options.raft_address[0]}:{server.transport.bound_port if server.transport else options.raft_address[1]}"
    own_http = f"{options.http_address[0]}:{server.http_port or options.http_address[1]}"
    body = {"node": options.node_id, "raft": own_raft, "http": own_http}
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    async with httpx.AsyncClient(timeout=5.0, headers=headers) as http:
        while options.node_id not in server.raft.node.config.members:
            for host, port in options.peers_http.values():
                try:
                    response = await http.post(f"http://{host}:{port}/v1/internal/join", json=body)
                    if response.status_code == 307:
                        response = await http.post(response.headers["location"], json=body)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    log.info("%s joined as a learner", options.node_id)
                    break
            await trio.sleep(period_s)


def replay_boundary(storage: Storage) -> int:
    """Rule 1's boundary: the last index the log holds at boot. Whatever a previous life
    applied, it had saved first, so it lies at or below this (the stored commit may lag)."""
    return max(storage.last_index(), storage.initial_state().commit)


def report_body(node: str, info: AgentInfo, renew: list[AttemptKey],
                finish: list[tuple[AttemptKey, bool, str]], claim: list[AttemptKey]) -> dict[str, Any]:
    return {"node": node, "tags": info.tags, "tokens": info.tokens,
            "reserved_tokens": info.reserved_tokens, "load_permille": info.load_permille,
            "renew": [list(k) for k in renew],
            "finish": [[list(k), ok, detail] for k, ok, detail in finish],
            "claim": [list(k) for k in claim]}


class AgentService:
    def __init__(self, server: Server, lease: LeasePolicy, *, report_period_s: float = 0.5,
                 replay_until: int = 0) -> None:
        self.server = server
        self.lease = lease
        self.report_period_s = report_period_s
        self.replay_until = replay_until
        self.node = server.options.node_id
        self.info = AgentInfo(tags=dict(server.options.tags), tokens=server.options.tokens,
                              reserved_tokens=server.options.reserved_tokens)
        self.stats = AgentStats()
        self.runs: dict[AttemptKey, _Run] = {}
        self.finishes: dict[AttemptKey, tuple[bool, str]] = {}
        self.claims: dict[AttemptKey, None] = {}
        self._nursery: trio.Nursery | None = None
        self._wakeup = trio.Event()
        server.raft.appliers.append(self._observe)

    # ---- what the log says ------------------------------------------------------------------------
    def _observe(self, entry: Entry, result: Any) -> None:
        if entry.index <= self.replay_until or not isinstance(result, Result):
            return  # Rule 1: a previous life of this node saw these
        for effect in result.all_effects():
            if isinstance(effect, Lease):
                self._on_lease(effect)
            elif isinstance(effect, AttemptEnd):
                self._on_end(effect)

    def _on_lease(self, lease: Lease) -> None:
        if lease.node is None:
            job = self.server.scheduler.state.jobs.get(lease.key.job)
            if job is not None and job.spec.tags.matches(self.info.tags) and len(self.claims) < CLAIMS_MAX:
                self.claims[lease.key] = None
            return
        self.claims.pop(lease.key, None)
        if lease.node != self.node:
            return
        run = self.runs.get(lease.key)
        if run is not None:  # a renewal landed
            run.deadline_ms = max(run.deadline_ms, lease.deadline_ms)
            return
        if lease.why == "renew" or lease.key in self.finishes:
            return  # renewal of a run we no longer have (finished, or abandoned)
        if wall_ms() >= self.lease.stop_at_ms(lease.deadline_ms):
            self.stats.skipped_stale += 1  # Rule 2
            return
        if self._nursery is None or len(self.runs) >= RUNS_MAX:
            return  # Rule 4: the lease expires and the planner retries it
        scope = trio.CancelScope()
        self.runs[lease.key] = _Run(lease.deadline_ms, wall_ms(), scope)
        self._nursery.start_soon(self._execute, lease.key, scope)

    def _on_end(self, end: AttemptEnd) -> None:
        self.finishes.pop(end.key, None)
        self.claims.pop(end.key, None)
        run = self.runs.get(end.key)
        if run is not None:  # the lease ended while we still run it: it was expired
            run.scope.cancel()

    # ---- running ------------------------------------------------------------------------------------
    async def _execute(self, key: AttemptKey, scope: trio.CancelScope) -> None:
        job = self.server.scheduler.state.jobs.get(key.job)
        info = AttemptInfo(job=key.job, tick_ms=key.tick, slot=key.slot, attempt=key.attempt,
                           node=self.node)
        self.stats.started += 1
        log.info("%s starts %s", self.node, info.execution_id)
        result: ExecutionResult | None = None
        with scope:
            if job is None:
                result = ExecutionResult(ok=False, error="the job was deleted")
            else:
                result = await run_executor(job.spec.executor, job.spec.executor_config, info)
        self.runs.pop(key, None)
        if result is None:
            self.stats.abandoned += 1
            log.warning("%s abandoned %s: its lease ran out", self.node, info.execution_id)
            return
        if result.ok:
            self.stats.succeeded += 1
        else:
            self.stats.failed += 1
        self._record(info, result)
        if len(self.finishes) < FINISHES_MAX:
            self.finishes[key] = (result.ok, result.summary())
        self._wakeup.set()

    def _record(self, info: AttemptInfo, result: ExecutionResult) -> None:
        self.server.local_results.append({
            "job": info.job, "tick_ms": info.tick_ms, "slot": info.slot, "attempt": info.attempt,
            "node": info.node, "ok": result.ok, "exit_code": result.exit_code,
            "status_code": result.status_code, "error": result.error,
            "output": result.output[-OUTPUT_KEPT_CHARS:], "output_truncated": result.output_truncated,
            "started_ms": result.started_ms, "duration_ms": result.duration_ms})

    def _stop_overdue(self, now_ms: int) -> None:
        """Rule 2 for runs in progress: a lease not renewed in time is given up."""
        for run in self.runs.values():
            if now_ms >= self.lease.stop_at_ms(run.deadline_ms):
                run.scope.cancel()

    # ---- reporting ----------------------------------------------------------------------------------
    def _report_items(self, now_ms: int) -> tuple[list[AttemptKey], list[tuple[AttemptKey, bool, str]],
                                                  list[AttemptKey]]:
        renew = [key for key, run in self.runs.items()
                 if now_ms - run.renew_sent_ms >= self.lease.renew_every_ms]
        for key in renew:
            self.runs[key].renew_sent_ms = now_ms
        attempts = self.server.scheduler.state.attempts
        for key in [k for k in self.finishes if k not in attempts]:
            del self.finishes[key]  # ended without our finish (expired): nothing left to say
        finish = [(key, ok, detail) for key, (ok, detail) in self.finishes.items()]
        for key in [k for k in self.claims if k not in attempts or attempts[k].state != "queued"]:
            del self.claims[key]
        claim = list(self.claims) if len(self.runs) < RUNS_MAX else []
        return renew, finish, claim

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            headers = {"Authorization": f"Bearer {self.server.options.token}"} if self.server.options.token else {}
            async with httpx.AsyncClient(timeout=2.0, headers=headers) as http:
                while True:
                    with trio.move_on_after(self.report_period_s):
                        await self._wakeup.wait()
                    self._wakeup = trio.Event()
                    now = wall_ms()
                    self._stop_overdue(now)
                    await self._report(http, *self._report_items(now))

    async def _report(self, http: httpx.AsyncClient, renew: list[AttemptKey],
                      finish: list[tuple[AttemptKey, bool, str]], claim: list[AttemptKey]) -> None:
        server = self.server
        leader = server.raft.node.leader
        if leader is None:
            return
        if leader == self.node:
            server.report_to_planner(self.node, self.info, renew, finish, claim)
            return
        address = server.http_address(leader)
        if address is None:
            self.stats.reports_failed += 1
            return
        url = f"http://{address[0]}:{address[1]}/v1/internal/report"
        try:
            response = await http.post(url, json=report_body(self.node, self.info, renew, finish, claim))
            if response.status_code != 200:
                self.stats.reports_failed += 1
        except httpx.HTTPError:
            self.stats.reports_failed += 1
