"""Latency of one synced save: `WalStorage` (one WAL record + fdatasync) vs `LmdbStorage` (one
synced LMDB commit: data pages flushed, then the meta page).

    python -m papers.perf.wal_save [--saves 3000] [--repeats 3] [--dir DIR] [--no-strace]

Prints one JSON object. Each save is what a follower does per AppendEntries: one entry of 100
bytes plus a hard state. Both storages run in the same invocation, alternating (lmdb, wal, then
wal, lmdb, ...), each on a fresh directory under --dir (default: a temporary directory, so the
same disk as /tmp), after 50 unmeasured saves. Per run: median, p90, p99 and max in ms; overall:
the median over runs and the ratio wal/lmdb of the medians. A run of 3,000 saves includes
WalStorage's checkpoints (one per `Limits.entries` = 1,024 saves; they show in p99 and max);
`checkpoint_ms` times one on its own: a synced LMDB save of the 1,024 entries it folded.
With strace on PATH, `syscalls_per_save` counts fdatasync, fsync, pwrite64, pwritev, write and
writev per save: the difference between a run of 2N and a run of N saves, divided by N, so the
set-up (the WAL's 64 MiB of zeros) cancels out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from raft.lmdb_storage import LmdbStorage
from raft.messages import Entry, HardState
from raft.storage import Storage
from raft.wal_storage import WalStorage

_SYSCALLS = "fdatasync,fsync,pwrite64,pwritev,write,writev"
_WARMUP = 50


def open_kind(kind: str, path: str) -> Storage:
    if kind == "wal":
        return WalStorage.open(path, cluster_id="bench", node_id="n1")
    return LmdbStorage.open(path, cluster_id="bench", node_id="n1")


def timed_saves(storage: Storage, first: int, count: int) -> list[float]:
    """`count` saves of one 100-byte entry and a hard state; each latency in ms."""
    payload = b"x" * 100
    latencies = []
    for index in range(first, first + count):
        hard = HardState(term=1, vote="n1", commit=index - 1)
        entry = [Entry(term=1, index=index, data=payload)]
        started = time.perf_counter_ns()
        storage.save(hard, entry, None)
        latencies.append((time.perf_counter_ns() - started) / 1e6)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def one_run(kind: str, root: str, saves: int) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix=f"{kind}-", dir=root)
    try:
        storage = open_kind(kind, os.path.join(path, "node"))
        try:
            timed_saves(storage, 1, _WARMUP)
            latencies = timed_saves(storage, 1 + _WARMUP, saves)
            checkpoints = getattr(storage, "checkpoints", 0)
        finally:
            storage.close()  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return {"median_ms": round(statistics.median(latencies), 4),
            "p90_ms": round(percentile(latencies, 0.9), 4),
            "p99_ms": round(percentile(latencies, 0.99), 4),
            "max_ms": round(max(latencies), 3), "checkpoints_in_run": checkpoints}


def checkpoint_ms(root: str) -> float:
    """The pause of one checkpoint of a full overlay (`Limits.entries` one-entry saves)."""
    path = tempfile.mkdtemp(prefix="checkpoint-", dir=root)
    try:
        storage = WalStorage.open(os.path.join(path, "node"), cluster_id="bench", node_id="n1")
        try:
            timed_saves(storage, 1, storage._limits.entries)
            assert storage.checkpoints == 0
            started = time.perf_counter_ns()
            storage.checkpoint()
            return round((time.perf_counter_ns() - started) / 1e6, 2)
        finally:
            storage.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def child(kind: str, root: str, saves: int) -> None:
    """Under strace: open, `saves` saves, crash-close (no checkpoint, so only saves differ)."""
    path = tempfile.mkdtemp(prefix=f"strace-{kind}-", dir=root)
    storage = open_kind(kind, os.path.join(path, "node"))
    timed_saves(storage, 1, saves)
    if isinstance(storage, WalStorage):
        storage.crash()
    else:
        storage.close()  # type: ignore[attr-defined]
    shutil.rmtree(path, ignore_errors=True)


def strace_counts(kind: str, root: str, saves: int) -> dict[str, float] | None:
    if shutil.which("strace") is None:
        return None
    totals = []
    for count in (saves, 2 * saves):
        output = subprocess.run(
            ["strace", "-f", "-e", f"trace={_SYSCALLS}", "-c", sys.executable, "-m",
             "papers.perf.wal_save", "--child", kind, "--dir", root, "--saves", str(count)],
            capture_output=True, text=True, check=True).stderr
        calls = {}
        for line in output.splitlines():
            match = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if match and match.group(2) != "total":
                calls[match.group(2)] = int(match.group(1))
        totals.append(calls)
    names = sorted(set(totals[0]) | set(totals[1]))
    return {name: round((totals[1].get(name, 0) - totals[0].get(name, 0)) / saves, 3)
            for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saves", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the storages live (default: a temp dir)")
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--child", choices=("wal", "lmdb"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="raftcron-wal-bench-")
    os.makedirs(root, exist_ok=True)
    if args.child:
        child(args.child, root, args.saves)
        return
    runs: dict[str, list[dict[str, Any]]] = {"lmdb": [], "wal": []}
    for repeat in range(args.repeats):
        order = ("lmdb", "wal") if repeat % 2 == 0 else ("wal", "lmdb")
        for kind in order:
            runs[kind].append(one_run(kind, root, args.saves))
    summary = {kind: {key: round(statistics.median(run[key] for run in results), 4)
                      for key in ("median_ms", "p90_ms", "p99_ms", "max_ms")}
               for kind, results in runs.items()}
    result: dict[str, Any] = {
        "settings": {"saves": args.saves, "repeats": args.repeats, "entry_bytes": 100,
                     "dir": root, "order": "alternating"},
        "runs": runs, "median_of_runs": summary,
        "ratio_wal_over_lmdb": {key: round(summary["wal"][key] / summary["lmdb"][key], 3)
                                for key in ("median_ms", "p90_ms")},
        "checkpoint_ms": checkpoint_ms(root),
    }
    if not args.no_strace:
        result["syscalls_per_save"] = {kind: strace_counts(kind, root, 200)
                                       for kind in ("lmdb", "wal")}
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
