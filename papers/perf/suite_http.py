"""`raftcron bench http`: acknowledged writes over HTTP, ours vs an etcd 3-member cluster.

The same client code drives both: C keep-alive clients (C = 1, 8, 64), each with one request
outstanding, straight to the leader, for a fixed window after their connections are open. A
write counts when the server says it is committed: ours `PUT /v1/kv/k<i>` answering 200 once
applied on the leader (LMDB synced on every server), etcd `POST /v3/kv/put` on its v3 HTTP
gateway answering 200 (etcd fsyncs its WAL). Both clusters run on this machine with default
timings; each repeat starts fresh clusters.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from papers.perf.harness import (BenchContext, BenchResult, Sample, Target, alternate, process_cpu_s,
                                  summarise)
from papers.perf.peers import binary

Request = Callable[[int, int], tuple[str, Any]]  # (client, value) -> (path, json body)


def run(ctx: BenchContext) -> BenchResult:
    levels = (1, 8, 64)
    seconds = 1.0 if ctx.quick else 4.0
    settings: dict[str, Any] = {"servers": 3, "clients": list(levels), "seconds_per_level": seconds,
                                "ours": "PUT /v1/kv/k<i>, LMDB sync", "peer": "etcd POST /v3/kv/put (gateway)"}
    result = BenchResult("http", settings, ours={})
    sides = {"ours": lambda: _ours(levels, seconds)}
    etcd, why = binary("etcd", "etcd-server", install=ctx.install)
    if etcd is not None:
        sides["etcd"] = lambda: _etcd(etcd, levels, seconds)
    else:
        result.skipped["etcd"] = why
    samples = alternate(ctx.repeats, sides, ctx.say)
    result.repeats = ctx.repeats
    result.ours = summarise(samples["ours"])
    if "etcd" in samples:
        peer = summarise(samples["etcd"])
        result.peers["etcd"] = peer
        result.strongest = "etcd"
        result.targets.append(Target("writes/s at 64 clients, ours / etcd",
                                     result.ours["64"]["ops_s"] / max(peer["64"]["ops_s"], 1e-9), 1.0, ">="))
        result.targets.append(Target("p50 at 1 client, ours / etcd",
                                     result.ours["1"]["p50_ms"] / max(peer["1"]["p50_ms"], 1e-9), 1.5, "<="))
    return result


def _ours(levels: tuple[int, ...], seconds: float) -> Sample:
    from scheduler.server.testing import ProcessCluster

    with tempfile.TemporaryDirectory(prefix="raftcron-bench-http-") as directory:
        with ProcessCluster(Path(directory) / "cluster", 3, extra_args=("--log-level", "warning")) as cluster:
            cluster.start()
            leader = cluster.wait_leader()
            url = cluster.url(leader)
            pids = [process.pid for process in cluster.processes.values()]
            return {str(level): with_cpu(pids, lambda: load(url, level, seconds, lambda client, value: (
                f"/v1/kv/k{client}", {"value": value}), method="PUT")) for level in levels}


def _etcd(etcd: str, levels: tuple[int, ...], seconds: float) -> Sample:
    from papers.perf.etcd_cluster import EtcdCluster, put_request

    with EtcdCluster(etcd) as cluster:
        cluster.start()
        url = cluster.url(cluster.wait_leader())
        pids = [process.pid for process in cluster.processes.values()]
        return {str(level): with_cpu(pids, lambda: load(url, level, seconds, lambda client, value: put_request(
            f"k{client}", value), method="POST")) for level in levels}


def with_cpu(pids: list[int], measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """`measure()`'s sample plus the CPU time its servers spent per acknowledged write, summed
    over the processes (user + system, from /proc): unlike throughput on these shared cores,
    it hardly moves with the other tenants' load."""
    before = sum(_cpu_s(pid) for pid in pids)
    sample = measure()
    spent = sum(_cpu_s(pid) for pid in pids) - before
    if sample.get("writes"):
        sample["server_cpu_ms_per_write"] = spent * 1000.0 / sample["writes"]
    return sample


def _cpu_s(pid: int) -> float:
    """`process_cpu_s`, 0 for a server that is gone (its writes then failed anyway)."""
    try:
        return process_cpu_s(pid)
    except OSError:
        return 0.0


def load(url: str, clients: int, seconds: float, request: Request, *, method: str) -> dict[str, float]:
    """C clients, one request outstanding each; the same code for every system."""
    import trio

    sample: dict[str, float] = trio.run(_load, url, clients, seconds, request, method)
    return sample


async def _load(url: str, clients: int, seconds: float, request: Request, method: str) -> dict[str, float]:
    import httpx
    import trio

    latencies: list[float] = []
    errors = [0]
    answered = [0]  # every acknowledged write, also those answered after the window
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    https = [httpx.AsyncClient(timeout=10.0, limits=limits) for _ in range(clients)]

    async def client(index: int, http: Any, stop_at: float) -> None:
        value = 0
        while time.perf_counter() < stop_at:
            value += 1
            path, body = request(index, value)
            started = time.perf_counter()
            response = await http.request(method, url + path, json=body)
            if response.status_code == 200:
                answered[0] += 1
                if time.perf_counter() <= stop_at:
                    latencies.append(time.perf_counter() - started)
            else:
                errors[0] += 1

    try:
        for index, http in enumerate(https):  # open every connection before the window
            path, body = request(index, 0)
            await http.request(method, url + path, json=body)
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for index, http in enumerate(https):
                nursery.start_soon(client, index, http, started + seconds)
    finally:
        for http in https:
            await http.aclose()
    ordered = sorted(latencies)
    if not ordered:
        return {"ops_s": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "errors": errors[0], "writes": answered[0]}
    return {"ops_s": len(ordered) / seconds, "p50_ms": statistics.median(ordered) * 1000.0,
            "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000.0,
            "errors": errors[0], "writes": answered[0]}
