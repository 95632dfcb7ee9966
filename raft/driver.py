"""`handle_ready`: the Ready contract in one function, shared by the simulator and the server.

Steps (etcd-raft doc.go): 1. persist hard state, entries and snapshot in one synced write
(a Ready whose only news is a higher commit index has nothing to persist: see raft.ready);
2. only then hand messages to the transport; 3. restore the snapshot, then apply committed
entries in order; 4. `advance`. Nothing here knows whether the disk is LMDB or a list, or
whether the network is simulated.
"""

from __future__ import annotations

from collections.abc import Callable

from raft.messages import Entry, Message, Snapshot
from raft.node import RaftNode
from raft.ready import Ready
from raft.storage import Storage


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
    if ready.snapshot is not None:
        restore(ready.snapshot)
    for entry in ready.committed_entries:
        apply(entry)
    node.advance(ready)
    return ready
