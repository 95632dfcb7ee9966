"""One Raft server process for `raftcron bench raft`: ours or PySyncObj, with the load inside.

    python -m papers.perf.loopback_nodes ours --id n1 --ports 7001,7002,7003 --dir D --out R.json
    python -m papers.perf.loopback_nodes pysyncobj --id n1 --ports ... --dir D --out R.json

Three of these form a cluster on 127.0.0.1. Every process runs the same load task, which waits
until its own node leads; only the leader measures. Proposals are issued inside the leader
process, as PySyncObj's callback API requires: for each level L of outstanding proposals, L
proposals are kept in flight by callbacks on both sides (ours `RaftRuntime.propose_soon`),
each answer issuing the next one as soon as the last is applied on the leader, for
`--seconds`, after a warm-up. The leader writes `{"L": {"ops_s", "p50_ms",
"p99_ms", "ops", ...}}` to `--out` and goes on serving until the parent kills the three.

Ours also records, in every process, when each synced save started and how long it took
(`perf_counter_ns`, CLOCK_MONOTONIC, shared by the processes of a machine) in `DIR/saves.ID`,
and the leader puts each level's measured window (`window_ns`) in its result: the parent
takes the servers' own save latency during the 1-outstanding window as the disk part of the
physical floor (papers/perf/suite_raft.py). Each level also says how many synced saves the
leader made and how many entries they carried (`leader_saves`, `entries_per_save`).

Ours: `RaftRuntime` (raft/trio_driver.py) on `LmdbStorage` with `sync=True` (two flushes per
save) or, with `--storage wal`, on `WalStorage` (the server's: a WAL record and one flush per
save, checkpointed into that synced LMDB); the trio transport, 150-300 ms election timeouts and
50 ms heartbeats. The state machine is a counter. Both sides run with the server's GC
thresholds (raft/gc_policy.py). PySyncObj: a `SyncObj` with one `@replicated` counter method, the
in-memory journal (its default; it never fsyncs), and `appendEntriesUseBatch=False`, its
fastest commit path (with batching on, entries wait for the 100 ms append period).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

from raft import gc_policy

WARMUP_S = 0.5
LEADER_WAIT_S = 30.0
PAYLOAD = b"x" * 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=("ours", "pysyncobj"))
    parser.add_argument("--id", required=True)
    parser.add_argument("--ports", required=True, help="comma-separated raft ports of n1, n2, n3")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--levels", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--storage", choices=("lmdb", "wal"), default="lmdb",
                        help="ours only: LmdbStorage with sync=True (the issue's bench) or WalStorage")
    parser.add_argument("--failover", action="store_true",
                        help="pysyncobj only: announce leadership in DIR/leader and log every "
                             "acknowledged write's wall time in DIR/success.ID (for bench failover)")
    args = parser.parse_args(argv)
    ports = [int(p) for p in args.ports.split(",")]
    ids = [f"n{i + 1}" for i in range(len(ports))]
    levels = [int(level) for level in args.levels.split(",")]
    gc_policy.tune()  # the server's setting (raft/gc_policy.py), for both sides alike
    if args.failover:
        _pysyncobj_failover(args, ids, ports)
        return 0
    if args.side == "ours":
        import trio

        trio.run(_ours, args, ids, ports, levels)
    else:
        _pysyncobj(args, ids, ports, levels)
    return 0


def summarise_latencies(latencies_s: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies_s)
    if not ordered:
        return {"ops_s": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "ops": 0}
    return {"ops_s": len(ordered) / seconds, "p50_ms": statistics.median(ordered) * 1000.0,
            "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000.0,
            "ops": len(ordered)}


def _write_result(path: str, result: dict[str, Any]) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    os.replace(temporary, path)  # the parent never sees half a file


# ---- ours ---------------------------------------------------------------------------------------
SAVE_FLUSH_NS = 100_000_000  # followers are killed, not stopped: flush at least this often


class SaveTimes:
    """Every synced save of this process as (start ns, duration ns), appended to a file in
    batches (one `os.write` per 100 ms or 256 saves, so the measuring costs next to nothing)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pending = array("q")
        self._flushed_at = time.perf_counter_ns()
        self.count = 0
        self.entries = 0

    def wrap(self, save: Callable[..., None]) -> Callable[..., None]:
        def timed(hard_state: Any, entries: Any, snapshot: Any) -> None:
            started = time.perf_counter_ns()
            save(hard_state, entries, snapshot)
            ended = time.perf_counter_ns()
            self.count += 1
            self.entries += len(entries)
            self._pending.extend((started, ended - started))
            if len(self._pending) >= 512 or ended - self._flushed_at >= SAVE_FLUSH_NS:
                self.flush()
        return timed

    def flush(self) -> None:
        if self._pending:
            os.write(self._fd, self._pending.tobytes())
            self._pending = array("q")
        self._flushed_at = time.perf_counter_ns()


def read_save_times(path: str) -> list[tuple[int, int]]:
    """The (start ns, duration ns) pairs a `SaveTimes` wrote."""
    numbers = array("q")
    with open(path, "rb") as handle:
        data = handle.read()
    numbers.frombytes(data[:len(data) - len(data) % 16])
    return list(zip(numbers[0::2], numbers[1::2]))


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def apply(self, index: int, data: bytes) -> int:
        self.value += 1
        return self.value

    def skip(self, index: int) -> None:
        pass

    def snapshot(self) -> bytes:
        return str(self.value).encode()

    def restore(self, data: bytes) -> None:
        self.value = int(data or b"0")


async def _ours(args: argparse.Namespace, ids: list[str], ports: list[int], levels: list[int]) -> None:
    import random

    import trio

    from raft.config import RaftConfig
    from raft.lmdb_storage import LmdbStorage
    from raft.progress import Role
    from raft.transport import Transport
    from raft.trio_driver import RaftRuntime

    storage: Any
    if args.storage == "wal":  # the server's default since d2db906: one flush per save
        from raft.wal_storage import WalStorage

        storage = WalStorage.open(os.path.join(args.dir, args.id), cluster_id="bench", node_id=args.id)
    else:
        storage = LmdbStorage.open(os.path.join(args.dir, args.id), cluster_id="bench", node_id=args.id,
                                   sync=True)
    save_times = SaveTimes(os.path.join(args.dir, f"saves.{args.id}"))
    storage.save = save_times.wrap(storage.save)
    config = RaftConfig(node_id=args.id, peers=frozenset(ids), election_timeout_ms_min=150.0,
                        election_timeout_ms_max=300.0, heartbeat_interval_ms=50.0)
    transport: Transport | None = None

    def send(message: Any) -> None:
        assert transport is not None
        transport.send(message)

    runtime = RaftRuntime(config, storage, _Counter(), send=send, rng=random.Random())
    peers = {node: ("127.0.0.1", port) for node, port in zip(ids, ports) if node != args.id}
    transport = Transport(node_id=args.id, cluster_id="bench", secret=None,
                          listen=("127.0.0.1", ports[ids.index(args.id)]), peers=peers, deliver=runtime.deliver)

    async def load() -> None:
        # Woken by role changes, not polling: a follower's load task would otherwise wake
        # 100 times a second for the whole run (3% of a follower's samples under py-spy).
        with trio.move_on_after(LEADER_WAIT_S):
            while runtime.node.role is not Role.LEADER:
                await runtime.wait_role_change()
        if runtime.node.role is not Role.LEADER:
            return
        await trio.sleep(0.3)  # let the no-op commit and the followers settle
        result: dict[str, Any] = {}
        for level in levels:
            latencies: list[float] = []
            await _ours_level(runtime, level, WARMUP_S, None)
            saves, entries, started = save_times.count, save_times.entries, time.perf_counter_ns()
            await _ours_level(runtime, level, args.seconds, latencies)
            summary: dict[str, Any] = summarise_latencies(latencies, args.seconds)
            summary["leader_saves"] = save_times.count - saves
            summary["entries_per_save"] = (save_times.entries - entries) / max(save_times.count - saves, 1)
            summary["window_ns"] = [started, started + int(args.seconds * 1e9)]
            result[str(level)] = summary
            open(os.path.join(args.dir, f"level-{level}.done"), "wb").close()  # the parent stops pinging
        save_times.flush()
        if runtime.node.role is Role.LEADER:
            result["leader"] = args.id
            _write_result(args.out, result)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            await nursery.start(transport.run)
            nursery.start_soon(load)
    finally:
        storage.close()


async def _ours_level(runtime: Any, level: int, seconds: float, latencies: list[float] | None) -> None:
    """`level` proposals outstanding through `propose_soon`'s callbacks: each answer records its
    latency and issues the next one, as PySyncObj's callback API is driven (no task per
    proposal; `propose` with a waiting task per proposal cost ~8 us more each)."""
    import trio

    stop_at = time.perf_counter() + seconds
    finished = trio.Event()
    outstanding = [0]

    def issue() -> None:
        outstanding[0] += 1
        started = time.perf_counter()

        def done(result: Any, error: BaseException | None) -> None:
            outstanding[0] -= 1
            now = time.perf_counter()
            if error is not None:
                raise SystemExit(f"bench proposal failed: {error!r}")
            if latencies is not None and now <= stop_at:
                latencies.append(now - started)
            if now < stop_at:
                issue()
            elif outstanding[0] == 0:
                finished.set()

        runtime.propose_soon(PAYLOAD, done, timeout_s=10.0)

    for _ in range(level):
        issue()
    await finished.wait()


# ---- PySyncObj ----------------------------------------------------------------------------------
def _pysyncobj(args: argparse.Namespace, ids: list[str], ports: list[int], levels: list[int]) -> None:
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, partners: list[str], conf: Any) -> None:
            super().__init__(me, partners, conf)
            self.value = 0

        @replicated  # type: ignore[untyped-decorator]
        def incr(self) -> int:
            self.value += 1
            return self.value

    addresses = [f"127.0.0.1:{port}" for port in ports]
    me = addresses[ids.index(args.id)]
    conf = SyncObjConf(appendEntriesUseBatch=False, raftMinTimeout=0.15, raftMaxTimeout=0.3,
                       appendEntriesPeriod=0.045, dynamicMembershipChange=False)  # it asserts min > 3x period
    counter = Counter(me, [a for a in addresses if a != me], conf)
    deadline = time.monotonic() + LEADER_WAIT_S
    while time.monotonic() < deadline and not counter._isLeader():
        time.sleep(0.01)
    if not counter._isLeader():
        time.sleep(3600)  # a follower: serve until killed
        return
    time.sleep(0.3)
    result: dict[str, Any] = {}
    for level in levels:
        _pysyncobj_level(counter, FAIL_REASON, level, WARMUP_S, None)
        latencies: list[float] = []
        _pysyncobj_level(counter, FAIL_REASON, level, args.seconds, latencies)
        result[str(level)] = summarise_latencies(latencies, args.seconds)
    _write_result(args.out, result)
    time.sleep(3600)


def _pysyncobj_failover(args: argparse.Namespace, ids: list[str], ports: list[int]) -> None:
    """Keep writing, forever: a write every 5 ms (at most 50 unanswered), each acknowledged one
    logged with its wall time; the leader names itself in DIR/leader. Followers forward writes
    to the leader, as PySyncObj does, so survivors see the first commit after a kill."""
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        @replicated  # type: ignore[untyped-decorator]
        def incr(self) -> int:
            self.value = getattr(self, "value", 0) + 1
            return self.value

    addresses = [f"127.0.0.1:{port}" for port in ports]
    me = addresses[ids.index(args.id)]
    conf = SyncObjConf(appendEntriesUseBatch=False, raftMinTimeout=0.15, raftMaxTimeout=0.3,
                       appendEntriesPeriod=0.045, dynamicMembershipChange=False)
    counter = Counter(me, [a for a in addresses if a != me], conf)
    log = open(os.path.join(args.dir, f"success.{args.id}"), "a", encoding="utf-8")
    lock = threading.Lock()
    unanswered = [0]

    def done(issued: float, error: Any) -> None:
        with lock:
            unanswered[0] -= 1
            if error == FAIL_REASON.SUCCESS:
                log.write(f"{issued:.6f},{time.time():.6f}\n")
                log.flush()

    announced = False
    while True:
        if counter._isLeader() and not announced:
            _write_result(os.path.join(args.dir, "leader"), {"id": args.id, "pid": os.getpid()})
            announced = True
        with lock:
            room = unanswered[0] < 50
            if room:
                unanswered[0] += 1
        if room:
            issued = time.time()
            counter.incr(callback=lambda result, error, issued=issued: done(issued, error))
        time.sleep(0.005)


def _pysyncobj_level(counter: Any, fail_reason: Any, level: int, seconds: float,
                     latencies: list[float] | None) -> None:
    """`level` callback chains: each completion (on PySyncObj's own thread) issues the next."""
    stop_at = time.perf_counter() + seconds
    lock = threading.Lock()
    in_flight = [0]
    drained = threading.Event()

    def issue() -> None:
        started = time.perf_counter()
        counter.incr(callback=lambda result, error: done(started, error))

    def done(started: float, error: Any) -> None:
        now = time.perf_counter()
        if error == fail_reason.SUCCESS and latencies is not None and now <= stop_at:
            latencies.append(now - started)
        if now < stop_at:
            issue()
            return
        with lock:
            in_flight[0] -= 1
            if in_flight[0] == 0:
                drained.set()

    in_flight[0] = level
    for _ in range(level):
        issue()
    drained.wait(seconds + 30.0)


if __name__ == "__main__":
    sys.exit(main())
