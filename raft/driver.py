"""`handle_ready`: the Ready contract in one function, shared by the simulator and the server.

Steps (etcd-raft doc.go): 1. persist hard state, entries and snapshot in one synced write
(a Ready whose only news is a higher commit index has nothing to persist: see raft.ready);
2. only then hand messages to the transport; 3. restore the snapshot, then apply committed
entries in order; 4. `advance`. Nothing here knows whether the disk is LMDB or a list, or
whether the network is simulated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from raft import latency_probe
from raft.messages import Entry, HardState, Message, Snapshot
from raft.node import RaftNode
from raft.progress import Role
from raft.ready import Ready
from raft.storage import Storage

Save = Callable[[HardState | None, list[Entry], Snapshot | None], Awaitable[None]]


def handle_ready(
    node: RaftNode,
    storage: Storage,
    send: Callable[[Message], None],
    apply: Callable[[Entry], None],
    restore: Callable[[Snapshot], None],
) -> Ready:
    ready = node.ready()
    if ready.must_sync:
        storage.save(ready.hard_state, ready.entries, ready.snapshot)
    for message in ready.messages:
        send(message)
    _apply_and_advance(node, ready, apply, restore)
    return ready


def _apply_and_advance(node: RaftNode, ready: Ready, apply: Callable[[Entry], None],
                       restore: Callable[[Snapshot], None]) -> None:
    """Steps 3 and 4, the same for both runtimes: snapshot first, then entries in order."""
    if ready.snapshot is not None:
        restore(ready.snapshot)
    for entry in ready.committed_entries:
        apply(entry)
    node.advance(ready)


def may_send_before_save(node: RaftNode, storage: Storage, ready: Ready) -> bool:
    """Thesis §10.2.1: a leader may send its entries to followers while it writes them to its
    own disk. Only a leader, and only when the save holds nothing else that a message could
    reveal: no snapshot, no new term or vote (the commit index is volatile). The leader still
    counts itself for a commit only once its save completed: the runtime steps no reply
    before `advance`, and a reply can only ack entries sent in an earlier (saved) Ready."""
    if node.role is not Role.LEADER or ready.snapshot is not None:
        return False
    hard = ready.hard_state
    if hard is None:
        return True
    stored = storage.initial_state()
    return hard.term == stored.term and hard.vote == stored.vote


async def handle_ready_async(
    node: RaftNode,
    storage: Storage,
    save: Save,
    send: Callable[[Message], None],
    apply: Callable[[Entry], None],
    restore: Callable[[Snapshot], None],
) -> Ready:
    """`handle_ready` for a runtime whose save may wait (a worker thread): the same four steps,
    except that a leader's messages may leave before its own save (`may_send_before_save`).
    The caller must not step the node until this returns; proposals meanwhile are fine (they
    are handed out by the next Ready)."""
    ready = node.ready()
    probe = latency_probe.ENABLED
    if probe:
        _probe_ready(ready)
    early = may_send_before_save(node, storage, ready)
    if early:
        for message in ready.messages:
            send(message)
    if ready.must_sync:
        if probe:
            _probe_entries("save_start", ready.entries)
        await save(ready.hard_state, ready.entries, ready.snapshot)
        if probe:
            _probe_entries("save_end", ready.entries)
    if not early:
        for message in ready.messages:
            send(message)
    _apply_and_advance(node, ready, apply, restore)
    if probe:
        _probe_entries("applied", ready.committed_entries)
    return ready


def _probe_ready(ready: Ready) -> None:
    _probe_entries("ready", ready.entries)
    _probe_entries("ready_committed", ready.committed_entries)


def _probe_entries(point: str, entries: list[Entry] | tuple[Entry, ...]) -> None:
    for entry in entries:
        latency_probe.mark(point, entry.index)
