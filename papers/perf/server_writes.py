"""Write latency, committed writes/s and failover time of a real 3-server cluster on loopback.

    python -m papers.perf.server_writes [--seconds 5] [--trials 5] [--clients 1,32]

Prints one JSON object. What is measured, exactly:
  * latency: one `PUT /v1/kv/k<client>` from send to the 200 that says it is committed and
    applied on the leader (LMDB synced on every server: `sync=True` is not optional);
  * writes/s: acknowledged writes divided by the measuring window, with C clients each
    keeping one request outstanding (keep-alive connections, straight to the leader);
  * failover: from the `kill -9` of the leader to the first acknowledged write after it, by a
    client that tries every server (a follower answers 307 to the leader once it knows one).
    Median over --trials kills; the killed server is restarted and caught up between trials.
Everything runs on one machine, so the numbers include the client's own CPU; compare runs
only on the same machine.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from scheduler.server.testing import ProcessCluster, poll


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _client(http: httpx.AsyncClient, url: str, key: str, stop_at: float,
                  latencies: list[float], errors: list[str]) -> None:
    value = 0
    while trio.current_time() < stop_at:
        value += 1
        started = time.perf_counter()
        response = await http.put(f"{url}/v1/kv/{key}", json={"value": value})
        if response.status_code == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors.append(f"{response.status_code}")


async def _load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """Clients are created and their connections opened before the window starts: creating
    an httpx client costs tens of ms (an SSL context), which is not the server's latency."""
    latencies: list[float] = []
    errors: list[str] = []
    https = [httpx.AsyncClient(timeout=10.0) for _ in range(clients)]
    try:
        for http in https:
            await http.get(f"{url}/health")
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index, http in enumerate(https):
                nursery.start_soon(_client, http, url, f"k{index}", started + seconds, latencies, errors)
        elapsed = trio.current_time() - started
    finally:
        for http in https:
            await http.aclose()
    return {
        "clients": clients, "seconds": round(elapsed, 3), "writes": len(latencies),
        "writes_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(percentile(latencies, 0.50) * 1000, 3),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 3),
        "errors": len(errors),
    }


def _write_once(http: httpx.Client, urls: list[str], value: int) -> bool:
    """One write to whichever server takes it, following one redirect."""
    for url in urls:
        try:
            response = http.put(f"{url}/v1/kv/failover", json={"value": value})
            if response.status_code == 307:
                response = http.put(response.headers["location"], json={"value": value})
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            return True
    return False


def failover_trial(cluster: ProcessCluster, http: httpx.Client) -> float | None:
    """One kill; None when the killed server turned out not to lead at the moment of the kill
    (leadership moved in between), which would measure nothing."""
    leader = cluster.wait_leader()
    urls = [cluster.url(i) for i in cluster.ids if i != leader] + [cluster.url(leader)]
    assert _write_once(http, urls, 0), "the cluster does not take writes before the kill"
    before = cluster.status(leader)
    if before is None or before["role"] != "leader":
        return None
    killed_at = time.perf_counter()
    cluster.kill(leader, signal.SIGKILL)
    value = 1
    while not _write_once(http, urls, value):
        value += 1
        if time.perf_counter() - killed_at > 30:
            raise TimeoutError("no write committed within 30 s of the kill")
    elapsed = time.perf_counter() - killed_at
    cluster.start(leader)
    new_leader = cluster.wait_leader()
    after = cluster.status(new_leader)
    assert after is not None
    poll(lambda: (s := cluster.status(leader)) is not None and s["applied_index"] >= after["commit_index"],
         timeout_s=30, what="the restarted server catching up")
    return elapsed if after["term"] > before["term"] else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per client count")
    parser.add_argument("--clients", default="1,32", help="comma-separated client counts")
    parser.add_argument("--trials", type=int, default=5, help="failover trials")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"servers": 3, "storage": "lmdb, synced", "network": "loopback"}
    with tempfile.TemporaryDirectory(prefix="raftcron-perf-") as directory:
        with ProcessCluster(Path(directory) / "cluster", 3, extra_args=("--log-level", "warning")) as cluster:
            cluster.start()
            leader = cluster.wait_leader()
            result["load"] = [trio.run(_load, cluster.url(leader), int(count), args.seconds)
                              for count in args.clients.split(",")]
            with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5)) as http:
                trials: list[float] = []
                for _ in range(3 * args.trials):  # bounded: a trial may measure nothing
                    if len(trials) == args.trials:
                        break
                    trial = failover_trial(cluster, http)
                    if trial is not None:
                        trials.append(trial)
            result["failover_ms"] = {
                "median": round(statistics.median(trials) * 1000, 1),
                "min": round(min(trials) * 1000, 1), "max": round(max(trials) * 1000, 1),
                "trials": [round(t * 1000, 1) for t in trials],
                "election_timeout_ms": [300, 600], "heartbeat_ms": 50,
            }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
