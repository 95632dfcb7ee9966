"""A simulated cluster whose nodes have a CPU, a synced disk and a network card.

The plain simulator (`sim/cluster.py`) spends no virtual time on computation: a message is
handled the instant it arrives, so a Raft cluster there has unbounded throughput and a
"throughput versus servers" curve would be flat at infinity. For the Dkron study every node
gets three resources, each a FIFO server in virtual time:

- **CPU** (one core for the raftcron process). Inputs (Raft messages, timer ticks, agent
  requests, client HTTP requests, planner rounds) queue at the node. When the CPU is free it
  takes *everything queued* as one batch, as an event loop that drains its sockets does: it
  steps every message, then runs the Ready contract once (so proposals and appends that
  arrive together share one synced save: group commit). The work done is priced by
  `CostModel` and the node is busy for that long; the batch's visible outputs (messages sent,
  the scheduler's reactions to applied entries) leave at the *end* of the busy period. State
  changes happen at the start, invisible to anyone until then.
- **Disk**: every `Storage.save` is one synced write (raftcron's LMDB storage syncs every
  save), priced inside the batch that made it.
- **NIC**: a message of b bytes occupies the sender's link for b / bandwidth before the
  network's latency applies; messages leave in order.

A CPU-bound executor run shares the node's cores with the raftcron process: with r such runs
active on `cores` cores, the process's work takes max(1, (r + 1) / cores) times longer
(processor sharing). The run's own duration is its configured CPU time (not stretched).

Everything stays deterministic: costs are functions of the work counted, never of the
wall-clock time it took the simulator to do it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from raft.messages import AppendEntries, Entry, EntryKind, InstallSnapshot, Message
from raft.storage import MemoryStorage
from sim.cluster import SimCluster, SimNode

__all__ = ["CostModel", "CostedCluster", "load_costs"]

COSTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "costs.json")
MESSAGE_HEADER_BYTES = 48
ENTRY_HEADER_BYTES = 16


@dataclass(frozen=True, slots=True)
class CostModel:
    """CPU microseconds per unit of work at 1000 millicores, and the disk and link.

    The defaults are overridden by `costs.json`, which `calibrate.py` measures from the real
    code paths on this machine (see the README for the numbers and the method)."""

    recv_us: float = 90.0  # receive, decode and step one Raft message
    recv_entry_us: float = 6.0  # per entry carried by a received message
    send_us: float = 90.0  # encode and send one message
    byte_ns: float = 0.1  # per byte encoded, decoded or copied (sent, received, saved)
    save_us: float = 5000.0  # one synced storage write: the wait for the disk (not CPU)
    save_cpu_us: float = 450.0  # its CPU part (LMDB transaction, the fsync system call)
    save_entry_us: float = 2.0  # per entry written
    apply_us: float = 12.0  # decode and dispatch one normal entry
    apply_command_us: float = 10.0  # per command inside it (a Batch holds several)
    apply_effect_us: float = 2.0  # per effect the state machine produced
    agent_request_us: float = 800.0  # an internal agent request (heartbeat, renew, finish, claim)
    client_request_us: float = 800.0  # a jobs-API HTTP request (parse, validate, respond)
    planner_round_us: float = 30.0  # a planner round with nothing to do
    planner_command_us: float = 8.0  # per command the round proposes
    timer_us: float = 5.0  # a Raft tick (heartbeats are priced as sends)
    bandwidth_mbit_s: float = 1000.0
    source: str = "defaults"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(obj: dict[str, Any]) -> CostModel:
        names = {f.name for f in fields(CostModel)}
        return CostModel(**{k: v for k, v in obj.items() if k in names})


def load_costs(path: str | None = None) -> CostModel:
    """The calibrated model if `costs.json` exists, else the defaults."""
    path = path or COSTS_FILE
    if not os.path.exists(path):
        return CostModel()
    with open(path, encoding="utf-8") as handle:
        return CostModel.from_json(json.load(handle)["model"])


def message_bytes(message: Message) -> int:
    """Wire size estimate: a header plus each carried entry (or snapshot chunk)."""
    size = MESSAGE_HEADER_BYTES
    if isinstance(message, AppendEntries):
        for entry in message.entries:
            size += ENTRY_HEADER_BYTES + len(entry.data)
    elif isinstance(message, InstallSnapshot):
        size += len(getattr(message, "data", b""))
    return size


@dataclass(slots=True)
class _Input:
    kind: int  # _MSG, _TIMER or _CALL
    payload: Any
    cost_us: float = 0.0


_MSG, _TIMER, _CALL = 0, 1, 2


@dataclass(slots=True)
class NodeCpu:
    queue: list[_Input] = field(default_factory=list)
    busy_until: float = 0.0
    armed: bool = False
    busy_ms: float = 0.0  # total CPU time spent (for utilisation)
    batches: int = 0
    nic_free: float = 0.0
    saves: int = 0


class _CountingStorage(MemoryStorage):
    """MemoryStorage that reports every save to the cluster (one synced write each)."""

    def __init__(self, on_save: Callable[[int, int], None]) -> None:
        super().__init__()
        self._on_save = on_save

    def save(self, hard_state: Any, entries: Any, snapshot: Any) -> None:
        super().save(hard_state, entries, snapshot)
        self._on_save(len(entries), sum(len(e.data) for e in entries))


class CostedCluster(SimCluster):
    """`SimCluster` with a CPU queue, a synced disk and a NIC per node (module docstring)."""

    def __init__(self, node_ids: list[str], *, costs: CostModel, millicores: float = 1000.0,
                 cores: int = 2, **kwargs: Any) -> None:
        self.costs = costs
        self.cpu_scale = 1000.0 / millicores
        self.cores = cores
        self.cpu: dict[str, NodeCpu] = {}
        self._holding: str | None = None  # node whose batch is running: outputs are held
        self._deferring: str | None = None  # node whose Ready is postponed to the batch end
        self._dirty = False
        self._work_us = 0.0
        self._disk_us = 0.0
        self._held_sends: list[Message] = []
        self._held_calls: list[Callable[[], None]] = []
        self.cpu_bound_runs: dict[str, int] = {}  # active CPU-bound executor runs per node
        self.byte_us = costs.byte_ns / 1000.0
        self.link_bytes_per_ms = costs.bandwidth_mbit_s * 1000.0 / 8.0
        kwargs.setdefault("make_storage", lambda _id: _CountingStorage(self._on_save))
        super().__init__(node_ids, **kwargs)

    # ---- inputs -------------------------------------------------------------------------------
    def _cpu(self, node_id: str) -> NodeCpu:
        cpu = self.cpu.get(node_id)
        if cpu is None:
            cpu = self.cpu[node_id] = NodeCpu()
        return cpu

    def _enqueue(self, node_id: str, item: _Input) -> None:
        cpu = self._cpu(node_id)
        cpu.queue.append(item)
        if not cpu.armed:
            cpu.armed = True
            self.schedule(max(self.now, cpu.busy_until), 2, lambda: self._run_batch(node_id), None)

    def cpu_call(self, node_id: str, cost_us: float, action: Callable[[], None]) -> None:
        """Run `action` on `node_id`'s CPU (queued behind its other work), priced `cost_us`."""
        node = self.nodes.get(node_id)
        if node is None or not node.alive:
            return
        self._enqueue(node_id, _Input(_CALL, action, cost_us))

    def at_batch_end(self, action: Callable[[], None]) -> None:
        """Inside a batch: run `action` when the batch's outputs leave (else now)."""
        if self._holding is not None:
            self._held_calls.append(action)
        else:
            action()

    def add_work(self, cost_us: float) -> None:
        """Price extra work inside the running batch (no-op outside one)."""
        if self._holding is not None:
            self._work_us += cost_us

    def _deliver(self, message: Message) -> None:
        node = self.nodes[message.dst]
        if not node.alive:
            return
        self._enqueue(message.dst, _Input(_MSG, message))

    def _timer(self, node_id: str, generation: int) -> None:
        node = self.nodes[node_id]
        if generation != node.timer_gen or not node.alive:
            return
        self._enqueue(node_id, _Input(_TIMER, generation))

    # ---- the batch ------------------------------------------------------------------------------
    def _run_batch(self, node_id: str) -> None:
        cpu = self.cpu[node_id]
        cpu.armed = False
        batch, cpu.queue = cpu.queue, []
        node = self.nodes[node_id]
        if not node.alive or not batch:
            return
        costs = self.costs
        self._holding, self._deferring, self._dirty = node_id, node_id, False
        self._work_us = self._disk_us = 0.0
        try:
            for item in batch:
                if not node.alive:
                    break
                if item.kind == _MSG:
                    message = item.payload
                    self._work_us += costs.recv_us + message_bytes(message) * self.byte_us
                    if isinstance(message, AppendEntries):
                        self._work_us += costs.recv_entry_us * len(message.entries)
                    SimCluster._deliver(self, message)
                elif item.kind == _TIMER:
                    self._work_us += costs.timer_us
                    SimCluster._timer(self, node_id, item.payload)
                else:
                    self._work_us += item.cost_us
                    item.payload()
            self._deferring = None
            if node.alive and node.raft is not None and not node.paused:
                SimCluster._process(self, node)
        finally:
            self._holding = self._deferring = None
        slowdown = max(1.0, (self.cpu_bound_runs.get(node_id, 0) + 1) / self.cores)
        cost_ms = (self._work_us * self.cpu_scale * slowdown + self._disk_us) / 1000.0
        end = self.now + cost_ms
        cpu.busy_until = end
        cpu.busy_ms += cost_ms
        cpu.batches += 1
        sends, self._held_sends = self._held_sends, []
        for message in sends:
            self._transmit(message, end)
        calls, self._held_calls = self._held_calls, []
        if calls:
            self.schedule(end, 2, lambda: _run_all(calls), None)
        if cpu.queue and not cpu.armed:
            cpu.armed = True
            self.schedule(end, 2, lambda: self._run_batch(node_id), None)

    def _process(self, node: SimNode) -> None:
        if self._deferring == node.id:
            self._dirty = True
            return
        super()._process(node)

    # ---- outputs --------------------------------------------------------------------------------
    def _send(self, message: Message) -> None:
        if self._holding == message.src:
            self._work_us += self.costs.send_us + message_bytes(message) * self.byte_us
            self._held_sends.append(message)
        else:
            self._transmit(message, self.now)

    def _transmit(self, message: Message, at_ms: float) -> None:
        cpu = self._cpu(message.src)
        depart = max(at_ms, cpu.nic_free) + message_bytes(message) / self.link_bytes_per_ms
        cpu.nic_free = depart
        for delay in self.network.deliveries(message.src, message.dst):
            self.schedule(depart + delay, 0, message)

    def _apply(self, node: SimNode, entry: Entry) -> None:
        if entry.kind is EntryKind.NORMAL:
            result = node.sm.apply(entry.index, entry.data)
            if self._holding == node.id:
                costs = self.costs
                children = getattr(result, "children", None) or ()
                effects = getattr(result, "effects", None) or ()
                self._work_us += (costs.apply_us + costs.apply_command_us * max(1, len(children))
                                  + costs.apply_effect_us * (len(effects) + sum(len(c.effects) for c in children))
                                  + len(entry.data) * self.byte_us)
        else:
            node.sm.skip(entry.index)
            result = None
        callback = self.on_apply
        if callback is None:
            return
        if self._holding == node.id:
            lifetime = node.lifetime
            self._held_calls.append(lambda: callback(node.id, lifetime, entry, result))
        else:
            callback(node.id, node.lifetime, entry, result)

    def _on_save(self, entries: int, data_bytes: int) -> None:
        if self._holding is not None:
            costs = self.costs
            self._work_us += costs.save_cpu_us + costs.save_entry_us * entries + data_bytes * self.byte_us
            self._disk_us += costs.save_us  # the fsync: not the CPU, so neither scaled nor shared
            self.cpu[self._holding].saves += 1

    # ---- inspection -----------------------------------------------------------------------------
    def utilisation(self, elapsed_ms: float) -> dict[str, float]:
        return {n: round(c.busy_ms / elapsed_ms, 4) for n, c in sorted(self.cpu.items())
                if elapsed_ms > 0}


def _run_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()
