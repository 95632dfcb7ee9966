"""Run one simulation from options and summarise it: what `raftcron sim` does.

Everything random derives from `SimOptions.seed` (network, faults, workload and each node get
their own sub-seed), so a seed names a run. The summary's `trace_sha256` fingerprints it.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import msgpack

from raft.errors import NotLeader, ProposalDropped
from raft.messages import AppendEntries, Message
from raft.node import ConfChange
from raft.progress import quorum_size
from raft.storage import Storage
from sim.cluster import RaftTimings, SimCluster
from sim.faults import FaultAction, FaultSchedule, leader_crash_schedule, random_schedule
from sim.network import NetworkOptions
from sim.scheduler_world import SchedulerWorld, WorldOptions, state_machine_factory
from sim.trace import TraceWriter


@dataclass(slots=True)
class SimOptions:
    nodes: int = 5
    seconds: float = 60.0
    seed: int = 0
    faults: set[str] | None = None  # None: the default leader-crash story
    schedule: FaultSchedule | None = None  # replay this exact schedule instead
    timings: RaftTimings = field(default_factory=RaftTimings)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    proposals_per_second: float = 10.0
    snapshot_entries: int = 1000
    bugs: frozenset[str] = frozenset()
    storage: str = "memory"  # or "lmdb": the real storage code path under simulated crashes
    trace_sink: IO[str] | None = None
    keep_trace: bool = False
    jobs: list[dict[str, Any]] | None = None  # `--jobs`: run the scheduler (sim/scheduler_world.py)
    scheduler: WorldOptions = field(default_factory=WorldOptions)

    def validate(self) -> None:
        if not 1 <= self.nodes <= 15:
            raise ValueError(f"--nodes must be between 1 and 15, got {self.nodes}")
        if not 0 < self.seconds <= 86_400:
            raise ValueError(f"--seconds must be in (0, 86400], got {self.seconds}")
        if self.storage not in ("memory", "lmdb"):
            raise ValueError(f"--storage must be memory or lmdb, got {self.storage!r}")
        if self.proposals_per_second < 0:
            raise ValueError("--rate must be >= 0")
        self.network.validate()


class FailoverMeter:
    """Leader outages, measured as the Raft paper's Figure 16 does: from the moment the leader
    is lost until a new leader's first heartbeat has reached a quorum of the servers."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.quorum = quorum_size(len(cluster.ids))
        self.current: tuple[int, str] | None = None  # (term, node) acknowledged by a quorum
        self.outage_start: float | None = 0.0
        self.first_leader_ms: float | None = None
        self.failovers_ms: list[float] = []
        self.leaders: list[dict[str, Any]] = []
        self._acks: dict[tuple[int, str], set[str]] = {}

    def on_role(self, node: str, role: str, term: int) -> None:
        if role == "leader":
            self.leaders.append({"term": term, "node": node, "elected_at": round(self.cluster.now / 1000.0, 6)})
        elif self.current is not None and self.current[1] == node and role == "follower":
            self.leader_lost()

    def leader_lost(self) -> None:
        if self.outage_start is None:
            self.outage_start = self.cluster.now
            self._acks.clear()  # the same leader, back in the same term, must be heard anew

    def on_node_down(self, node: str) -> None:
        if self.current is not None and self.current[1] == node:
            self.leader_lost()

    def on_deliver(self, message: Message) -> None:
        if self.outage_start is None or not isinstance(message, AppendEntries):
            return
        key = (message.term, message.src)
        if self.current is not None and key[0] < self.current[0]:
            return  # an older term; the same term is the lost leader coming back (one leader per term)
        acks = self._acks.setdefault(key, {message.src})
        acks.add(message.dst)
        if len(acks) >= self.quorum:
            if self.first_leader_ms is None:
                self.first_leader_ms = self.cluster.now - self.outage_start
            else:
                self.failovers_ms.append(self.cluster.now - self.outage_start)
            self.current, self.outage_start = key, None
            self._acks.clear()


class Runner:
    def __init__(self, options: SimOptions) -> None:
        options.validate()
        self.options = options
        ids = [f"n{i}" for i in range(1, options.nodes + 1)]
        self.trace = TraceWriter(options.trace_sink, keep=options.keep_trace)
        self._tmpdir: str | None = None
        storage_kwargs: dict[str, Any] = {}
        if options.storage == "lmdb":
            storage_kwargs = self._lmdb_storage()
        if options.jobs is not None:
            storage_kwargs["make_state_machine"] = state_machine_factory(options.bugs)
        self.cluster = SimCluster(ids, seed=options.seed, timings=options.timings, network=options.network,
                                  snapshot_entries=options.snapshot_entries, bugs=options.bugs, trace=self.trace,
                                  **storage_kwargs)
        self.meter = FailoverMeter(self.cluster)
        self.cluster.on_role = self.meter.on_role
        self.cluster.on_deliver = self.meter.on_deliver
        self.world = (SchedulerWorld(self.cluster, options.jobs, options.scheduler, bugs=options.bugs)
                      if options.jobs is not None else None)
        self.schedule = self._make_schedule(ids)
        self._crashed: list[str] = []
        self._membership_goals: list[tuple[str, str]] = []
        self._membership_pending = False
        self.commits = 0
        self.proposals = 0
        self._install_schedule()
        if options.proposals_per_second > 0 and self.world is None:
            self.cluster.call_at(500.0, self._propose_tick)

    def _lmdb_storage(self) -> dict[str, Any]:
        """LMDB in a temporary directory; a restart closes and reopens it, so recovery from disk
        runs for real. Unsynced (the simulated crash is a process crash: the OS keeps the pages)."""
        from raft.lmdb_storage import LmdbStorage

        self._tmpdir = tempfile.mkdtemp(prefix="raftcron-sim-")
        root = self._tmpdir
        cluster_id = f"sim-{self.options.seed}"

        def make(node_id: str) -> Storage:
            return LmdbStorage.open(os.path.join(root, node_id), cluster_id=cluster_id, node_id=node_id,
                                    map_size=1 << 30, sync=False)

        def reopen(node_id: str, old: Storage) -> Storage:
            assert isinstance(old, LmdbStorage)
            old.close()
            return make(node_id)

        return {"make_storage": make, "reopen_storage": reopen}

    def close(self) -> None:
        if self._tmpdir is not None:
            for node in self.cluster.nodes.values():
                close = getattr(node.storage, "close", None)
                if close is not None:
                    close()
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _make_schedule(self, ids: list[str]) -> FaultSchedule:
        opts = self.options
        if opts.schedule is not None:
            return opts.schedule
        if opts.faults is None:
            return leader_crash_schedule(opts.seconds)
        return random_schedule(self.cluster.fault_rng, ids, opts.seconds, opts.faults)

    # ---- faults --------------------------------------------------------------------------------
    def _install_schedule(self) -> None:
        cluster = self.cluster
        for node, offset in self.schedule.clock_offsets_ms.items():
            cluster.nodes[node].clock.jump(0.0, offset)
        for node, rate in self.schedule.clock_rates.items():
            cluster.nodes[node].clock.set_rate(0.0, rate)
        for action in self.schedule.actions:
            cluster.call_at(action.at_ms, lambda a=action: self._run_action(a))

    def _resolve(self, target: str | None) -> str | None:
        cluster = self.cluster
        if target == "leader":
            return cluster.leader()
        if target == "crashed":
            return self._crashed[0] if self._crashed else None
        if target == "random":
            return cluster.fault_rng.choice(cluster.ids)
        if target is not None and target not in cluster.nodes:
            raise ValueError(f"fault action names unknown node {target!r}")
        return target

    def _run_action(self, action: FaultAction) -> None:
        cluster = self.cluster
        kind = action.kind
        node = action.node if kind == "add_server" else self._resolve(action.node)
        if kind in ("crash", "pause") and node is not None:
            self.meter.on_node_down(node)
            if kind == "crash" and cluster.nodes[node].alive:
                self._crashed.append(node)
                cluster.crash(node)
            elif kind == "pause":
                cluster.pause(node)
        elif kind == "restart" and node is not None:
            if not cluster.nodes[node].alive:
                if node in self._crashed:
                    self._crashed.remove(node)
                cluster.start(node)
        elif kind == "resume" and node is not None:
            cluster.resume(node)
        elif kind in ("partition", "one_way") and action.sides:
            side_a, side_b = set(action.sides[0]), set(action.sides[1])
            cluster.network.partition(side_a, side_b, one_way=(kind == "one_way"))
            self._trace_net(kind, sides=action.sides)
            self._check_leader_cut()
        elif kind == "heal":
            cluster.network.heal()
            self._trace_net("heal")
        elif kind == "clock_jump" and node is not None and action.value is not None:
            cluster.jump_clock(node, action.value)
        elif kind == "clock_rate" and node is not None and action.value is not None:
            cluster.set_clock_rate(node, action.value)
        elif kind == "net":
            self._set_net(action)
        elif kind == "transfer":
            self._transfer(node)
        elif kind == "add_server" and action.node is not None:
            if action.node not in cluster.nodes:
                cluster.add_node(action.node)
            self._membership_goals += [("add_learner", action.node), ("promote", action.node)]
            self._drive_membership()
        elif kind == "remove_server" and node is not None:
            self._membership_goals.append(("remove", node))
            self._drive_membership()

    def _drive_membership(self) -> None:
        """Work through pending membership goals one server at a time, as an operator would:
        propose at the leader, wait until committed, promote a learner only once caught up,
        and stop a removed server once its removal is committed. Retries every 100 ms."""
        cluster = self.cluster
        while self._membership_goals:
            action, node = self._membership_goals[0]
            leader = cluster.leader()
            raft = cluster.nodes[leader].raft if leader is not None else None
            if raft is None:
                break
            committed = raft.config_at(raft.commit_index)
            done = {"add_learner": node in committed.members, "promote": node in committed.voters,
                    "remove": node not in committed.members}[action]
            if done:
                self._membership_goals.pop(0)
                if action == "remove" and node != leader:
                    cluster.crash(node)
                continue
            if action == "promote":
                progress = raft.progress(node)
                if progress is None or progress.match < raft.commit_index:
                    break  # still catching up as a learner
            try:
                cluster.with_node(leader, lambda r: r.propose_config_change(ConfChange(action, node)))
            except (NotLeader, ProposalDropped):
                pass
            break
        if self._membership_goals and not self._membership_pending:
            self._membership_pending = True
            cluster.call_at(cluster.now + 100.0, self._membership_retry)

    def _membership_retry(self) -> None:
        self._membership_pending = False
        self._drive_membership()

    def _set_net(self, action: FaultAction) -> None:
        opts = self.cluster.network.options
        if action.loss is not None:
            opts.loss_probability = action.loss
        if action.dup is not None:
            opts.duplicate_probability = action.dup
        self._trace_net("net", loss=opts.loss_probability, dup=opts.duplicate_probability)

    def _transfer(self, target: str | None) -> None:
        leader = self.cluster.leader()
        if leader is None or target is None or target == leader:
            return
        try:
            self.cluster.with_node(leader, lambda raft: raft.transfer_leadership(target))
        except (NotLeader, ProposalDropped):
            pass

    def _check_leader_cut(self) -> None:
        """A partition that leaves the acknowledged leader without a quorum is a leader loss."""
        current = self.meter.current
        if current is None:
            return
        leader = current[1]
        reachable = sum(1 for n in self.cluster.ids if n == leader or self.cluster.network.connected(leader, n))
        if reachable < self.meter.quorum:
            self.meter.leader_lost()

    def _trace_net(self, kind: str, **fields: Any) -> None:
        self.cluster.trace.write(self.cluster.now, "net", self.cluster.now, kind, fields)

    # ---- workload -------------------------------------------------------------------------------
    def _propose_tick(self) -> None:
        cluster = self.cluster
        leader = cluster.leader()
        if leader is not None:
            self.proposals += 1
            data = msgpack.packb([self.proposals, "write", self.proposals % 8, self.proposals])
            try:
                cluster.propose(leader, data)
            except (NotLeader, ProposalDropped):
                pass
        gap = 1000.0 / self.options.proposals_per_second
        cluster.call_at(cluster.now + gap, self._propose_tick)

    # ---- run --------------------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        end = self.options.seconds * 1000.0
        started = time.perf_counter()
        chunk = max(1000.0, end / 100.0)
        t = 0.0
        while t < end:
            t = min(end, t + chunk)
            self.cluster.run_until(t)
            if progress is not None:
                progress(t / end)
        wall = time.perf_counter() - started
        return self.summary(wall)

    def summary(self, wall_seconds: float) -> dict[str, Any]:
        cluster, meter = self.cluster, self.meter
        failovers = [round(ms / 1000.0, 6) for ms in meter.failovers_ms]
        committed_normal = cluster.observer.normal_committed
        return {
            "seed": self.options.seed,
            "nodes": self.options.nodes,
            "sim_seconds": self.options.seconds,
            "events": cluster.steps,
            "wall_seconds": round(wall_seconds, 3),
            "events_per_second": round(cluster.steps / wall_seconds, 1) if wall_seconds > 0 else None,
            "sim_speedup": round(self.options.seconds / wall_seconds, 1) if wall_seconds > 0 else None,
            "first_leader_s": round(meter.first_leader_ms / 1000.0, 6) if meter.first_leader_ms is not None else None,
            "leaders": meter.leaders,
            "leader_changes": max(0, len(meter.leaders) - 1),
            "failovers": failovers,
            "commits": committed_normal,
            "proposals": self.proposals,
            "messages_sent": cluster.network.sent,
            "messages_dropped": cluster.network.dropped_loss + cluster.network.dropped_partition,
            "snapshots_taken": cluster.snapshots_taken,
            "snapshots_installed": cluster.snapshots_installed,
            "max_log_entries": cluster.max_log_entries,
            "faults": [a.to_json() for a in self.schedule.actions],
            "safety_violations": [v.to_json() for v in cluster.observer.violations],
            **(self.world.summary(self.cluster.now) if self.world is not None else {}),
            "trace_sha256": self.trace.sha256(),
        }


def run_simulation(options: SimOptions, progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    runner = Runner(options)
    try:
        return runner.run(progress)
    finally:
        runner.close()


def derive_seeds(seed: int, count: int) -> list[int]:
    """Seeds for a batch (`--seeds N`): the first is `seed` itself, so it replays alone."""
    rng = random.Random(seed)
    return [seed] + [rng.getrandbits(32) for _ in range(count - 1)]
