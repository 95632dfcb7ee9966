"""`Server`: one raftcron server process: storage, Raft runtime, transport and HTTP API.

The pieces and who owns what:
  * `WalStorage` over `LmdbStorage` (the Raft log and hard state, synced; LMDB alone with
    --no-wal) under `DATA_DIR/raft`;
  * `ServerMachine` (the replicated state: scheduler + KV registers), rebuilt at start from
    the last snapshot plus the committed log;
  * `RaftRuntime` (one task owns the `RaftNode`), `Transport` (TCP + HMAC frames), and the
    HTTP API (starlette, on our own HTTP/1.1 server) as sibling tasks in one nursery.
Cancelling `run` stops them all; storage is closed last, after the runtime stopped writing.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

import trio

from raft.config import RaftConfig
from raft.errors import NotLeader, ProposalDropped
from raft.progress import Role
from raft.messages import Entry
from raft.ready import TraceEvent
from raft.wal_storage import open_storage
from raft.transport import Transport
from raft.trio_driver import RaftRuntime, RuntimeOptions
from scheduler.commands import AttemptKey
from scheduler.leases import LeasePolicy
from scheduler.machine import SchedulerStateMachine
from scheduler.planner import AgentInfo, PlannerPolicy
from scheduler.results import AttemptEnd, Result
from scheduler.server.agent import AgentService, join_cluster, replay_boundary
from scheduler.server.leader import LeaderService
from scheduler.server.machine import KVPart, Part, ServerMachine
from scheduler.server.http_server import HttpServerOptions, serve_http
from scheduler.server.members import MembersPart
from scheduler.server.options import OptionsError, ServerOptions, parse_address
from sim.trace import TraceWriter

__all__ = ["Server"]

log = logging.getLogger("raftcron.server")
LOCAL_RESULTS_MAX = 256


class Server:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.kv = KVPart()
        self.scheduler = SchedulerStateMachine()
        self.members = MembersPart(self._member_joined)
        self.parts: dict[str, Part] = {"kv": self.kv, "sched": self.scheduler, "members": self.members}
        self.joined: dict[str, tuple[tuple[str, int], tuple[str, int]]] = {}  # raft, http
        self.job_locks: dict[str, trio.Lock] = {}  # jobs_api Rule 3
        # The last results of attempts run on this node (output stays local, bounded).
        self.local_results: deque[dict[str, Any]] = deque(maxlen=LOCAL_RESULTS_MAX)
        self.machine = ServerMachine(self.parts)
        self.runtime: RaftRuntime | None = None
        self.transport: Transport | None = None
        self.http_port: int | None = None
        self.started_at_s = 0.0
        # Extra /metrics families (the scheduler's fires, missed ticks, executions).
        self.metric_sources: list[Callable[[], list[str]]] = []
        self.attempt_ends: dict[str, int] = {}  # by end state, as applied by this process
        self.leader_service: LeaderService | None = None
        self.agent_service: AgentService | None = None

    def _tracer(self, sink: IO[str] | None) -> Callable[[TraceEvent], None] | None:
        """Raft events in the simulator's schema (sim/trace.py): `t` is this machine's wall
        clock (the closest thing to true time a real node has), `local` its monotonic clock."""
        if sink is None:
            return None
        writer = TraceWriter(sink)
        node = self.options.node_id

        def write(event: TraceEvent) -> None:
            writer.write(time.time() * 1000.0, node, trio.current_time() * 1000.0, event.kind,
                         event.fields)

        return write

    def _count_attempt_ends(self, entry: Entry, result: Any) -> None:
        """For /metrics: executions' attempts by how they ended (succeeded, failed, expired...)."""
        if isinstance(result, Result):
            for effect in result.all_effects():
                if isinstance(effect, AttemptEnd):
                    self.attempt_ends[effect.state] = self.attempt_ends.get(effect.state, 0) + 1

    def _member_joined(self, node: str, raft: str, http: str) -> None:
        """An agent's addresses were applied (members.py): reach it, accept its frames."""
        try:
            raft_address, http_address = parse_address(raft, "raft"), parse_address(http, "http")
        except OptionsError:
            log.warning("ignoring member %s with unusable addresses %r, %r", node, raft, http)
            return
        self.joined[node] = (raft_address, http_address)
        if self.transport is not None:
            self.transport.add_peer(node, raft_address)

    def http_address(self, node: str) -> tuple[str, int] | None:
        if node in self.options.peers_http:
            return self.options.peers_http[node]
        joined = self.joined.get(node)
        return joined[1] if joined is not None else None

    def raft_address(self, node: str) -> tuple[str, int] | None:
        if node in self.options.peers:
            return self.options.peers[node]
        joined = self.joined.get(node)
        return joined[0] if joined is not None else None

    @property
    def raft(self) -> RaftRuntime:
        assert self.runtime is not None, "the server is not running"
        return self.runtime

    def raft_config(self) -> RaftConfig:
        options = self.options
        return RaftConfig(
            node_id=options.node_id,
            peers=options.raft_peer_ids if options.voter else frozenset(),
            election_timeout_ms_min=options.election_timeout_ms,
            election_timeout_ms_max=2 * options.election_timeout_ms,
            heartbeat_interval_ms=options.heartbeat_interval_ms,
            lease_reads=False,  # reads use ReadIndex rounds: a closed leader connection may end the lease
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        options = self.options
        raft_dir = Path(options.data_dir) / "raft"
        raft_dir.parent.mkdir(parents=True, exist_ok=True)
        storage = open_storage(raft_dir, cluster_id=options.cluster_id, node_id=options.node_id,
                               wal=options.wal)
        trace_file = open(options.trace_path, "a", buffering=1) if options.trace_path else None
        try:
            self.started_at_s = trio.current_time()
            runtime = RaftRuntime(self.raft_config(), storage, self.machine,
                                  send=lambda message: transport.send(message),
                                  rng=random.Random(), options=RuntimeOptions(
                                      snapshot_entries=options.snapshot_entries),
                                  on_event=self._tracer(trace_file))
            transport = Transport(node_id=options.node_id, cluster_id=options.cluster_id,
                                  secret=options.secret, listen=options.raft_address,
                                  peers=options.peers, deliver=runtime.deliver,
                                  connection_lost=runtime.connection_lost)
            self.runtime, self.transport = runtime, transport
            for node, (raft_address, _) in self.joined.items():  # restored from a snapshot
                transport.add_peer(node, raft_address)
            runtime.appliers.append(self._count_attempt_ends)
            # Services register as appliers before the first Ready replays the log.
            policy = self.planner_policy()
            self.leader_service = LeaderService(self, policy) if options.voter else None
            self.agent_service = AgentService(self, policy.lease,
                                              replay_until=replay_boundary(storage))
            async with trio.open_nursery() as nursery:
                await nursery.start(runtime.run)
                await nursery.start(transport.run)
                await self._start_http(nursery)
                if self.leader_service is not None:
                    nursery.start_soon(self.leader_service.run)
                nursery.start_soon(self.agent_service.run)
                if not options.voter:
                    nursery.start_soon(join_cluster, self)
                if options.fault_drop_file is not None:
                    nursery.start_soon(self._follow_drop_file, options.fault_drop_file)
                log.info("%s ready: raft %s:%s, http %s:%s, data %s", options.node_id,
                         options.raft_address[0], transport.bound_port, options.http_address[0],
                         self.http_port, options.data_dir)
                task_status.started()
        finally:
            storage.close()
            if trace_file is not None:
                trace_file.close()

    async def _follow_drop_file(self, path: Path) -> None:
        """Testing hook (`--fault-drop-file`, jepsen_like's partition where network namespaces
        are unavailable): drop Raft traffic to and from the peer ids listed in `path`, re-read
        every 50 ms; a missing or empty file blocks nobody."""
        transport = self.transport
        assert transport is not None
        while True:
            try:
                blocked = frozenset(path.read_text().split())
            except OSError:
                blocked = frozenset()
            if blocked != transport.blocked_peers:
                log.warning("%s: fault injection: dropping Raft traffic with %s", self.options.node_id,
                            ", ".join(sorted(blocked)) or "nobody")
                transport.blocked_peers = blocked
            await trio.sleep(0.05)

    async def hand_over(self) -> None:
        """Before stopping, a leader passes leadership to its most caught-up follower (thesis
        §3.10), so a planned restart costs the cluster a round trip instead of an election
        timeout. Bounded by one maximum election timeout; failures just mean an election."""
        runtime = self.runtime
        if runtime is None or runtime.node.role is not Role.LEADER:
            return
        target = runtime.handover_target()
        if target is None:
            return
        try:
            runtime.transfer_leadership(target)
        except (NotLeader, ProposalDropped):
            return
        log.info("%s hands leadership to %s before stopping", self.options.node_id, target)
        with trio.move_on_after(2 * self.options.election_timeout_ms / 1000.0):
            while runtime.node.role is Role.LEADER:
                await runtime.wait_role_change()

    def planner_policy(self) -> PlannerPolicy:
        """Leases sized for real servers (docs/operations.md explains the clock bound D)."""
        return PlannerPolicy(lease=LeasePolicy(lease_ms=self.options.lease_ms,
                                               renew_every_ms=self.options.lease_ms // 6,
                                               max_offset_ms=self.options.clock_offset_ms_max))

    def report_to_planner(self, node: str, info: AgentInfo, renew: list[AttemptKey],
                          finish: list[tuple[AttemptKey, bool, str]], claim: list[AttemptKey]) -> bool:
        """An agent's report, for this server's planner; False unless it is planning."""
        if self.leader_service is None:
            return False
        return self.leader_service.report(node, info, renew, finish, claim)

    async def _start_http(self, nursery: trio.Nursery) -> None:
        from scheduler.http_api import build_app  # late: the API module imports this one

        host, port = self.options.http_address
        self.http_port = await nursery.start(partial(serve_http, build_app(self), host, port,
                                                     options=HttpServerOptions(keep_alive_s=30.0)))
