"""`raftcron bench raft`: 3 servers on loopback, proposals inside the leader, vs PySyncObj.

Each repeat starts a fresh 3-process cluster (papers/perf/loopback_nodes.py explains what
runs in each process), waits for the leader's result file, and kills the three. Levels: 1, 8
and 64 outstanding proposals. Ours persists with LMDB `sync=True`; PySyncObj keeps its journal
in memory and never fsyncs, so at equal speed we do strictly more work per commit.

The physical floor is measured in the same invocation, right before every run of ours: the
median of one synced LMDB commit of a small value (on the same disk the servers use) plus the
median loopback TCP round trip (TCP_NODELAY, 64-byte echo between two threads).
Target: p50 at 1 outstanding <= 2x that floor; ops/s at 64 outstanding >= 2x PySyncObj's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from papers.perf.harness import BenchContext, BenchResult, Sample, Target, alternate, summarise
from papers.perf.peers import python_module

NODES = 3
RESULT_WAIT_S = 120.0


def run(ctx: BenchContext) -> BenchResult:
    levels = (1, 8, 64)
    seconds = 1.0 if ctx.quick else 4.0
    settings: dict[str, Any] = {"servers": NODES, "levels": list(levels), "seconds_per_level": seconds,
                                "warmup_s": 0.5, "payload_bytes": 16, "ours_storage": "lmdb sync=True",
                                "peer_journal": "memory (no fsync)", "peer_appendEntriesUseBatch": False,
                                "election_timeout_ms": [150, 300], "heartbeat_ms": 50}
    result = BenchResult("raft", settings, ours={})

    def ours() -> Sample:
        # The floor is measured right before every run of ours: fsync latency on these shared
        # disks swings by 10x within a minute, so a floor from another moment means little.
        floor = measure_floor(100, 500)
        sample = _cluster("ours", levels, seconds)
        sample["floor"] = floor
        sample["1"]["p50_over_floor"] = sample["1"]["p50_ms"] / floor["floor_ms"]
        return sample

    sides = {"ours": ours}
    pysyncobj, why = python_module("pysyncobj", "pysyncobj", install=ctx.install)
    if pysyncobj is not None:
        settings["pysyncobj_version"] = _version("pysyncobj")
        sides["pysyncobj"] = lambda: _cluster("pysyncobj", levels, seconds)
    else:
        result.skipped["pysyncobj"] = why
    samples = alternate(ctx.repeats, sides, ctx.say)
    result.repeats = ctx.repeats
    result.ours = summarise(samples["ours"])
    if "pysyncobj" in samples:
        result.peers["pysyncobj"] = summarise(samples["pysyncobj"])
        result.strongest = "pysyncobj"
    peer = result.peer
    if peer is not None:
        result.targets.append(Target("ops/s at 64 outstanding, ours / PySyncObj", result.ours["64"]["ops_s"] /
                                     max(peer["64"]["ops_s"], 1e-9), 2.0, ">="))
    floor = result.ours["floor"]
    result.targets.append(Target("p50 at 1 outstanding / physical floor (median of per-run ratios)",
                                 result.ours["1"]["p50_over_floor"], 2.0, "<=",
                                 f"floor {floor['floor_ms']:.3g} ms [{floor['floor_ms_min']:.3g}-"
                                 f"{floor['floor_ms_max']:.3g}]" if "floor_ms_min" in floor else ""))
    if peer is not None:
        bound = 64.0 / max(floor["floor_ms"], 1e-9) * 1000.0
        result.notes.append(f"with one synced commit per round trip, 64 outstanding cannot exceed 64/floor = "
                            f"{bound:.0f} ops/s; 2x PySyncObj would be {2 * peer['64']['ops_s']:.0f}")
    return result


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


# ---- one cluster --------------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out (closed again: a tiny race we accept on loopback)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _cluster(side: str, levels: tuple[int, ...], seconds: float) -> Sample:
    directory = Path(tempfile.mkdtemp(prefix=f"raftcron-bench-{side}-"))
    ports = free_ports(NODES)
    out = directory / "result.json"
    processes: list[subprocess.Popen[bytes]] = []
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        for index in range(NODES):
            log = open(directory / f"n{index + 1}.log", "wb")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "papers.perf.loopback_nodes", side, "--id", f"n{index + 1}",
                 "--ports", ",".join(map(str, ports)), "--dir", str(directory), "--out", str(out),
                 "--levels", ",".join(map(str, levels)), "--seconds", str(seconds)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root))
            log.close()
        deadline = time.monotonic() + RESULT_WAIT_S + len(levels) * (seconds + 1.0)
        while not out.exists():
            if time.monotonic() > deadline or all(p.poll() is not None for p in processes):
                tail = (directory / "n1.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{side} cluster produced no result; n1.log ends:\n{tail}")
            time.sleep(0.05)
        sample: Sample = json.loads(out.read_text())
        return sample
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in processes:
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


# ---- the physical floor --------------------------------------------------------------------------
def measure_floor(commits: int = 200, round_trips: int = 2000) -> dict[str, float]:
    import lmdb

    directory = tempfile.mkdtemp(prefix="raftcron-floor-")
    try:
        env = lmdb.open(directory, map_size=1 << 26, sync=True, metasync=True)
        durations = []
        for index in range(commits):
            started = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(index.to_bytes(8, "big"), b"x" * 64)
            durations.append(time.perf_counter() - started)
        env.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    commit_ms = statistics.median(durations) * 1000.0
    rtt_ms = _loopback_rtt_ms(round_trips)
    return {"lmdb_commit_ms": commit_ms, "loopback_rtt_ms": rtt_ms, "floor_ms": commit_ms + rtt_ms}


def _loopback_rtt_ms(round_trips: int) -> float:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def echo() -> None:
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with connection:
            while True:
                data = connection.recv(64)
                if not data:
                    return
                connection.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    durations = []
    payload = b"p" * 64
    with client:
        for _ in range(round_trips):
            started = time.perf_counter()
            client.sendall(payload)
            received = 0
            while received < len(payload):
                received += len(client.recv(64))
            durations.append(time.perf_counter() - started)
    thread.join(timeout=2.0)
    listener.close()
    return statistics.median(durations) * 1000.0
