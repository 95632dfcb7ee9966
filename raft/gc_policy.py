"""The garbage collector's thresholds in a raftcron server process, and why they differ from
CPython's defaults.

A server makes a burst of short-lived containers per write (messages, entries, Readys, a
callback or task per proposal) and holds a large long-lived heap: the log since the last
snapshot and the scheduler's state (100k jobs at the scale the planner bench targets). With
CPython's thresholds (700, 10, 10) a young collection runs every 700 container allocations,
several per replication round at 64 writes in flight, and every hundredth young collection
leads to a full one, which walks that whole long-lived heap. Reference counting frees almost
all of those objects anyway; the collector is only needed for cycles, which are rare here.

Measured with `raftcron bench raft`'s processes, alternating, 64 outstanding, WAL storage:
44.2k -> 46.3k ops/s median of three (papers/perf/README.md, raft). PySyncObj's processes
gained nothing from the same setting (22.1k either way); the bench gives both sides this
setting, so the comparison stays like for like.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["THRESHOLDS", "tune"]

THRESHOLDS: Final = (50_000, 50, 50)


def tune() -> None:
    """Set the server's thresholds for this process (call once, at start)."""
    gc.set_threshold(*THRESHOLDS)
