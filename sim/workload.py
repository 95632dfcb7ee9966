"""Jepsen-style clients on the simulator: reads, writes and compare-and-sets on a few keys,
recorded as a history and checked for linearizability (DESIGN.md: "the simulator's histories
are checked by the same code" as real processes').

Rules:
  1. Clients observe the cluster through the same doors a real client has: `propose` and
     `read_index` on the node they believe leads, and the answers those nodes give (the
     apply of *their* log, a `ReadState` in *their* Ready). They never peek at another node,
     and never steer the run: their randomness comes from the cluster's workload sub-seed.
  2. The history says only what a client could know. `ok` means the proposing node applied
     our entry (same index, same term) or served our read; `fail` means the operation
     definitely did not take effect (NotLeader, a refused connection, another entry
     committed at our index, a cas whose expected value did not match); anything else ends
     as `info` after `timeout_ms` and the client carries on as a fresh process (Jepsen).
  3. Times in the history are true virtual time in integer nanoseconds.

Commands are the `KVStateMachine`'s msgpack `[op_id, f, key, value]`; values written are
unique, so the checker can tell every write apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from jepsen_like.history import HistoryRecorder
from jepsen_like.linearizability import UNKNOWN, check
from jepsen_like.models import KVModel
from raft.errors import NotLeader, ProposalDropped
from raft.messages import Entry
from raft.node import RaftNode

if TYPE_CHECKING:
    from sim.cluster import SimCluster

WORKLOADS = ("kv", "counter")
FAILURES_REPORTED_MAX = 5  # non-linearizable keys explained in a summary
RETRY_FAST_MS = 2.0  # a first NotLeader with a hint: try the hinted node almost at once
RETRY_SLOW_MS = (20.0, 80.0)  # no hint, or misses in a row: back off (an election runs) ...
RETRY_BACKOFF_MAX = 4  # ... by up to this factor, as misses pile up


@dataclass(slots=True)
class WorkloadOptions:
    """The client side of a run. `rate` is operations per second over all clients together."""

    clients: int = 5
    keys: int = 3
    rate: float = 10.0
    timeout_ms: float = 2000.0
    read_fraction: float = 0.5
    cas_fraction: float = 0.2  # of the non-reads; the rest are blind writes
    lease_reads: bool = False  # read with the leader lease (thesis §6.4.1) instead of ReadIndex
    check_time_limit_s: float = 20.0

    def validate(self) -> None:
        if not 1 <= self.clients <= 64:
            raise ValueError(f"--clients must be between 1 and 64, got {self.clients}")
        if not 1 <= self.keys <= 64:
            raise ValueError(f"--keys must be between 1 and 64, got {self.keys}")
        if self.rate < 0:
            raise ValueError("--rate must be >= 0")
        if self.timeout_ms <= 0:
            raise ValueError("the client timeout must be > 0")
        for name in ("read_fraction", "cas_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")


class _Op:
    __slots__ = ("process", "client", "f", "key", "value", "node", "lifetime", "done", "op_id")

    def __init__(self, process: int, client: _Client | None, f: str, key: int, value: Any, op_id: int) -> None:
        self.process, self.client, self.f, self.key, self.value = process, client, f, key, value
        self.op_id = op_id
        self.node = ""
        self.lifetime = 0
        self.done = False


class _Client:
    __slots__ = ("number", "process", "belief", "misses", "running")

    def __init__(self, number: int, belief: str) -> None:
        self.number = number
        self.process = number
        self.belief = belief
        self.misses = 0  # NotLeader/refused in a row, for backoff
        self.running = True


class KVWorkload:
    """C clients issuing read / write / cas to whoever they believe leads. See module rules."""

    def __init__(self, cluster: SimCluster, options: WorkloadOptions,
                 on_proposed: Callable[[str], None] | None = None) -> None:
        options.validate()
        self.cluster = cluster
        self.options = options
        self.rng = cluster.workload_rng
        self.on_proposed = on_proposed
        self.history = HistoryRecorder(lambda: int(round(cluster.now * 1_000_000)))
        self.running = False
        self.proposals = 0
        self.counts = {"invoke": 0, "ok": 0, "fail": 0, "info": 0}
        self._next_value = 0
        self._next_op_id = 0
        self._next_process = options.clients
        self._next_context = 0
        self._writes: dict[tuple[str, int], dict[int, tuple[int, _Op]]] = {}  # (node, life) -> index -> (term, op)
        self._reads: dict[int, _Op] = {}  # read context -> op
        self._waiting: dict[tuple[str, int], list[tuple[int, _Op]]] = {}  # reads waiting for an apply
        self._last_written: dict[int, int] = {}  # key -> a value some client wrote lately (cas targets)
        self.clients = [_Client(i, self.rng.choice(cluster.ids)) for i in range(options.clients)]
        self._chain_hooks()

    def _chain_hooks(self) -> None:
        cluster = self.cluster
        previous_apply, previous_read = cluster.on_apply, cluster.on_read

        def on_apply(node: str, lifetime: int, entry: Entry, result: Any) -> None:
            if previous_apply is not None:
                previous_apply(node, lifetime, entry, result)
            self._on_apply(node, lifetime, entry, result)

        def on_read(node: str, context: int, index: int) -> None:
            if previous_read is not None:
                previous_read(node, context, index)
            self._on_read(node, context, index)

        cluster.on_apply, cluster.on_read = on_apply, on_read

    # ---- the client loop ---------------------------------------------------------------------------
    def start(self, at_ms: float) -> None:
        """Clients start at `at_ms` plus a random think time each (never on a round number, so a
        client never ties with a scheduled fault at the same true time)."""
        self.running = True
        if self.options.rate <= 0:
            return
        for client in self.clients:
            self.cluster.call_at(at_ms + self._think_ms(), functools.partial(self._issue, client))

    def stop(self) -> None:
        """No new operations (the liveness phase); operations in flight still complete."""
        self.running = False

    def _think_ms(self) -> float:
        mean_ms = 1000.0 * self.options.clients / self.options.rate
        return self.rng.expovariate(1.0 / mean_ms)

    def _issue(self, client: _Client) -> None:
        if not self.running:
            return
        f, key, value = self._draw_operation()
        op = self._new_op(client.process, client, f, key, value)
        self._send(op, client.belief)

    def _draw_operation(self) -> tuple[str, int, Any]:
        rng, options = self.rng, self.options
        key = rng.randrange(options.keys)
        if rng.random() < options.read_fraction:
            return "read", key, None
        if rng.random() < options.cas_fraction:
            expected = self._last_written.get(key) if rng.random() < 0.8 else None
            return "cas", key, [expected, self._unique_value()]
        return "write", key, self._unique_value()

    def _unique_value(self) -> int:
        self._next_value += 1
        return self._next_value

    def _new_op(self, process: int, client: _Client | None, f: str, key: int, value: Any) -> _Op:
        self._next_op_id += 1
        op = _Op(process, client, f, key, value, self._next_op_id)
        self.history.invoke(process, f, value, key=key)
        self.counts["invoke"] += 1
        return op

    def issue_one(self, f: str, key: int, target: str | None) -> None:
        """An operation a fault schedule (or the stateful test) asks for, on a one-shot process."""
        process = self._next_process
        self._next_process += 1
        value: Any = None
        if f == "write":
            value = self._unique_value()
        elif f == "cas":
            value = [self._last_written.get(key), self._unique_value()]
        op = self._new_op(process, None, f, key, value)
        self._send(op, target if target is not None else self.rng.choice(self.cluster.ids))

    # ---- sending ----------------------------------------------------------------------------------
    def _send(self, op: _Op, node_id: str) -> None:
        cluster = self.cluster
        node = cluster.nodes[node_id]
        op.node, op.lifetime = node_id, node.lifetime
        cluster.call_at(cluster.now + self.options.timeout_ms, lambda: self._timeout(op))
        if not node.alive:
            self._fail(op, "connection refused", hint=None)
            return
        if node.paused:
            return  # the request sits unanswered; the timeout decides
        try:
            if op.f == "read":
                cluster.with_node(node_id, lambda raft: self._start_read(raft, op))
            else:
                cluster.with_node(node_id, lambda raft: self._propose(raft, op))
        except NotLeader as error:
            self._fail(op, "not leader", hint=error.leader_hint)
        except ProposalDropped as error:
            self._fail(op, f"dropped: {error}", hint=node_id)

    def _propose(self, raft: RaftNode, op: _Op) -> None:
        data = msgpack.packb([op.op_id, op.f, op.key, op.value])
        index, term = raft.propose(data)
        # Registered before `with_node` processes the Ready: a one-node cluster applies at once.
        self._writes.setdefault((op.node, op.lifetime), {})[index] = (term, op)
        self.proposals += 1
        if self.on_proposed is not None:
            self.on_proposed(op.node)

    def _start_read(self, raft: RaftNode, op: _Op) -> None:
        self._next_context += 1
        context = self._next_context
        self._reads[context] = op  # before the call: the ReadState may come out of this very Ready
        try:
            raft.read_index(context, lease=self.options.lease_reads)
        except NotLeader:
            del self._reads[context]
            raise

    # ---- answers ----------------------------------------------------------------------------------
    def _on_apply(self, node: str, lifetime: int, entry: Entry, result: Any) -> None:
        pending = self._writes.get((node, lifetime))
        if pending is not None:
            found = pending.pop(entry.index, None)
            if found is not None:
                term, op = found
                if op.done:
                    pass
                elif entry.term != term:
                    self._complete(op, "fail", error=f"index {entry.index} holds another entry")
                elif op.f == "cas" and result is False:
                    self._complete(op, "fail", error="cas: expected value did not match")
                else:
                    self._remember(op)
                    self._complete(op, "ok")
        waiting = self._waiting.get((node, lifetime))
        if waiting:
            self._serve_ready_reads(node, waiting)

    def _on_read(self, node: str, context: int, index: int) -> None:
        op = self._reads.pop(context, None)
        if op is None or op.done:
            return
        assert op.node == node, f"read context {context} answered by {node}, sent to {op.node}"
        sim_node = self.cluster.nodes[node]
        if sim_node.lifetime != op.lifetime:
            return  # cannot happen (contexts do not survive a restart), but never serve across lives
        waiting = self._waiting.setdefault((node, op.lifetime), [])
        waiting.append((index, op))
        self._serve_ready_reads(node, waiting)

    def _serve_ready_reads(self, node: str, waiting: list[tuple[int, _Op]]) -> None:
        sm = self.cluster.nodes[node].sm
        still: list[tuple[int, _Op]] = []
        for index, op in waiting:
            if op.done:
                continue
            if sm.applied >= index:
                self._complete(op, "ok", value=sm.read(op.key))
            else:
                still.append((index, op))
        waiting[:] = still

    def _remember(self, op: _Op) -> None:
        if op.f == "write":
            self._last_written[op.key] = op.value
        elif op.f == "cas":
            self._last_written[op.key] = op.value[1]

    def _timeout(self, op: _Op) -> None:
        if op.done:
            return
        if op.f == "read":
            self._complete(op, "info", error="timeout")
        else:
            self._complete(op, "info", error="timeout: the write may or may not take effect")
        client = op.client
        if client is not None:  # Jepsen: a process that timed out is gone; a fresh one takes over
            client.process = self._next_process
            self._next_process += 1
            client.belief = self.rng.choice(self.cluster.ids)

    def _fail(self, op: _Op, error: str, *, hint: str | None) -> None:
        self._complete(op, "fail", error=error, schedule_next=False)
        client = op.client
        if client is None:
            return
        client.misses += 1
        if hint is not None and hint != op.node and client.misses == 1:
            client.belief = hint
            delay = RETRY_FAST_MS
        else:
            others = [n for n in self.cluster.ids if n != op.node] or self.cluster.ids
            client.belief = hint if hint is not None and hint != op.node else self.rng.choice(others)
            delay = self.rng.uniform(*RETRY_SLOW_MS) * min(client.misses, RETRY_BACKOFF_MAX)
        self.cluster.call_at(self.cluster.now + delay, lambda: self._issue(client))

    def _complete(self, op: _Op, type_: str, *, value: Any = None, error: str | None = None,
                  schedule_next: bool = True) -> None:
        assert not op.done, "an operation completes once"
        op.done = True
        self.counts[type_] += 1
        if type_ == "ok":
            self.history.ok(op.process, op.f, value if op.f == "read" else op.value, key=op.key)
        elif type_ == "fail":
            self.history.fail(op.process, op.f, op.value, key=op.key, error=error)
        else:
            self.history.info(op.process, op.f, op.value, key=op.key, error=error)
        client = op.client
        if client is not None and type_ != "fail":
            client.misses = 0
        if client is not None and schedule_next and self.options.rate > 0:
            self.cluster.call_at(self.cluster.now + self._think_ms(), lambda: self._issue(client))

    # ---- the verdict ------------------------------------------------------------------------------
    def check(self, time_limit_s: float | None = None) -> dict[str, Any]:
        """Linearizability of the whole history, per key (P-compositionality)."""
        limit = self.options.check_time_limit_s if time_limit_s is None else time_limit_s
        operations = self.history.operations()
        result = check(operations, KVModel(), time_limit_s=limit)
        failures = [
            {"key": part.key, **part.failure.to_json(), "explanation": part.failure.describe()}
            for part in result.partitions if part.failure is not None
        ][:FAILURES_REPORTED_MAX]
        unknown: list[Hashable] = [p.key for p in result.partitions if p.valid == UNKNOWN]
        return {
            "valid": result.valid,
            "operations": len(operations),
            "info_operations": result.info_count,
            "unknown_keys": unknown,
            "failures": failures,
            "elapsed_s": round(result.elapsed_s, 3),
        }
