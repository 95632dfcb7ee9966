"""`LeaderService`: runs the scheduler's planner while, and only while, this server leads.

Rules:
  1. A planner is built from the replicated state after a ReadIndex barrier, so it starts
     from every job's replicated cursor (entries of earlier leaders included), never from
     this process's memory of a previous term.
  2. One round per `period_s`: `plan(now_ms)` with the leader's wall clock, then the entries
     are proposed one after another (their order is the log order the planner intended).
     Every applied scheduler entry, whoever proposed it, is fed back through `observe`.
  3. Losing leadership (or a proposal refused as NotLeader) drops the planner at once: a
     deposed leader must stop proposing fires. Proposals already in flight are re-checked by
     the state machine, so at worst they are rejected. A leader whose round failed otherwise
     (a timeout) rebuilds its planner from the replicated state after a pause.
  4. Agents' reports (heartbeats, renewals, finishes, claims) reach the planner through
     `report`, on the leader only; their commands are stamped with the leader's clock.
  5. A new leader listens to reports for `listen_s` before its first round, then treats a
     node it has not heard from as down. Ticks due meanwhile fire a moment late, within
     their grace window; the alternative, dispatching to a node that may be the crashed
     leader, turns a tick into a lost execution when the job has no retries.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import trio

from raft.errors import NotLeader, ProposalDropped
from raft.messages import Entry
from raft.progress import Role
from raft.trio_driver import ProposalTimeout
from scheduler.commands import AttemptKey, encode_command
from scheduler.planner import AgentInfo, Planner, PlannerPolicy
from scheduler.results import Result
from scheduler.server.machine import envelope

if TYPE_CHECKING:
    from scheduler.server.node import Server

__all__ = ["LeaderService", "wall_ms"]

log = logging.getLogger("raftcron.leader")
PERIOD_S_DEFAULT: Final = 0.1
RETRY_PAUSE_S: Final = 1.0
LISTEN_S_DEFAULT: Final = 1.2  # > two agent report periods (agent.py reports every 0.5 s)
REPORT_ITEMS_MAX: Final = 1_000


def wall_ms() -> int:
    """The leader's clock, milliseconds since the epoch (the only clock commands carry)."""
    return time.time_ns() // 1_000_000


class LeaderService:
    def __init__(self, server: Server, policy: PlannerPolicy, period_s: float = PERIOD_S_DEFAULT,
                 listen_s: float = LISTEN_S_DEFAULT) -> None:
        self.server = server
        self.policy = policy
        self.period_s = period_s
        self.listen_s = listen_s
        self.planner: Planner | None = None
        self.rounds = 0
        self._heard_early: dict[str, tuple[int, AgentInfo]] = {}
        self.entries_proposed = 0
        self.entries_failed = 0
        server.raft.appliers.append(self._observe)

    # ---- inputs ---------------------------------------------------------------------------------
    def _observe(self, entry: Entry, result: Any) -> None:
        """Rule 2: every applied scheduler entry informs the planner (a runtime applier)."""
        planner = self.planner
        if planner is not None and isinstance(result, Result):
            planner.observe(result.all_effects())

    def report(self, node: str, info: AgentInfo, renew: list[AttemptKey],
               finish: list[tuple[AttemptKey, bool, str]], claim: list[AttemptKey]) -> bool:
        """Rule 4: an agent's report; False when this server has no planner (not leading)."""
        planner = self.planner
        if planner is None:
            if self.server.raft.node.role is not Role.LEADER:
                return False
            self._heard_early[node] = (wall_ms(), info)  # Rule 5: listening before planning
            return True
        planner.heard(node, wall_ms(), info)
        for key in renew[:REPORT_ITEMS_MAX]:
            planner.renew(node, key)
        for key, ok, detail in finish[:REPORT_ITEMS_MAX]:
            planner.finish(node, key, ok, detail)
        for key in claim[:REPORT_ITEMS_MAX]:
            planner.claim(node, key)
        return True

    # ---- the service ----------------------------------------------------------------------------
    async def run(self) -> None:
        runtime = self.server.raft
        while True:
            while runtime.node.role is not Role.LEADER:
                await runtime.wait_role_change()
            term = runtime.node.term
            try:
                await self._lead(term)
            except NotLeader as error:
                log.info("%s stops planning at term %d: %s", self.server.options.node_id, term, error)
            except (ProposalDropped, ProposalTimeout) as error:
                # Still leading but stuck (a slow disk, a lost quorum not yet noticed): start
                # over from the replicated state after a pause, or stop when deposed.
                log.warning("%s restarts its planner at term %d: %s", self.server.options.node_id,
                            term, error)
                with trio.move_on_after(RETRY_PAUSE_S):
                    await runtime.wait_role_change()
            finally:
                self.planner = None

    def _new_planner(self) -> Planner:
        """Rule 5: a planner that has 'listened' for a full node timeout already, fed what we
        heard meanwhile, so a node that stayed silent (the crashed old leader) is presumed
        down at once instead of being handed fresh ticks for its first seconds."""
        now = wall_ms()
        planner = Planner(self.server.scheduler.state, self.policy, now - self.policy.node_timeout_ms)
        for node, (seen, info) in self._heard_early.items():
            planner.heard(node, seen, info)
        self._heard_early.clear()
        return planner

    async def _lead(self, term: int) -> None:
        runtime = self.server.raft
        self._heard_early.clear()
        await runtime.read_index(timeout_s=self.server.options.request_timeout_s)  # Rule 1
        await trio.sleep(self.listen_s)
        self.planner = self._new_planner()
        log.info("%s plans as leader of term %d (%d jobs)", self.server.options.node_id, term,
                 len(self.server.scheduler.state.jobs))
        while runtime.node.role is Role.LEADER and runtime.node.term == term:
            if self.planner.state is not self.server.scheduler.state:  # restored from a snapshot
                self.planner = self._new_planner()
            for batch in self.planner.plan(wall_ms()):
                await self._propose(encode_command(batch))
            self.rounds += 1
            await trio.sleep(self.period_s)

    async def _propose(self, data: bytes) -> None:
        try:
            await self.server.raft.propose(envelope("sched", data),
                                           timeout_s=self.server.options.request_timeout_s)
            self.entries_proposed += 1
        except ProposalDropped:
            self.entries_failed += 1  # the planner's recheck proposes it again
        except (NotLeader, ProposalTimeout):
            self.entries_failed += 1
            raise
