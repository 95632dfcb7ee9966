"""`SimCluster`: many RaftNodes on one virtual timeline, with the faults of a real network.

One event heap keyed by (true time, sequence number): the sequence number breaks ties in
insertion order, so the run is a pure function of the seed. Each node has its own clock
(offset, drift, jumps); its Raft timers fire when *its* clock reaches the deadline. A crash
discards the node's volatile state and keeps its storage (which holds exactly what `save`
returned from); a pause freezes timers and queues arriving messages until resume.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol

from raft.config import RaftConfig
from raft.driver import handle_ready
from raft.messages import Entry, EntryKind, Message, Snapshot
from raft.node import RaftNode
from raft.progress import Role
from raft.ready import Ready
from raft.storage import MemoryStorage, Storage
from sim.checkers import SafetyObserver
from sim.clock import NodeClock
from sim.network import Network, NetworkOptions
from sim.statemachine import KVStateMachine, StateMachine
from sim.trace import TraceWriter

DELIVER, TIMER, CALL = 0, 1, 2
_AFTER_PEERS = 1 << 62  # sequence offset: sorts after every ordinary event of the same time
# Enum members bound once: `Role.LEADER` costs a metaclass lookup on CPython 3.11 (raft/node.py).
_LEADER: Final = Role.LEADER
_NORMAL: Final = EntryKind.NORMAL
_INF: Final = math.inf


def _unbound(_value: Any) -> None:
    raise AssertionError("SimCluster binds a node's callbacks when it adds the node")


@dataclass(slots=True)
class RaftTimings:
    election_timeout_ms_min: float = 150.0
    election_timeout_ms_max: float = 300.0
    heartbeat_interval_ms: float = 50.0
    pre_vote: bool = True
    check_quorum: bool = True
    # Not a timing, but a knob the swarm turns: with few entries per AppendEntries a follower
    # acknowledges old-term entries before the new leader's no-op (the Figure 8 window).
    entries_per_message_max: int = 256
    lease_reads: bool = True  # RaftConfig.lease_reads
    leader_loss_jitter_ms: float | None = 30.0  # RaftConfig.leader_loss_jitter_ms


@dataclass(slots=True)
class SimNode:
    id: str
    clock: NodeClock
    storage: Storage
    rng: random.Random
    raft: RaftNode | None = None
    sm: Any = None
    alive: bool = False
    paused: bool = False
    lifetime: int = 0
    timer_gen: int = 0
    timer_at: float = math.inf
    inbox: list[Message] = field(default_factory=list)
    bootstrap: frozenset[str] = frozenset()  # empty for a server that joined later
    # The Ready contract's callbacks, bound once per node (not two lambdas per Ready).
    apply: Callable[[Entry], None] = _unbound
    restore: Callable[[Snapshot], None] = _unbound


class NodeWatcher(Protocol):
    """Told of each node's life-cycle and clock changes at their exact true time, whichever path
    they come by (fault schedule, armed crashes, tests): the scheduler world uses it to kill,
    suspend and restart agents and to record down windows. A protocol, not wrapped methods:
    the compiled build (sim/native.py) does not let a method be replaced on an instance."""

    def crashed(self, node_id: str) -> None: ...  # it was up
    def started(self, node_id: str) -> None: ...
    def paused(self, node_id: str) -> None: ...  # it was running
    def resumed(self, node_id: str, was_paused: bool) -> None: ...  # after any resume() call
    def clock_jumping(self, node_id: str) -> None: ...  # before a jump
    def clock_changed(self, node_id: str) -> None: ...  # after a jump or a rate change


class SimCluster:
    def __init__(
        self,
        node_ids: list[str],
        *,
        seed: int,
        timings: RaftTimings | None = None,
        network: NetworkOptions | None = None,
        make_state_machine: Callable[[], StateMachine] = KVStateMachine,
        make_storage: Callable[[str], Storage] | None = None,
        reopen_storage: Callable[[str, Storage], Storage] | None = None,
        snapshot_entries: int = 0,
        bugs: frozenset[str] = frozenset(),
        trace: TraceWriter | None = None,
        notify_closed_connections: bool = False,
    ) -> None:
        self.seed = seed
        root = random.Random(seed)
        self.net_rng = random.Random(root.getrandbits(64))
        self.fault_rng = random.Random(root.getrandbits(64))
        self.workload_rng = random.Random(root.getrandbits(64))
        node_seed = root.getrandbits(64)
        self.timings = timings or RaftTimings()
        self.network = Network(network or NetworkOptions(), self.net_rng)
        self.make_state_machine = make_state_machine
        self.snapshot_entries = snapshot_entries
        self.raft_bugs = frozenset(b for b in bugs if b in ("commit-old-term", "vote-any-log", "no-truncate", "stale-read"))
        self.bugs = bugs
        self.trace = trace or TraceWriter()
        self.observer = SafetyObserver()
        self.now = 0.0
        self.steps = 0
        self._heap: list[tuple[float, int, int, Any, Any]] = []
        self._seq = 0
        self.ids = list(node_ids)
        self.peers = frozenset(node_ids)
        make_storage = make_storage or (lambda _id: MemoryStorage())
        self.reopen_storage = reopen_storage
        self.nodes: dict[str, SimNode] = {}
        self._make_storage = make_storage
        self._node_seed = node_seed
        for index, node_id in enumerate(node_ids):
            rng = random.Random(node_seed + index)
            self.nodes[node_id] = SimNode(node_id, NodeClock(), make_storage(node_id), rng, bootstrap=self.peers)
        self.on_apply: Callable[[str, int, Entry, Any], None] | None = None
        self.on_read: Callable[[str, int, int], None] | None = None
        self.on_role: Callable[[str, str, int], None] | None = None
        self.on_deliver: Callable[[Message], None] | None = None
        self.on_event: Callable[[str, str, dict[str, Any]], None] | None = None  # every Raft trace event
        self.watcher: NodeWatcher | None = None
        self.snapshots_taken = 0
        self.snapshots_installed = 0
        self.max_log_entries = 0
        # A crash closes the node's sockets: peers it can reach learn it one latency later, as
        # a real transport reads EOF (`RaftNode.leader_connection_lost`).
        self.notify_closed_connections = notify_closed_connections
        for node_id in node_ids:
            self.start(node_id)

    # ---- scheduling ---------------------------------------------------------------------------
    def schedule(self, at_ms: float, kind: int, a: Any, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_ms, self._seq, kind, a, b))

    def call_at(self, at_ms: float, action: Callable[[], None]) -> None:
        """Run `action` at true time `at_ms` (faults, clients, measurements)."""
        self.schedule(max(at_ms, self.now), CALL, action)

    def call_after_peers(self, at_ms: float, action: Callable[[], None]) -> None:
        """Like `call_at`, but after every other event due at the same true time, whenever it
        was scheduled. A fault schedule's actions use this: a step-by-step driver (the stateful
        test) runs `run_until(t)` and only then acts at t, and a replay that scheduled the action
        up front must order it the same way."""
        self._seq += 1
        heapq.heappush(self._heap, (max(at_ms, self.now), _AFTER_PEERS + self._seq, CALL, action, None))

    def run_until(self, until_ms: float, *, stop_on_violation: bool = False) -> bool:
        """Run every event due by `until_ms`; with `stop_on_violation`, stop right after the
        event that gave the observer its first violation. True when it stopped so."""
        heap = self._heap
        pop, deliver, timer = heapq.heappop, self._deliver, self._timer  # the hot loop: locals
        violations = self.observer.violations if stop_on_violation else None  # a list, read per event
        while heap and heap[0][0] <= until_ms:
            at, _seq, kind, a, b = pop(heap)
            self.now = at
            self.steps += 1
            if kind == DELIVER:
                deliver(a)
            elif kind == TIMER:
                timer(a, b)
            else:
                a()
            if violations:  # not a callback per event: ~10 events per proposal
                return True
        self.now = max(self.now, until_ms)
        return False

    # ---- node lifecycle ---------------------------------------------------------------------------
    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert not node.alive
        if self.reopen_storage is not None and node.lifetime > 0:
            node.storage = self.reopen_storage(node_id, node.storage)  # recover from disk, as a restart does
        if "forget-vote" in self.bugs and node.lifetime > 0:
            _forget_vote(node.storage)
        node.lifetime += 1
        node.alive, node.paused = True, False
        node.apply, node.restore = partial(self._apply, node), partial(self._restore, node)
        node.inbox.clear()
        cfg = RaftConfig(
            node_id=node_id, peers=node.bootstrap,
            election_timeout_ms_min=self.timings.election_timeout_ms_min,
            election_timeout_ms_max=self.timings.election_timeout_ms_max,
            heartbeat_interval_ms=self.timings.heartbeat_interval_ms,
            pre_vote=self.timings.pre_vote, check_quorum=self.timings.check_quorum,
            entries_per_message_max=self.timings.entries_per_message_max,
            lease_reads=self.timings.lease_reads, leader_loss_jitter_ms=self.timings.leader_loss_jitter_ms,
            bugs=self.raft_bugs,
        )
        node.sm = self.make_state_machine()
        snapshot = node.storage.snapshot()
        if snapshot is not None:
            node.sm.restore(snapshot.data)
        node.raft = RaftNode(cfg, node.storage, node.rng, node.clock.local(self.now))
        self._emit_fault(node_id, "start", lifetime=node.lifetime)
        self._process(node)
        if self.watcher is not None:
            self.watcher.started(node_id)

    def add_node(self, node_id: str) -> None:
        """A new, empty server in join mode: it never campaigns until a configuration change
        that the leader replicates to it makes it a voter."""
        if node_id in self.nodes:
            raise ValueError(f"node {node_id!r} already exists")
        rng = random.Random(self._node_seed + len(self.nodes))
        self.nodes[node_id] = SimNode(node_id, NodeClock(), self._make_storage(node_id), rng)
        self.ids.append(node_id)
        self.start(node_id)

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            return
        node.alive, node.paused, node.raft, node.sm = False, False, None, None
        node.inbox.clear()
        node.timer_gen += 1
        node.timer_at = math.inf
        self._emit_fault(node_id, "crash")
        if self.notify_closed_connections:
            self._notify_closed(node_id)
        if self.watcher is not None:
            self.watcher.crashed(node_id)

    def _notify_closed(self, closed: str) -> None:
        """Like TCP's EOF, the close reaches a peer after every message already on the wire."""
        options = self.network.options
        last: dict[str, float] = {}
        for at, _seq, kind, message, _ in self._heap:
            if kind == DELIVER and message.src == closed:
                last[message.dst] = max(last.get(message.dst, at), at)
        for peer in self.ids:
            if peer != closed and self.nodes[peer].alive and self.network.connected(closed, peer):
                at = self.now + self.net_rng.uniform(options.latency_ms_min, options.latency_ms_max)
                self.call_at(max(at, last.get(peer, at)), functools.partial(self.connection_closed, peer, closed))

    def connection_closed(self, node_id: str, closed: str) -> None:
        """`node_id` reads EOF on its connection with `closed` (a crash, or a test's transient close)."""
        node = self.nodes[node_id]
        if not node.alive or node.paused or node.raft is None:
            return  # a paused process reads the EOF later; not modelled
        local = node.clock.local(self.now)
        node.raft.tick(local)
        node.raft.leader_connection_lost(closed, local)
        self._process(node)

    def lose_in_flight(self, src: str, probability: float) -> int:
        """Each message `src` sent that is still on the wire vanishes with `probability`: a
        process that dies before its socket buffers drain (paired with a crash). Correlated
        loss, which Raft must survive like any other; it is what leaves a dying leader's last
        entries on a minority (Figure 8). Returns how many were lost."""
        heap = self._heap
        kept: list[tuple[float, int, int, Any, Any]] = []
        for item in heap:  # list order is deterministic, and so are the draws
            if item[2] == DELIVER and item[3].src == src and self.fault_rng.random() < probability:
                continue
            kept.append(item)
        lost = len(heap) - len(kept)
        heap[:] = kept  # in place: `run_until` holds this very list
        heapq.heapify(heap)
        self.network.dropped_loss += lost
        self._emit_fault(src, "lost_in_flight", messages=lost)
        return lost

    def pause(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.alive and not node.paused:
            node.paused = True
            self._emit_fault(node_id, "pause")
            if self.watcher is not None:
                self.watcher.paused(node_id)

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        was_paused = node.alive and node.paused
        if was_paused:
            self._resume(node)
        if self.watcher is not None:
            self.watcher.resumed(node_id, was_paused)

    def _resume(self, node: SimNode) -> None:
        node_id = node.id
        node.paused = False
        self._emit_fault(node_id, "resume")
        raft = node.raft
        assert raft is not None
        local = node.clock.local(self.now)
        raft.tick(local)
        inbox, node.inbox = node.inbox, []
        for message in inbox:
            raft.step(message, local)
        self._process(node)

    def jump_clock(self, node_id: str, delta_ms: float) -> None:
        node = self.nodes[node_id]
        if self.watcher is not None:
            self.watcher.clock_jumping(node_id)
        node.clock.jump(self.now, delta_ms)
        self._emit_fault(node_id, "clock_jump", delta_ms=round(delta_ms, 3))
        if node.alive:
            node.timer_at = math.nan  # force a reschedule against the new clock
            self._reschedule(node)
        if self.watcher is not None:
            self.watcher.clock_changed(node_id)

    def set_clock_rate(self, node_id: str, rate: float) -> None:
        node = self.nodes[node_id]
        node.clock.set_rate(self.now, rate)
        if node.alive:
            node.timer_at = math.nan
            self._reschedule(node)
        if self.watcher is not None:
            self.watcher.clock_changed(node_id)

    def _emit_fault(self, node_id: str, kind: str, **fields: Any) -> None:
        node = self.nodes[node_id]
        self.trace.write(self.now, node_id, node.clock.local(self.now), kind, fields)

    # ---- events -----------------------------------------------------------------------------------
    def _deliver(self, message: Message) -> None:
        node = self.nodes[message.dst]
        if not node.alive:
            return
        if node.paused:
            node.inbox.append(message)
            return
        if self.on_deliver is not None:
            self.on_deliver(message)
        raft = node.raft
        assert raft is not None
        clock = node.clock  # NodeClock.local, inlined: once per message
        local = clock.local_base + clock.rate * (self.now - clock.true_base)
        raft.tick(local)
        raft.step(message, local)
        self._process(node)

    def _timer(self, node_id: str, generation: int) -> None:
        node = self.nodes[node_id]
        if generation != node.timer_gen or not node.alive:
            return
        node.timer_at = math.inf
        if node.paused:
            return  # resume() ticks and reschedules
        raft = node.raft
        assert raft is not None
        local = node.clock.local(self.now)
        deadline = raft.next_deadline()
        if deadline >= local + 1e-6:
            self._reschedule(node)  # armed early on purpose (see `_reschedule`): re-arm, no tick
            return
        if local < deadline:
            local = deadline  # true_at() and local() round differently; the timer is due
        raft.tick(local)
        self._process(node)

    def _process(self, node: SimNode) -> None:
        """Run the Ready contract for one node, let the observer look, and re-arm its timer."""
        raft = node.raft
        assert raft is not None
        on_ready, send, apply, restore = self.observer.on_ready, self._send, node.apply, node.restore
        has_ready, snapshot_entries = raft.has_ready, self.snapshot_entries
        while has_ready():  # a loop, not recursion: one has_ready() per Ready
            ready = handle_ready(raft, node.storage, send, apply, restore)
            on_ready(node.id, node.lifetime, raft, ready, self.steps, self.now)
            if ready.events:
                self._trace_events(node, ready)
            if ready.read_states and self.on_read is not None:
                for read in ready.read_states:
                    self.on_read(node.id, read.context, read.index)
            # Only applies move `applied` up (a snapshot moves both ends): the test below was
            # false after the previous Ready, so it can only have turned true with entries.
            if (ready.committed_entries and snapshot_entries
                    and raft.applied_index - raft.snapshot_index >= snapshot_entries):
                self._take_snapshot(node)
            assert node.raft is raft, "a callback replaced the node mid-Ready"
        self._reschedule(node)

    def _reschedule(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        deadline = raft.next_deadline()
        if deadline == _INF:
            at = _INF
        else:  # NodeClock.true_at, inlined: once per Ready batch
            clock = node.clock
            at = clock.true_base + (deadline - clock.local_base) / clock.rate
        if at >= node.timer_at:
            # The armed event fires no later than needed; `_timer` re-arms it if the deadline
            # moved on. A follower's election deadline moves later on every append it gets, and
            # pushing a fresh heap event each time cost a push and a stale pop per message.
            return
        node.timer_gen += 1
        node.timer_at = at
        if at != _INF:
            self.schedule(max(at, self.now), TIMER, node.id, node.timer_gen)

    def _send(self, message: Message) -> None:
        heap, now = self._heap, self.now
        delay = self.network.plain_delay(message.src, message.dst)
        if delay is not None:  # `schedule`, inlined: once per message
            self._seq += 1
            heapq.heappush(heap, (now + delay, self._seq, DELIVER, message, None))
            return
        for delay in self.network.deliveries(message.src, message.dst):
            self._seq += 1
            heapq.heappush(heap, (now + delay, self._seq, DELIVER, message, None))

    def _apply(self, node: SimNode, entry: Entry) -> None:
        if entry.kind is _NORMAL:
            result = node.sm.apply(entry.index, entry.data)
        else:
            node.sm.skip(entry.index)
            result = None
        if self.on_apply is not None:
            self.on_apply(node.id, node.lifetime, entry, result)

    def _restore(self, node: SimNode, snapshot: Snapshot) -> None:
        node.sm.restore(snapshot.data)
        self.snapshots_installed += 1

    def _take_snapshot(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        index = raft.applied_index
        snapshot = raft.compact(index, node.sm.snapshot())
        node.storage.compact(snapshot)
        self.snapshots_taken += 1

    def _trace_events(self, node: SimNode, ready: Ready) -> None:
        now, node_id = self.now, node.id
        clock = node.clock  # NodeClock.local, inlined
        local = clock.local_base + clock.rate * (now - clock.true_base)
        raft = node.raft
        assert raft is not None
        length = raft.log_length
        if length > self.max_log_entries:
            self.max_log_entries = length
        write, on_role, on_event = self.trace.write, self.on_role, self.on_event
        for event in ready.events:
            kind, fields = event.kind, event.fields
            write(now, node_id, local, kind, fields)
            if kind == "role" and on_role is not None:
                on_role(node_id, fields["role"], fields["term"])
            if on_event is not None:
                on_event(node_id, kind, fields)

    # ---- inspection ---------------------------------------------------------------------------
    def leader(self) -> str | None:
        """The live, unpaused leader with the highest term, if any."""
        best: tuple[int, str] | None = None
        for node in self.nodes.values():  # once per proposal: the role constant, bound
            raft = node.raft
            if node.alive and not node.paused and raft is not None and raft.role is _LEADER:
                if best is None or raft.term > best[0]:
                    best = (raft.term, node.id)
        return best[1] if best else None

    def live(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.alive and not n.paused]

    def propose(self, node_id: str, data: bytes) -> tuple[int, int]:
        """Propose on a node (raises NotLeader / ProposalDropped like the real thing)."""
        node = self.nodes[node_id]
        assert node.alive and node.raft is not None and not node.paused
        node.raft.tick(node.clock.local(self.now))
        result = node.raft.propose(data)
        self._process(node)
        return result

    def with_node(self, node_id: str, action: Callable[[RaftNode], Any]) -> Any:
        """Run `action` on a live node's Raft and then process its Ready (reads, transfers)."""
        node = self.nodes[node_id]
        assert node.alive and node.raft is not None and not node.paused
        node.raft.tick(node.clock.local(self.now))
        try:
            return action(node.raft)
        finally:
            self._process(node)


def _forget_vote(storage: Storage) -> None:
    """The `forget-vote` bug: a restart loses the vote (as PySyncObj does, see raft-anchors §1)."""
    from raft.messages import HardState

    hard = storage.initial_state()
    storage.save(HardState(term=hard.term, vote=None, commit=hard.commit), [], None)
