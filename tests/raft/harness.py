"""A deterministic in-memory network of RaftNodes for the unit tests (etcd's `network` helper).

Nothing is delivered until a test asks: `deliver_one` steps the oldest matching message,
`deliver_all` runs until no message is left. Every node's Ready goes through the real
`raft.driver.handle_ready` against a `MemoryStorage`, so persist-before-send holds here too.
Links can be cut (`cut`, `isolate`, `heal`); a message on a cut link is dropped when it would
be delivered. Time is one number, `now`, shared by all nodes and moved only by the test.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from raft.config import RaftConfig
from raft.driver import handle_ready
from raft.messages import Entry, HardState, Message, Snapshot
from raft.node import RaftNode
from raft.progress import Role
from raft.ready import ReadState, TraceEvent
from raft.storage import MemoryStorage

Match = Callable[[Message], bool]


def stored(log: list[tuple[int, int]], term: int, commit: int = 0) -> MemoryStorage:
    """A MemoryStorage already holding entries `(index, term)` and a hard state at `term`."""
    storage = MemoryStorage()
    entries = [Entry(index=i, term=t, data=f"{i}/{t}".encode()) for i, t in log]
    storage.save(HardState(term=term, commit=commit), entries, None)
    return storage


class Network:
    def __init__(self, size: int = 3, *, seed: int = 0, storages: dict[str, MemoryStorage] | None = None,
                 **config: object) -> None:
        self.now = 0.0
        self.peers = frozenset(f"n{i}" for i in range(1, size + 1))
        self.nodes: dict[str, RaftNode] = {}
        self.storages: dict[str, MemoryStorage] = {}
        self.applied: dict[str, list[Entry]] = {}
        self.restored: dict[str, list[Snapshot]] = {}
        self.events: dict[str, list[TraceEvent]] = {}
        self.read_states: dict[str, list[ReadState]] = {}
        self.queue: list[Message] = []  # sent, not yet delivered or dropped
        self.sent: list[Message] = []  # every message any node ever handed out, for counting
        self.dropped: list[Message] = []
        self.cut_links: set[frozenset[str]] = set()
        self._seed = seed
        for node_id in sorted(self.peers):
            self.add(node_id, self.peers, (storages or {}).get(node_id), **config)

    def add(self, node_id: str, peers: Iterable[str], storage: MemoryStorage | None = None,
            **config: object) -> RaftNode:
        cfg = RaftConfig(node_id=node_id, peers=frozenset(peers), **config)  # type: ignore[arg-type]
        self.storages[node_id] = storage = storage if storage is not None else MemoryStorage()
        rng = random.Random(f"{self._seed}-{node_id}")
        self.nodes[node_id] = node = RaftNode(cfg, storage, rng, self.now)
        for per_node in (self.applied, self.restored, self.events, self.read_states):
            per_node.setdefault(node_id, [])  # type: ignore[attr-defined]
        return node

    def restart(self, node_id: str) -> RaftNode:
        """Crash and restart: only what `handle_ready` saved to the node's storage survives."""
        rng = random.Random(f"{self._seed}-{node_id}-{self.now}")
        node = RaftNode(self.nodes[node_id].cfg, self.storages[node_id], rng, self.now)
        self.nodes[node_id] = node
        self.applied[node_id] = []  # the state machine is volatile: it replays the log
        return node

    # ---- the Ready loop ----------------------------------------------------------------------
    def process(self, node_ids: Iterable[str] | None = None) -> None:
        """Run `handle_ready` on every node (or the given ones) that has something to hand out."""
        for node_id in sorted(node_ids if node_ids is not None else self.nodes):
            node = self.nodes[node_id]
            while node.has_ready():
                ready = handle_ready(node, self.storages[node_id], self._send,
                                     self.applied[node_id].append, self.restored[node_id].append)
                self.events[node_id].extend(ready.events)
                self.read_states[node_id].extend(ready.read_states)

    def _send(self, message: Message) -> None:
        self.sent.append(message)
        self.queue.append(message)

    # ---- delivery ----------------------------------------------------------------------------
    def deliver_one(self, match: Match | None = None) -> Message | None:
        """Deliver the oldest queued message that `match` accepts; None if there is none."""
        for position, message in enumerate(self.queue):
            if match is None or match(message):
                del self.queue[position]
                if self.is_cut(message.src, message.dst) or message.dst not in self.nodes:
                    self.dropped.append(message)
                    return message
                self.nodes[message.dst].step(message, self.now)
                self.process([message.dst])
                return message
        return None

    def deliver_all(self, match: Match | None = None, limit: int = 100_000) -> int:
        """Process every node, then deliver until the queue (or its matching part) is empty."""
        self.process()
        count = 0
        while self.deliver_one(match) is not None:
            count += 1
            assert count < limit, "message storm: the network never went quiet"
        return count

    def drop(self, match: Match | None = None) -> list[Message]:
        kept, gone = [], []
        for message in self.queue:
            (gone if match is None or match(message) else kept).append(message)
        self.queue = kept
        self.dropped.extend(gone)
        return gone

    def pending(self, match: Match | None = None) -> list[Message]:
        return [m for m in self.queue if match is None or match(m)]

    # ---- partitions --------------------------------------------------------------------------
    def cut(self, a: str, b: str) -> None:
        self.cut_links.add(frozenset((a, b)))

    def isolate(self, node_id: str) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut(node_id, other)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between nodes of different groups."""
        side = {node_id: i for i, group in enumerate(groups) for node_id in group}
        for a in self.nodes:
            for b in self.nodes:
                if a < b and side.get(a) != side.get(b):
                    self.cut(a, b)

    def heal(self) -> None:
        self.cut_links.clear()

    def is_cut(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.cut_links

    # ---- time --------------------------------------------------------------------------------
    def tick(self, to: float, node_ids: Iterable[str] | None = None) -> None:
        assert to >= self.now, "time only moves forward"
        self.now = to
        for node_id in sorted(node_ids if node_ids is not None else self.nodes):
            self.nodes[node_id].tick(to)
        self.process()

    def run(self, duration_ms: float, step_ms: float = 10.0) -> None:
        """Advance time in steps, ticking every node and delivering everything after each."""
        end = self.now + duration_ms
        while self.now < end:
            self.tick(min(end, self.now + step_ms))
            self.deliver_all()

    def campaign(self, node_id: str) -> None:
        """Move time to `node_id`'s election deadline and tick only that node."""
        node = self.nodes[node_id]
        assert node.role is not Role.LEADER
        self.tick(max(self.now, node.next_deadline()), [node_id])

    def elect(self, node_id: str) -> RaftNode:
        self.campaign(node_id)
        self.deliver_all()
        node = self.nodes[node_id]
        assert node.role is Role.LEADER, f"{node_id} did not win: {node.role}"
        return node

    # ---- inspection --------------------------------------------------------------------------
    def leaders(self) -> list[str]:
        return sorted(i for i, n in self.nodes.items() if n.role is Role.LEADER)

    def log(self, node_id: str) -> list[tuple[int, int]]:
        """(index, term) of every entry `node_id` holds in memory."""
        node = self.nodes[node_id]
        return [(i, node.log_entry(i).term) for i in range(node.snapshot_index + 1, node.last_index + 1)]

    def roles(self, node_id: str) -> list[str]:
        return [e.fields["role"] for e in self.events[node_id] if e.kind == "role"]
