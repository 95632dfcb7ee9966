"""`RaftRuntime`: one real Raft node on trio, driving the sans-IO `RaftNode`.

Rules:
  1. One task owns the node: only it steps messages, ticks, appends proposals, and takes and
     advances Readys. Other tasks (HTTP handlers, the transport) only append to bounded
     queues (`propose` and `change_config` queue the append and wait for its answer), or call
     `transfer_leadership`; that is safe even while the owner awaits a save (trio is
     cooperative, and it touches nothing the Ready being handled holds). The owner appends the
     queued proposals after it has answered the ones just committed and let their tasks run,
     so their next proposals join the same Ready and the same save (group commit; at W
     outstanding proposals a save carries about W entries; appending at once could split
     them for good into two groups a save apart, W/2 entries per save).
  2. The Ready contract is `raft.driver.handle_ready_async`, the same four steps as the
     simulator's `handle_ready`: persist (one synced LMDB transaction), then send, then apply,
     then advance; but a leader sends its entries before its own save (thesis §10.2.1,
     `may_send_before_save`), and the transport writes them to an idle connection at once
     (`Transport._write_now`), so the leader's fsync and a follower's overlap instead of
     adding up, although the save blocks the event loop (no thread hand-offs: measured
     cheaper; `RuntimeOptions.save_in_thread` moves it to a worker thread). While the save
     runs, requests queue up (in the kernel, or as other tasks' proposals when the save is
     threaded); the next Ready persists them together (group commit). The owner steps no
     message until the Ready is advanced, so a reply never counts an unsaved entry.
  3. Time is `trio.current_time()` in milliseconds, handed to `tick`/`step`; the node never
     reads a clock. The loop sleeps until `next_deadline()` or until woken by input.
  4. A proposal is answered when the entry at its (index, term) is applied here: with the
     state machine's result, or with `ProposalDropped` when another entry took that index.
     A timeout means the outcome is unknown (`ProposalTimeout`): the entry may still commit.
  5. Everything waiting is bounded: the inbox, pending proposals, pending reads.

Why the node is built in `__init__` and not in `run`: the state machine is restored from the
snapshot and the log replayed on the first Ready, so the object is complete before any input.
It must be constructed inside `trio.run`, since it reads the trio clock.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from raft import latency_probe
from raft.config import RaftConfig
from raft.driver import handle_ready_async
from raft.errors import NotLeader, ProposalDropped, RaftError
from raft.messages import Entry, EntryKind, HardState, Message, Snapshot
from raft.node import ConfChange, RaftNode
from raft.progress import Role
from raft.ready import Ready, TraceEvent
from raft.storage import Storage

__all__ = ["ProposalTimeout", "RaftRuntime", "RuntimeOptions", "RuntimeStats", "StateMachine"]

log = logging.getLogger("raftcron.raft")
_NORMAL = EntryKind.NORMAL


class StateMachine(Protocol):
    """What the runtime applies committed entries to (sim.statemachine has the same shape)."""

    def apply(self, index: int, data: bytes) -> Any: ...
    def skip(self, index: int) -> None: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


class ProposalTimeout(RaftError):
    """No answer in time: the command may or may not be committed. Clients must treat the
    outcome as unknown (Jepsen's `:info`), e.g. by retrying with an idempotency key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeOptions:
    inbox_capacity: int = 4096  # messages from peers waiting for the node
    proposals_pending_max: int = 8192
    reads_pending_max: int = 8192
    snapshot_entries: int = 10_000  # compact after this many applied entries (+0-25%: _compaction_gap)
    ready_rounds_max: int = 64  # Readys handled per wake-up before timers get a turn
    # Saves in a worker thread instead of on the event loop (Rule 2). Off: the transport writes
    # a leader's entries to its followers' sockets before the save blocks the loop, so the
    # fsyncs overlap anyway, and a thread costs two wake-ups per save, which on a loaded machine
    # measured 1-3 ms of a write's latency (papers/perf/README.md, http). Never with a
    # MemoryStorage under trio's MockClock: autojump would move time while a thread works.
    save_in_thread: bool = False


@dataclass(slots=True)
class RuntimeStats:
    proposals: int = 0
    proposals_committed: int = 0
    proposals_dropped: int = 0
    proposals_timed_out: int = 0
    proposals_rejected: int = 0  # refused up front: not leader, or a limit
    reads: int = 0
    reads_failed: int = 0
    elections: int = 0  # real (not pre-vote) campaigns started by this node
    leader_changes: int = 0
    inbox_dropped: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    entries_applied: int = 0
    readys: int = 0


class _Waiter:
    """A one-shot answer for one waiting task. `index` is set once the proposal it waits for
    is in the log; `abandoned` once nobody waits any more (the owner then skips it);
    `deadline` (trio seconds) is when the owner fails it with ProposalTimeout (`_wait`)."""

    __slots__ = ("event", "value", "error", "index", "abandoned", "deadline")

    def __init__(self) -> None:
        self.event = trio.Event()
        self._init_answer()

    def _init_answer(self) -> None:
        """The fields every waiter has; a `_CallbackWaiter` has these and no event."""
        self.value: Any = None
        self.error: BaseException | None = None
        self.index: int | None = None
        self.abandoned = False
        self.deadline = math.inf

    def resolve(self, value: Any) -> None:
        if not self.event.is_set():
            self.value = value
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()


class _CallbackWaiter(_Waiter):
    """The answer of a `propose_soon`: handed to `done(result, error)` in the owner task
    instead of waking a waiting task. It leaves the runtime's `waiting` table itself."""

    __slots__ = ("done", "waiting")

    def __init__(self, done: Callable[[Any, BaseException | None], None],
                 waiting: dict[_Waiter, tuple[str, float]]) -> None:
        # Not super().__init__(): nobody waits on an event here (one per proposal cost ~0.3 us).
        self._init_answer()
        self.done = done
        self.waiting = waiting

    def resolve(self, value: Any) -> None:
        if not self.abandoned:
            self._finish(value, None)

    def fail(self, error: BaseException) -> None:
        if not self.abandoned:
            self._finish(None, error)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        self.abandoned = True  # answered once; the owner skips it from now on
        self.waiting.pop(self, None)
        try:
            self.done(value, error)
        except Exception:  # the caller's bug must not stop the node
            log.exception("a propose_soon callback failed")


def _probe_proposal(index: int, context: list[int] | None) -> None:
    if context is not None:
        context[1] = index
        latency_probe.mark("http_request", index, context[0])
    latency_probe.mark("proposed", index)


def _probed_save(storage: Storage, entries: list[Entry]) -> Callable[..., None]:
    """`storage.save` marking when the storage itself starts and ends (in the saving thread)."""
    def save(*args: Any) -> None:
        for entry in entries:
            latency_probe.mark("disk_start", entry.index)
        storage.save(*args)
        for entry in entries:
            latency_probe.mark("disk_end", entry.index)
    return save


def now_ms() -> float:
    seconds: float = trio.current_time()
    return seconds * 1000.0


@dataclass(slots=True)
class _Reads:
    """ReadIndex bookkeeping: batches waiting to be issued, confirmed by a quorum, or applied."""

    queued: list[_Waiter] = field(default_factory=list)
    by_context: dict[int, list[_Waiter]] = field(default_factory=dict)
    parked: deque[tuple[int, list[_Waiter]]] = field(default_factory=deque)  # by index, ascending
    next_context: int = 1

    def count(self) -> int:
        return len(self.queued) + sum(len(b) for b in self.by_context.values()) + sum(
            len(b) for _, b in self.parked)


class RaftRuntime:
    def __init__(self, config: RaftConfig, storage: Storage, machine: StateMachine, *,
                 send: Callable[[Message], None], rng: random.Random | None = None,
                 options: RuntimeOptions = RuntimeOptions(),
                 on_event: Callable[[TraceEvent], None] | None = None) -> None:
        self.config = config
        self.storage = storage
        self.machine = machine
        self.options = options
        self.stats = RuntimeStats()
        self._send = send
        self._on_event = on_event
        self.appliers: list[Callable[[Entry, Any], None]] = []  # observers of every apply
        self._save_in_thread = options.save_in_thread
        snapshot = storage.snapshot()
        if snapshot is not None:
            machine.restore(snapshot.data)
        self.node = RaftNode(config, storage, rng or random.Random(), now_ms())
        self._inbox: deque[Message | str] = deque()  # a str: that peer's connection closed
        self._wakeup = trio.Event()
        self._proposals: dict[int, tuple[int, _Waiter]] = {}
        # Every waiting proposal and read, with what it waits for and its timeout; the owner
        # fails the overdue ones (`_expire_waiters`) once the clock passes `_next_expiry`.
        self._waiting: dict[_Waiter, tuple[str, float]] = {}
        self._next_expiry = math.inf
        # Proposals not yet in the log: the owner appends them (`_take_proposals`) after it
        # answered the ones just committed, so that their next proposals join the same save.
        # Each item: a command's bytes (`node.propose` of them) or the append to call; the waiter;
        # the latency probe's context.
        self._queued: deque[tuple[bytes | Callable[[], tuple[int, int]], _Waiter, list[int] | None]] = deque()
        self._tasks_answered = 0  # proposals answered to a waiting task (not a callback)
        self._compaction_rng = random.Random(config.node_id)  # draws none of the node's numbers
        self._compact_after = self._compaction_gap()
        self._compaction_s = 0.0  # how long this node's last compaction paused its loop
        self._handed_over_for = -1  # the snapshot index a handover before compacting was tried at
        self._reads = _Reads()
        self._applied_changed = trio.Event()
        self._role_changed = trio.Event()
        self._role = self.node.role
        self._leader = self.node.leader

    # ---- inputs from other tasks --------------------------------------------------------------
    def deliver(self, message: Message) -> None:
        """A message from the transport; dropped (counted) when the inbox is full."""
        if len(self._inbox) >= self.options.inbox_capacity:
            self.stats.inbox_dropped += 1
            return
        self._inbox.append(message)
        self._wakeup.set()

    def connection_lost(self, peer: str) -> None:
        """The transport saw `peer` end its connection (EOF or reset). Queued in order with
        the messages, so a heartbeat the peer sent before cannot be stepped after it and cancel
        what the core decides (`RaftNode.leader_connection_lost`, which acts only if `peer` is
        its leader); and only the owner touches the node, never while a save is in flight."""
        if len(self._inbox) >= self.options.inbox_capacity:
            self.stats.inbox_dropped += 1  # costs only the early election
            return
        self._inbox.append(peer)
        self._wakeup.set()

    async def propose(self, data: bytes, *, timeout_s: float) -> Any:
        """Replicate `data` and return the state machine's result once applied here.

        Raises NotLeader (with a hint) and ProposalDropped before anything is appended, so
        those are safe to retry elsewhere; ProposalTimeout means the outcome is unknown."""
        return await self._append_and_wait(data, timeout_s)

    def propose_soon(self, data: bytes, done: Callable[[Any, BaseException | None], None], *,
                     timeout_s: float) -> None:
        """`propose` without a waiting task (PySyncObj's callback API): `done(result, None)`
        once applied here, or `done(None, error)` with the errors `propose` raises (NotLeader
        and ProposalDropped before anything is appended, ProposalTimeout when the outcome is
        unknown). `done` runs in the owner task and may propose again; it must not block.
        Why: a load generator or an embedder that keeps many proposals outstanding pays a
        trio task switch per proposal with `propose`, several microseconds each."""
        refused = self._refusal()
        if refused is not None:
            done(None, refused)
            return
        waiter = _CallbackWaiter(done, self._waiting)
        self._track(waiter, timeout_s, "proposal")
        self._queued.append((data, waiter, None))  # bytes, not a closure: one fewer call each
        self._wakeup.set()

    async def change_config(self, change: ConfChange, *, timeout_s: float) -> None:
        """One membership change (thesis §4.1), answered once applied here; same errors as
        `propose` (ProposalDropped also while another change is uncommitted)."""
        await self._append_and_wait(lambda: self.node.propose_config_change(change), timeout_s)

    async def _append_and_wait(self, append: bytes | Callable[[], tuple[int, int]], timeout_s: float) -> Any:
        """Queue the append for the owner task (`_take_proposals`) and wait for the answer."""
        refused = self._refusal()
        if refused is not None:
            raise refused
        waiter = _Waiter()
        context = latency_probe.request_context.get() if latency_probe.ENABLED else None
        self._queued.append((append, waiter, context))
        self._wakeup.set()
        try:
            result = await self._wait(waiter, timeout_s, "proposal")
            if latency_probe.ENABLED and waiter.index is not None:
                latency_probe.mark("handler_resumed", waiter.index)
            return result
        except ProposalTimeout:
            self.stats.proposals_timed_out += 1
            raise
        finally:
            waiter.abandoned = True
            index = waiter.index
            if index is not None:
                current = self._proposals.get(index)
                if current is not None and current[1] is waiter:
                    del self._proposals[index]

    async def _wait(self, waiter: _Waiter, timeout_s: float, what: str) -> Any:
        """The answer `waiter` gets, or ProposalTimeout after `timeout_s`. The owner task fails
        overdue waiters (`_expire_waiters`), so a proposal costs no trio cancel scope with a
        deadline of its own (8 of a proposal's ~20 us of CPU, measured); the owner wakes for
        the earliest deadline, and during a threaded save it fails them when the save ends."""
        self._track(waiter, timeout_s, what)
        try:
            await waiter.event.wait()
        finally:
            del self._waiting[waiter]
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def _refusal(self) -> RaftError | None:
        """Why a new proposal is refused before anything is appended (counted), or None."""
        if len(self._proposals) + len(self._queued) >= self.options.proposals_pending_max:
            self.stats.proposals_rejected += 1
            return ProposalDropped("too many proposals in flight; retry later")
        if self.node.role is not Role.LEADER:
            self.stats.proposals_rejected += 1
            return NotLeader(self.node.leader)
        return None

    def _track(self, waiter: _Waiter, timeout_s: float, what: str) -> None:
        """Give `waiter` its deadline; the owner fails it then (`_expire_waiters`)."""
        waiter.deadline = trio.current_time() + timeout_s
        self._waiting[waiter] = (what, timeout_s)
        if waiter.deadline < self._next_expiry:
            self._next_expiry = waiter.deadline
            self._wakeup.set()  # the owner sleeps until the earliest expiry: let it see this one

    def _expire_waiters(self, now_s: float) -> None:
        """Fail every waiter past its deadline; a scan only when the earliest one is due."""
        if now_s < self._next_expiry:
            return
        earliest = math.inf
        for waiter, (what, timeout_s) in list(self._waiting.items()):
            if waiter.deadline <= now_s:
                waiter.fail(ProposalTimeout(f"{what}: no answer within {timeout_s:.3g}s; outcome unknown"))
            elif waiter.deadline < earliest:
                earliest = waiter.deadline
        self._next_expiry = earliest

    def _take_proposals(self) -> None:
        """Append every queued proposal to the node's log, in arrival order (Rule 1): they
        leave in the next Ready together, one AppendEntries per follower and one save. Runs
        of commands go to the node in one `propose_many`; other appends (a configuration
        change) one by one, between them."""
        queued, self._queued = self._queued, deque()
        commands: list[tuple[bytes, _Waiter, list[int] | None]] = []
        for append, waiter, context in queued:
            if waiter.abandoned:
                continue
            if isinstance(append, bytes):
                commands.append((append, waiter, context))
                continue
            self._propose_commands(commands)
            commands = []
            try:
                index, term = append()
            except (NotLeader, ProposalDropped) as error:
                self._reject(waiter, error)
                continue
            self._appended(index, term, waiter, context)
        self._propose_commands(commands)

    def _propose_commands(self, commands: list[tuple[bytes, _Waiter, list[int] | None]]) -> None:
        if not commands:
            return
        try:
            first, term, count = self.node.propose_many([data for data, _, _ in commands])
        except (NotLeader, ProposalDropped) as error:
            first, term, count = 0, 0, 0
            refused: RaftError = error
        else:
            refused = ProposalDropped("too many uncommitted entries; retry later")
        for offset, (_, waiter, context) in enumerate(commands):
            if offset < count:
                self._appended(first + offset, term, waiter, context)
            else:
                self._reject(waiter, refused)

    def _appended(self, index: int, term: int, waiter: _Waiter, context: list[int] | None) -> None:
        self.stats.proposals += 1
        earlier = self._proposals.get(index)
        if earlier is not None:  # our older entry at this index was truncated away
            earlier[1].fail(ProposalDropped(f"entry {index} of term {earlier[0]} was replaced"))
        waiter.index = index
        self._proposals[index] = (term, waiter)
        if latency_probe.ENABLED:
            _probe_proposal(index, context)

    def _reject(self, waiter: _Waiter, error: RaftError) -> None:
        self.stats.proposals_rejected += 1
        waiter.fail(error)

    async def read_index(self, *, timeout_s: float) -> int:
        """A linearizable read point (thesis §6.4): returns once this leader confirmed it still
        leads and has applied everything committed when the read arrived. Concurrent reads
        share one confirmation round."""
        if self.node.role is not Role.LEADER:
            raise NotLeader(self.node.leader)
        if self._reads.count() >= self.options.reads_pending_max:
            raise ProposalDropped("too many reads in flight; retry later")
        self.stats.reads += 1
        waiter = _Waiter()
        self._reads.queued.append(waiter)
        self._wakeup.set()
        try:
            return int(await self._wait(waiter, timeout_s, "read index"))
        except RaftError:
            self.stats.reads_failed += 1
            raise

    def transfer_leadership(self, target: str) -> None:
        self.node.transfer_leadership(target)
        self._wakeup.set()

    async def wait_role_change(self) -> None:
        """Return at the next change of this node's role or of the leader it knows."""
        await self._role_changed.wait()

    async def wait_applied(self, index: int, *, timeout_s: float) -> bool:
        """Wait until this node applied `index`; False on timeout."""
        with trio.move_on_after(timeout_s):
            while self.node.applied_index < index:
                await self._applied_changed.wait()
            return True
        return False

    # ---- the owner task -------------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the node until cancelled: sleep until a deadline or input, then step, tick and
        handle Readys. The first pass replays committed entries from storage."""
        await self._process()
        task_status.started()
        while True:
            deadline_ms = self.node.next_deadline()
            deadline_s = math.inf if deadline_ms == math.inf else deadline_ms / 1000.0
            with trio.move_on_at(min(deadline_s, self._next_expiry)):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = now_ms()
            self._expire_waiters(now / 1000.0)
            for _ in range(len(self._inbox)):  # bounded by the inbox capacity
                item = self._inbox.popleft()
                if isinstance(item, str):
                    self.node.leader_connection_lost(item, now)
                else:
                    if latency_probe.ENABLED:
                        latency_probe.mark_message("step", item)
                    self.node.step(item, now)
            self._issue_reads()
            self.node.tick(now)
            answered = self._tasks_answered
            await self._process()
            # Proposer tasks answered just now run in these checkpoints and queue their next
            # proposal (trio may run a batch in reverse order, hence two), so the save below
            # holds them too: with W proposals outstanding, a save carries about W entries,
            # not half. Callback proposals (`propose_soon`) queued theirs inside `_process`;
            # for them the two scheduler passes were only delay (~30 us a round). Other tasks
            # still get their turn: the `_wakeup.wait()` above is a checkpoint even when set.
            if self._tasks_answered != answered:
                await trio.sleep(0)
                await trio.sleep(0)
            if self._queued:
                self._take_proposals()
                await self._process()

    async def _process(self) -> None:
        for _ in range(self.options.ready_rounds_max):
            if not self.node.has_ready():
                break
            ready = await handle_ready_async(self.node, self.storage, self._save, self._send,
                                             self._apply, self._restore)
            self.stats.readys += 1
            self._after_ready(ready)
        else:
            self._wakeup.set()  # more to do: come back after other tasks had a turn
        self._maybe_compact()

    async def _save(self, hard_state: HardState | None, entries: list[Entry],
                    snapshot: Snapshot | None) -> None:
        """The synced write, on the event loop or in a worker thread (never abandoned on
        cancellation: a save either completes or the process dies)."""
        save = _probed_save(self.storage, entries) if latency_probe.ENABLED else self.storage.save
        if self._save_in_thread:
            await trio.to_thread.run_sync(save, hard_state, entries, snapshot)
        else:
            save(hard_state, entries, snapshot)

    def _apply(self, entry: Entry) -> None:
        index = entry.index
        if entry.kind is _NORMAL:
            result = self.machine.apply(index, entry.data)
        else:
            self.machine.skip(index)
            result = None
        self.stats.entries_applied += 1
        pending = self._proposals.pop(index, None)
        if pending is not None:
            term, waiter = pending
            if type(waiter) is _Waiter:
                self._tasks_answered += 1
            if term == entry.term:
                self.stats.proposals_committed += 1
                waiter.resolve(result)
            else:
                self.stats.proposals_dropped += 1
                waiter.fail(ProposalDropped(f"entry {entry.index} of term {term} was replaced "
                                            f"by one of term {entry.term}"))
        for observer in self.appliers:
            observer(entry, result)

    def _restore(self, snapshot: Snapshot) -> None:
        self.machine.restore(snapshot.data)
        self.stats.snapshots_installed += 1
        log.info("%s installed snapshot at index %d (term %d, %d bytes)", self.config.node_id,
                 snapshot.meta.index, snapshot.meta.term, len(snapshot.data))

    def _after_ready(self, ready: Ready) -> None:
        for event in ready.events:
            self._observe_event(event)
        for read in ready.read_states:
            batch = self._reads.by_context.pop(read.context, None)
            if batch is not None:
                self._reads.parked.append((read.index, batch))
        if ready.committed_entries or ready.read_states:
            self._release_reads()
            self._applied_changed.set()
            self._applied_changed = trio.Event()
        if self.node.role is not self._role or self.node.leader != self._leader:
            self._on_role_change()

    def _observe_event(self, event: TraceEvent) -> None:
        if event.kind == "role":
            if event.fields.get("role") == "candidate":
                self.stats.elections += 1
            log.info("%s became %s at term %s (%s)", self.config.node_id, event.fields.get("role"),
                     event.fields.get("term"), event.fields.get("reason"))
        if self._on_event is not None:
            self._on_event(event)

    def _on_role_change(self) -> None:
        """Fail what can no longer succeed, at once rather than at the timeout."""
        if self.node.leader != self._leader and self.node.leader is not None:
            self.stats.leader_changes += 1
        was_leader = self._role is Role.LEADER
        self._role, self._leader = self.node.role, self.node.leader
        self._role_changed.set()
        self._role_changed = trio.Event()
        if not was_leader or self._role is Role.LEADER:
            return
        error = NotLeader(self.node.leader)
        for batch in self._reads.by_context.values():
            for waiter in batch:
                waiter.fail(error)
        for waiter in self._reads.queued:
            waiter.fail(error)
        self._reads.by_context.clear()
        self._reads.queued.clear()
        for index, (term, waiter) in list(self._proposals.items()):
            if index <= self.node.last_index and self.node.log_term(index) not in (None, term):
                del self._proposals[index]
                self.stats.proposals_dropped += 1
                waiter.fail(ProposalDropped(f"entry {index} of term {term} was replaced"))

    def _issue_reads(self) -> None:
        if not self._reads.queued:
            return
        batch, self._reads.queued = self._reads.queued, []
        context = self._reads.next_context
        self._reads.next_context += 1
        try:
            self.node.read_index(context)
        except NotLeader as error:
            for waiter in batch:
                waiter.fail(error)
            return
        self._reads.by_context[context] = batch

    def _release_reads(self) -> None:
        applied = self.node.applied_index
        parked = self._reads.parked
        while parked and parked[0][0] <= applied:
            index, batch = parked.popleft()
            for waiter in batch:
                waiter.resolve(index)

    def _maybe_compact(self) -> None:
        """Snapshot the state machine and drop the log behind it. Only with no Ready pending:
        a snapshot received from the leader moves the node's applied index before the state
        machine has restored it, and a snapshot taken then would pair new index, old state."""
        node = self.node
        if node.applied_index - node.snapshot_index < self._compact_after:
            return
        if node.has_ready():
            return
        if node.role is Role.LEADER and self._hand_over_before_compacting():
            return
        started = trio.current_time()
        snapshot = node.compact(node.applied_index, self.machine.snapshot())
        self.storage.compact(snapshot)
        self._compaction_s = trio.current_time() - started
        self.stats.snapshots_taken += 1
        self._compact_after = self._compaction_gap()
        log.info("%s compacted its log through index %d", self.config.node_id, snapshot.meta.index)

    def _hand_over_before_compacting(self) -> bool:
        """True while this leader hands leadership over, to compact once it is a follower.
        Why: a compaction pauses the event loop (0.3 s of scheduler snapshot and a 91 MB file
        for 100k jobs), and a leader silent for longer than its followers wait (half the
        minimum election timeout leaves room for the heartbeat interval before the pause)
        loses leadership to an election, with no leader for an election timeout; a transfer
        (thesis §3.10) costs a round trip. Judged by this node's last compaction, and tried
        once per compaction: a leader whose transfer failed compacts where it is."""
        node = self.node
        if self._compaction_s * 1000.0 <= self.config.election_timeout_ms_min / 2:
            return False
        if node.transfer_target is not None:
            return True  # under way (ours or an operator's): compact after it
        if self._handed_over_for == node.snapshot_index:
            return False
        target = self.handover_target()
        if target is None:
            return False
        self._handed_over_for = node.snapshot_index
        log.info("%s hands leadership to %s before compacting (its last compaction took %.0f ms)",
                 self.config.node_id, target, self._compaction_s * 1000.0)
        self.transfer_leadership(target)
        return True

    def handover_target(self) -> str | None:
        """The other voter whose log matches this leader's furthest (ties: the larger id), to
        hand leadership to; None when there is none."""
        node = self.node
        followers = [(progress.match, peer) for peer in sorted(node.config.voters - {node.id})
                     if (progress := node.progress(peer)) is not None]
        return max(followers)[1] if followers else None

    def _compaction_gap(self) -> int:
        """Entries to apply before the next compaction: `snapshot_entries` plus up to a quarter
        more, drawn anew each time. Why: every node applies the same entries, so with one
        fixed gap all of them compacted within a round or two of each other, and a compaction
        pauses its node's event loop (4 ms for 10,000 entries in bench raft). Staggered, a
        pause on one follower is hidden by the other follower's acknowledgements."""
        entries = self.options.snapshot_entries
        return entries + self._compaction_rng.randrange(entries // 4 + 1)

    # ---- inspection -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        node = self.node
        config = node.config
        status: dict[str, Any] = {
            "id": self.config.node_id, "role": node.role.value, "term": node.term,
            "leader": node.leader, "commit_index": node.commit_index,
            "applied_index": node.applied_index, "last_index": node.last_index,
            "snapshot_index": node.snapshot_index, "voters": sorted(config.voters),
            "learners": sorted(config.learners),
        }
        if node.role is Role.LEADER:
            status["progress"] = {
                peer: {"match": p.match, "next": p.next, "state": p.state.value}
                for peer in sorted(config.members) if peer != node.id
                for p in [node.progress(peer)] if p is not None
            }
        return status
