"""Per-entry timestamps along one write's path, for finding where its latency goes.

Off unless `RAFTCRON_LATENCY_PROBE` names a directory: then every process appends
`point index perf_counter_ns` lines to `<dir>/<pid>.probe` (one `os.write` each, so a killed
process loses nothing). `perf_counter_ns` is CLOCK_MONOTONIC on Linux, shared by all
processes of a machine, so marks from the leader and its followers compare directly.
`papers/perf/latency_gaps.py` runs writes with it on and prints the median of each gap.

Only runtime and transport code calls `mark` (never the sans-IO core, which reads no clock);
with the variable unset every call is one global lookup and a branch.
"""

from __future__ import annotations

import contextvars
import os
import time
from typing import Final

from raft.messages import AppendEntries, AppendEntriesResponse, Message

__all__ = ["ENABLED", "mark", "mark_message", "request_context"]

_DIRECTORY: Final = os.environ.get("RAFTCRON_LATENCY_PROBE") or None
ENABLED: Final = _DIRECTORY is not None
_fd: int | None = None

# The HTTP request being served by this task, as [request start ns, entry index or -1]: the
# runtime fills in the index once the proposal has one, the HTTP layer marks both ends.
request_context: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "raftcron_latency_request", default=None)


def mark(point: str, index: int, at_ns: int | None = None) -> None:
    """Record that entry `index` reached `point` now (or at `at_ns`)."""
    global _fd
    if _DIRECTORY is None:
        return
    if _fd is None:
        _fd = os.open(os.path.join(_DIRECTORY, f"{os.getpid()}.probe"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stamp = time.perf_counter_ns() if at_ns is None else at_ns
    os.write(_fd, f"{point} {index} {stamp}\n".encode())


def mark_message(point: str, message: Message) -> None:
    """Mark replication traffic: `point`_append per entry carried, `point`_ack per success."""
    if isinstance(message, AppendEntries):
        for entry in message.entries:
            mark(f"{point}_append", entry.index)
    elif isinstance(message, AppendEntriesResponse) and message.success:
        mark(f"{point}_ack", message.match_index)
