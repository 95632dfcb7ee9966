"""Run one simulation from options and summarise it: what `raftcron sim` does.

Everything random derives from `SimOptions.seed` (network, faults, workload and each node get
their own sub-seed), so a seed names a run. The summary's `trace_sha256` fingerprints it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
from sim.swarm import SwarmProfile, draw_swarm
from sim.trace import TraceWriter
from sim.workload import WORKLOADS, KVWorkload, WorkloadOptions

# Options that describe how a run is *watched* or *generated*, not what happens in it: a
# replayed schedule records everything else (`SimOptions.to_json`).
_NOT_RECORDED = frozenset({"seed", "faults", "schedule", "trace_sink", "keep_trace", "swarm",
                           "swarm_environment"})


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
    workload: str = "kv"  # kv: Jepsen-style clients, history checked; counter: blind proposals
    clients: int = 5  # kv: concurrent clients; `proposals_per_second` is their total op rate
    keys: int = 3
    lease_reads: bool = False  # kv: reads use the leader lease instead of a ReadIndex round
    client_timeout_ms: float = 2000.0  # kv: a client that heard nothing by then records `info`
    swarm: bool = False  # draw the fault schedule per seed (`sim/swarm.py`); kinds from `faults`
    swarm_environment: bool = False  # with `swarm`: also draw latency, Raft knobs, client mix
    jobs: list[dict[str, Any]] | None = None  # `--jobs`: run the scheduler (sim/scheduler_world.py)
    scheduler: WorldOptions = field(default_factory=WorldOptions)

    def to_json(self) -> dict[str, Any]:
        """What a replay needs besides the seed and the schedule (see `_NOT_RECORDED`)."""
        out: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            if spec.name in _NOT_RECORDED:
                continue
            value = getattr(self, spec.name)
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)  # type: ignore[arg-type]
            elif isinstance(value, (set, frozenset)):
                value = sorted(value)
            out[spec.name] = value
        return out

    @staticmethod
    def from_json(obj: dict[str, Any], *, seed: int) -> SimOptions:
        """The inverse of `to_json`; unknown names are an error, missing ones take defaults."""
        defaults = SimOptions()
        names = {spec.name for spec in dataclasses.fields(SimOptions)} - _NOT_RECORDED
        unknown = set(obj) - names
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)} in the schedule")
        kwargs: dict[str, Any] = {}
        for name, value in obj.items():
            default = getattr(defaults, name)
            if dataclasses.is_dataclass(default):
                options_type: Callable[..., Any] = type(default)  # typed so mypyc compiles this module
                value = options_type(**value)
            elif isinstance(default, frozenset):
                value = frozenset(value)
            kwargs[name] = value
        return SimOptions(seed=seed, **kwargs)

    @staticmethod
    def replaying(schedule: FaultSchedule) -> SimOptions:
        """The run a self-contained schedule names (its seed and options inside), replaying it."""
        if schedule.options is None:
            raise ValueError("the schedule has no options inside; save one with raftcron sim --save-schedule")
        options = SimOptions.from_json(schedule.options, seed=schedule.seed or 0)
        options.schedule = schedule
        return options

    def validate(self) -> None:
        if not 1 <= self.nodes <= 15:
            raise ValueError(f"--nodes must be between 1 and 15, got {self.nodes}")
        if not 0 < self.seconds <= 86_400:
            raise ValueError(f"--seconds must be in (0, 86400], got {self.seconds}")
        if self.storage not in ("memory", "lmdb", "wal"):
            raise ValueError(f"--storage must be memory, lmdb or wal, got {self.storage!r}")
        if self.proposals_per_second < 0:
            raise ValueError("--rate must be >= 0")
        if self.workload not in WORKLOADS:
            raise ValueError(f"--workload must be one of {', '.join(WORKLOADS)}, got {self.workload!r}")
        self._workload_options().validate()
        self.network.validate()

    def _workload_options(self) -> WorkloadOptions:
        return WorkloadOptions(clients=self.clients, keys=self.keys, rate=self.proposals_per_second,
                               lease_reads=self.lease_reads, timeout_ms=self.client_timeout_ms)


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
        sender = self.cluster.nodes[message.src]
        if key == self.current and (not sender.alive or sender.paused):
            return  # still in flight from before the crash or pause: the leader is not back
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
        self.swarm_profile: SwarmProfile | None = None
        if options.swarm and options.schedule is None:
            options, self.swarm_profile = draw_swarm(options, environment=options.swarm_environment)
            options.validate()
        self.options = options
        ids = [f"n{i}" for i in range(1, options.nodes + 1)]
        self.trace = TraceWriter(options.trace_sink, keep=options.keep_trace)
        self._tmpdir: str | None = None
        storage_kwargs: dict[str, Any] = {}
        if options.storage in ("lmdb", "wal"):
            storage_kwargs = self._disk_storage(options.storage)
        if options.jobs is not None:
            storage_kwargs["make_state_machine"] = state_machine_factory(options.bugs)
        self.cluster = SimCluster(ids, seed=options.seed, timings=options.timings, network=options.network,
                                  snapshot_entries=options.snapshot_entries, bugs=options.bugs, trace=self.trace,
                                  **storage_kwargs)
        self.meter = FailoverMeter(self.cluster)
        self.cluster.on_role = self._on_role
        self.cluster.on_deliver = self.meter.on_deliver
        self.cluster.on_event = self._on_event
        self.world = (SchedulerWorld(self.cluster, options.jobs, options.scheduler, bugs=options.bugs)
                      if options.jobs is not None else None)
        self._armed_fire: list[FaultAction] = []  # crash_after_fire waiting for a Fire proposal
        if self.world is not None:
            self.world.on_fire_proposed = self._on_fire_proposed
        self.schedule = self._make_schedule(ids)
        self._crashed: list[str] = []
        self._membership_goals: list[tuple[str, str]] = []
        self._membership_pending = False
        self._armed_propose: list[FaultAction] = []  # crash_after_propose waiting for a proposal
        self._armed_elect: list[FaultAction] = []  # crash_after_elect waiting for an election
        self._armed_vote: list[FaultAction] = []  # crash_after_vote waiting for a granted vote
        self._core: list[str] | None = None  # the liveness phase's majority, once it began
        self._core_deadline = 0.0
        self.liveness: dict[str, Any] | None = None
        self._clients_stopped = False
        self.stopped = False  # by a safety violation: the run ends at once (see `_run_until`)
        self.commits = 0
        self.proposals = 0
        self.workload: KVWorkload | None = None
        if options.workload == "kv" and self.world is None:
            self.workload = KVWorkload(self.cluster, options._workload_options(), on_proposed=self._on_proposed)
            self.workload.start(500.0)
        elif options.proposals_per_second > 0 and self.world is None:
            self.cluster.call_at(500.0, self._propose_tick)
        self._install_schedule()

    def _disk_storage(self, kind: str) -> dict[str, Any]:
        """Real storage files in a temporary directory; a restart drops the node's storage and
        reopens it, so recovery from disk runs for real under the safety checks.

        `lmdb`: LmdbStorage, unsynced (the simulated crash is a process crash: the OS keeps
        the pages), closed and reopened. `wal`: WalStorage (raft/wal_storage.py) with a small
        WAL and limits that checkpoint every few saves, dropped without its closing
        checkpoint, as a killed process leaves it, so reopening replays the WAL. It syncs for
        real (slow)."""
        from raft.lmdb_storage import LmdbStorage
        from raft.wal_storage import Limits, WalStorage

        self._tmpdir = tempfile.mkdtemp(prefix=f"raftcron-sim-{kind}-")
        root = self._tmpdir
        cluster_id = f"sim-{self.options.seed}"
        limits = Limits(entries=16, bytes=64 << 10, records=24)

        def make(node_id: str) -> Storage:
            path = os.path.join(root, node_id)
            if kind == "wal":
                return WalStorage.open(path, cluster_id=cluster_id, node_id=node_id,
                                       map_size=1 << 30, wal_bytes=256 << 10, limits=limits)
            return LmdbStorage.open(path, cluster_id=cluster_id, node_id=node_id, map_size=1 << 30,
                                    sync=False)

        def reopen(node_id: str, old: Storage) -> Storage:
            if isinstance(old, WalStorage):
                old.crash()
            else:
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
        """The schedule, exactly as its JSON reads back (so a run and its replay agree), and
        carrying the seed and options that make it replay alone."""
        opts = self.options
        if opts.schedule is not None:
            schedule = opts.schedule
        elif opts.faults is None:
            schedule = leader_crash_schedule(opts.seconds)
        else:  # the mild mix; its own sub-seed, so `random` targets resolve alike in a replay
            rng = random.Random(f"raftcron-faults:{opts.seed}")
            schedule = random_schedule(rng, ids, opts.seconds, opts.faults)
        schedule = dataclasses.replace(schedule, seed=opts.seed, options=opts.to_json())
        return schedule.normalized()

    # ---- faults --------------------------------------------------------------------------------
    def _install_schedule(self) -> None:
        cluster = self.cluster
        for node, offset in self.schedule.clock_offsets_ms.items():
            cluster.nodes[node].clock.jump(0.0, offset)
        for node, rate in self.schedule.clock_rates.items():
            cluster.nodes[node].clock.set_rate(0.0, rate)
        for action in self.schedule.actions:
            cluster.call_after_peers(action.at_ms, functools.partial(self._run_action, action))

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
        if self._core is not None and not kind.startswith("client_"):
            self._trace_net("ignored", action=action.to_json())  # the liveness phase: no more faults
            return
        node = action.node if kind == "add_server" else self._resolve(action.node)
        if kind in ("crash", "pause") and node is not None:
            if kind == "crash":
                self._crash(node, action.duration, action.loss)
            else:
                self._pause(node, action.duration)
        elif kind == "crash_after_propose":
            self._armed_propose.append(action)
        elif kind == "crash_after_elect":
            self._armed_elect.append(action)
        elif kind == "crash_after_vote":
            self._armed_vote.append(action)
        elif kind == "crash_after_fire":
            self._armed_fire.append(action)
        elif kind == "core" and action.sides:
            self._begin_liveness(action.sides[0], action.value or 0.0)
        elif kind.startswith("client_"):
            if self.workload is not None and action.value is not None:
                self.workload.issue_one(kind[len("client_"):], int(action.value), node)
        elif kind.startswith(("job_", "agent_")):
            if self.world is not None:
                self.world.run_action(kind, node, action.job)
        elif kind == "restart" and node is not None:
            if not cluster.nodes[node].alive:
                if node in self._crashed:
                    self._crashed.remove(node)
                cluster.start(node)
        elif kind == "resume" and node is not None:
            cluster.resume(node)
        elif kind in ("partition", "one_way") and action.sides:
            side_a, side_b = self._resolve_sides(action.sides)
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

    def _resolve_sides(self, sides: list[list[str]]) -> tuple[set[str], set[str]]:
        """Partition sides may name `leader` (resolved now) and `rest` (everyone not on the
        other side), so a schedule can say "isolate whoever leads" before anyone does."""
        resolved: list[set[str]] = []
        for side in sides[:2]:
            names = {self._resolve(n) for n in side if n != "rest"}
            resolved.append({n for n in names if n is not None})
        everyone = set(self.cluster.ids)
        for position, side in enumerate(sides[:2]):
            if "rest" in side:
                resolved[position] |= everyone - resolved[1 - position]
        return resolved[0], resolved[1]

    def _crash(self, node: str, duration: float | None, loss: float | None = None) -> None:
        """Crash `node` now, losing `loss` of its messages in flight; with `duration`, restart
        it that many ms later."""
        cluster = self.cluster
        if self._core is not None and node in self._core:
            return  # a crash armed before the liveness phase must not hit the healed core
        self.meter.on_node_down(node)
        if not cluster.nodes[node].alive:
            return
        if loss:
            cluster.lose_in_flight(node, loss)
        self._crashed.append(node)
        cluster.crash(node)
        if duration is not None:
            cluster.call_at(cluster.now + duration, lambda: self._restart(node))

    def _restart(self, node: str) -> None:
        if not self.cluster.nodes[node].alive:
            if node in self._crashed:
                self._crashed.remove(node)
            self.cluster.start(node)

    def _pause(self, node: str, duration: float | None) -> None:
        cluster = self.cluster
        if self._core is not None and node in self._core:
            return
        self.meter.on_node_down(node)
        cluster.pause(node)
        if duration is not None:
            cluster.call_at(cluster.now + duration, lambda: cluster.resume(node))

    def _on_proposed(self, node: str) -> None:
        """A client proposal just reached `node`'s log: fire an armed crash_after_propose."""
        if self._armed_propose:
            self._fire_armed(self._armed_propose.pop(0), node)

    def _on_fire_proposed(self, node: str) -> None:
        """The scheduler's leader `node` just proposed a Fire: fire an armed crash_after_fire."""
        if self._armed_fire:
            self._fire_armed(self._armed_fire.pop(0), node)

    def _on_role(self, node: str, role: str, term: int) -> None:
        self.meter.on_role(node, role, term)
        if role == "leader" and self._armed_elect:
            self._fire_armed(self._armed_elect.pop(0), node)

    def _on_event(self, node: str, kind: str, fields: dict[str, Any]) -> None:
        if kind == "vote" and fields["granted"] and not fields["pre_vote"] and self._armed_vote:
            self._fire_armed(self._armed_vote.pop(0), node)

    def _fire_armed(self, action: FaultAction, node: str) -> None:
        """Crash `node` `action.value` ms from now (never inside the callback that armed it:
        the node is in the middle of its Ready)."""
        self.cluster.call_at(self.cluster.now + (action.value or 0.0),
                             lambda: self._crash(node, action.duration, action.loss))

    # ---- the liveness phase (VOPR): heal a majority core, require it to converge ----------------
    def _begin_liveness(self, core: list[str], bound_ms: float) -> None:
        cluster = self.cluster
        self._core = [n for n in core if n in cluster.nodes]
        self._core_deadline = cluster.now + bound_ms
        self._armed_propose.clear()
        self._armed_elect.clear()
        self._armed_vote.clear()
        self._armed_fire.clear()
        cluster.network.heal()
        cluster.network.options.loss_probability = 0.0
        cluster.network.options.duplicate_probability = 0.0
        cluster.network.options.reorder_probability = 0.0  # healed: no pathological delays either
        others = set(cluster.ids) - set(self._core)
        if others:
            cluster.network.partition(set(self._core), others)
        self._trace_net("core", core=self._core, bound_ms=bound_ms)
        for node in self._core:
            if not cluster.nodes[node].alive:
                self._restart(node)
            elif cluster.nodes[node].paused:
                cluster.resume(node)
        self._clients_stopped = True
        if self.workload is not None:
            self.workload.stop()
        self.liveness = {"core": self._core, "bound_ms": bound_ms, "began_ms": round(cluster.now, 3),
                         "converged_after_ms": None}
        cluster.call_at(cluster.now, self._poll_liveness)

    def _poll_liveness(self) -> None:
        cluster, liveness = self.cluster, self.liveness
        assert liveness is not None and self._core is not None
        problem = self.core_divergence(self._core)
        if problem is None:
            liveness["converged_after_ms"] = round(cluster.now - liveness["began_ms"], 3)
            return
        if cluster.now >= self._core_deadline:
            liveness["failure"] = f"no convergence within {liveness['bound_ms']:g} ms: {problem}"
            return
        cluster.call_at(min(cluster.now + self.options.timings.heartbeat_interval_ms, self._core_deadline),
                        self._poll_liveness)

    def core_divergence(self, core: list[str]) -> str | None:
        """None when `core` agrees: one leader of the highest term that all follow, everything
        in its log committed, and every member applied exactly that, with equal state."""
        nodes = self.cluster.nodes
        down = [n for n in core if not nodes[n].alive or nodes[n].paused]
        if down:
            return f"core nodes down: {down}"
        rafts = {n: nodes[n].raft for n in core}
        leaders = [n for n, r in rafts.items() if r is not None and r.role.value == "leader"]
        if len(leaders) != 1:
            return f"{len(leaders)} leaders in the core" if leaders else "no leader in the core"
        leader = rafts[leaders[0]]
        assert leader is not None
        if leader.commit_index != leader.last_index:
            return f"leader {leaders[0]} has committed {leader.commit_index} of {leader.last_index}"
        state = nodes[leaders[0]].sm.snapshot()
        for name, raft in rafts.items():
            assert raft is not None
            if raft.term != leader.term or raft.leader != leaders[0]:
                return f"{name} is at term {raft.term} following {raft.leader}"
            if raft.commit_index != leader.commit_index or raft.applied_index != leader.commit_index:
                return (f"{name} committed {raft.commit_index}, applied {raft.applied_index}; "
                        f"leader committed {leader.commit_index}")
            if nodes[name].sm.snapshot() != state:
                return f"{name}'s state machine differs from the leader's"
        return None

    def _drive_membership(self) -> None:
        """Work through pending membership goals one server at a time, as an operator would:
        propose at the leader, wait until committed, promote a learner only once caught up,
        and stop a removed server once its removal is committed. Retries every 100 ms."""
        cluster = self.cluster
        while self._membership_goals:
            action, node = self._membership_goals[0]
            leader = cluster.leader()
            raft = cluster.nodes[leader].raft if leader is not None else None
            if leader is None or raft is None:
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

    def membership_pending(self) -> bool:
        """A membership change asked for is not committed yet (the stateful test waits)."""
        return bool(self._membership_goals)

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
        if self._clients_stopped:
            return
        leader = cluster.leader()
        if leader is not None:
            self.proposals += 1
            data = msgpack.packb([self.proposals, "write", self.proposals % 8, self.proposals])
            try:
                cluster.propose(leader, data)
                self._on_proposed(leader)
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
        while t < end and not self.stopped:
            t = min(end, t + chunk)
            self._run_until(t)
            if progress is not None:
                progress(t / end)
        return self.finish(time.perf_counter() - started)

    def _run_until(self, until_ms: float) -> None:
        """Run events up to `until_ms`, stopping right after the event that broke safety (the
        VOPR stops at the first failure: a broken cluster can livelock, e.g. a leader probing a
        follower whose committed entry conflicts, forever, duplicated into a message storm)."""
        if self.stopped:
            return
        if self.cluster.run_until(until_ms, stop_on_violation=True):
            self.stopped = True

    # ---- step by step (the stateful test drives a run this way; the result replays) ---------------
    def act(self, action: FaultAction) -> None:
        """Run `action` now and record it in the schedule. It runs after every event already due
        at this time, exactly where a replay that scheduled it up front will run it."""
        cluster = self.cluster
        assert round(cluster.now, 3) == cluster.now, "act on the schedule's microsecond grid"
        action.at_ms = cluster.now
        self.schedule.actions.append(action)
        cluster.call_after_peers(cluster.now, lambda: self._run_action(action))
        self._run_until(cluster.now)

    def advance(self, ms: float) -> None:
        self._run_until(round(self.cluster.now + ms, 3))

    def replay_schedule(self) -> FaultSchedule:
        """What happened so far, as a schedule `raftcron sim --replay` runs to this very moment."""
        options = dict(self.schedule.options or self.options.to_json())
        seconds = self.cluster.now / 1000.0
        while seconds * 1000.0 < self.cluster.now:  # never end a replay an ulp short
            seconds = math.nextafter(seconds, math.inf)
        options["seconds"] = seconds
        return dataclasses.replace(self.schedule, actions=list(self.schedule.actions), options=options)

    def finish(self, wall_seconds: float) -> dict[str, Any]:
        """End of run: judge the liveness phase if it is still open, then summarise."""
        liveness = self.liveness
        if self.stopped:
            pass  # a run stopped by a safety violation has nothing to say about liveness
        elif liveness is not None and liveness["converged_after_ms"] is None and "failure" not in liveness:
            assert self._core is not None
            problem = self.core_divergence(self._core)
            if problem is None:
                liveness["converged_after_ms"] = round(self.cluster.now - liveness["began_ms"], 3)
            else:
                liveness["failure"] = f"the run ended before the core converged: {problem}"
        return self.summary(wall_seconds)

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
            "proposals": self.proposals if self.workload is None else self.workload.proposals,
            "messages_sent": cluster.network.sent,
            "messages_dropped": cluster.network.dropped_loss + cluster.network.dropped_partition,
            "snapshots_taken": cluster.snapshots_taken,
            "snapshots_installed": cluster.snapshots_installed,
            "max_log_entries": cluster.max_log_entries,
            "faults": [a.to_json() for a in self.schedule.actions],
            "safety_violations": [v.to_json() for v in cluster.observer.violations],
            **self._client_summary(),
            "liveness": self.liveness,
            "swarm": self.swarm_profile.to_json() if self.swarm_profile is not None else None,
            **(self.world.summary(self.cluster.now) if self.world is not None else {}),
            "trace_sha256": self.trace.sha256(),
        }

    def _client_summary(self) -> dict[str, Any]:
        """The kv workload's history, checked for linearizability ("unknown": out of time)."""
        if self.workload is None:
            return {"workload": self.options.workload, "linearizable": None, "linearizability_violations": []}
        verdict = self.workload.check()
        return {
            "workload": "kv",
            "client_operations": dict(self.workload.counts),
            "linearizable": verdict["valid"],
            "linearizability_violations": verdict["failures"],
            "linearizability_unknown_keys": verdict["unknown_keys"],
            "linearizability_check_s": verdict["elapsed_s"],
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
