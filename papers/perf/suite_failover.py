"""`raftcron bench failover`: kill -9 of the leader to the next committed write.

One trial: start a fresh 3-server cluster, wait for a leader, one committed write and every
server up and following that leader (under load a third server may still be starting when the
first two elect: killing the leader then measures a boot, not a failover), SIGKILL the
leader's process, and measure until a write is acknowledged again. Trials of the three
systems alternate (ours, PySyncObj, etcd, then reversed), 20 per system by default (`--quick`:
2); the result gives `median_ms`, `p90_ms` and `max_ms` over all trials of each side.

- ours: `raftcron server` processes, election timeout 150-300 ms, heartbeats 50 ms, LMDB
  synced; the client starts a `PUT /v1/kv/failover` every 20 ms, round-robin over the
  survivors (2 s timeout each, following a 307 to the leader), until one answers 200. The
  servers run with lease reads off, so a follower that reads EOF on its leader's connection
  forgets its lease promise and campaigns in its turn (the k-th survivor by id after
  k·30 + U(0, 15) ms, `RaftNode.leader_connection_lost`);
  each trial also counts the survivors' candidacies (from their logs): more than one is a
  split vote, reported as `split_rate`.
- PySyncObj: the same timeouts (`raftMinTimeout=0.15`, `raftMaxTimeout=0.3`; heartbeats
  every 45 ms, since it insists on min timeout > 3 heartbeats); every process writes every
  5 ms through its callback API and logs each acknowledged write's issue and ack wall times;
  only writes issued after the kill count (an older one may be acknowledged late).
- etcd: `--election-timeout 150 --heartbeat-interval 15`; the same client loop as ours with
  `POST /v3/kv/put` on the gateway.

`--repeats` does not multiply the trials here: 20 alternating trials are the repeats.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from papers.perf.harness import BenchContext, BenchResult, Target, alternate, percentile
from papers.perf.peers import binary, python_module
from papers.perf.suite_raft import free_ports

TRIALS = 20
WRITE_GIVE_UP_S = 30.0


def run(ctx: BenchContext) -> BenchResult:
    trials = 2 if ctx.quick else TRIALS
    settings: dict[str, Any] = {"trials": trials, "servers": 3, "election_timeout_ms": [150, 300],
                                "ours_heartbeat_ms": 50, "pysyncobj_heartbeat_ms": 45,
                                "etcd": "--election-timeout 150 --heartbeat-interval 15"}
    result = BenchResult("failover", settings, ours={})
    sides: dict[str, Callable[[], dict[str, float]]] = {"ours": _ours_trial}
    pysyncobj, why = python_module("pysyncobj", "pysyncobj", install=ctx.install)
    if pysyncobj is not None:
        sides["pysyncobj"] = lambda: {"ms": _pysyncobj_trial()}
    else:
        result.skipped["pysyncobj"] = why
    etcd, why = binary("etcd", "etcd-server", install=ctx.install)
    if etcd is not None:
        sides["etcd"] = lambda: {"ms": _etcd_trial(etcd)}
    else:
        result.skipped["etcd"] = why
    samples = alternate(trials, sides, ctx.say)
    result.repeats = trials
    stats = {name: _stats([s["ms"] for s in values]) for name, values in samples.items()}
    result.ours = stats.pop("ours")
    candidacies = [s["candidacies"] for s in samples["ours"]]
    result.ours["split_rate"] = sum(1 for c in candidacies if c > 1) / len(candidacies)
    result.ours["candidacies"] = candidacies
    result.peers = dict(stats)
    if result.peers:
        result.strongest = min(result.peers, key=lambda name: result.peers[name]["median_ms"])  # type: ignore[index]
        for metric in ("median_ms", "p90_ms"):
            best = min(peer[metric] for peer in result.peers.values() if peer)
            result.targets.append(Target(f"{metric}: ours / best peer (below both)", result.ours[metric] / best,
                                         1.0, "<=", "strictly below is required; equal counts as missed"))
    result.notes.append("ours: lease reads off; a closed leader connection starts a campaign in the "
                        "survivor's turn, k*30 + U(0, 15) ms (RaftConfig.leader_loss_jitter_ms); "
                        "split_rate = trials with more than one candidacy")
    return result


def _stats(values_ms: list[float]) -> dict[str, Any]:
    return {"median_ms": percentile(values_ms, 0.5), "p90_ms": percentile(values_ms, 0.9),
            "max_ms": max(values_ms), "min_ms": min(values_ms), "trials": len(values_ms),
            "all_ms": [round(v, 1) for v in values_ms]}


# ---- the same client loop for ours and etcd --------------------------------------------------------
ATTEMPT_EVERY_S = 0.02
ATTEMPT_TIMEOUT_S = 2.0


def write_until_acknowledged(urls: list[str], request: Callable[[int], tuple[str, str, Any]],
                             started: float) -> float:
    """A fresh write every 20 ms, round-robin over the survivors, each allowed 2 s (a request
    parked on a server without a leader must not hide a later one that would succeed); ms from
    `started` until the first one is acknowledged."""
    import trio

    elapsed_ms: float = trio.run(_write_until_acknowledged, urls, request, started)
    return elapsed_ms


async def _write_until_acknowledged(urls: list[str], request: Callable[[int], tuple[str, str, Any]],
                                    started: float) -> float:
    import httpx
    import trio

    done: list[float] = []

    async def attempt(http: Any, url: str, value: int, cancel: trio.CancelScope) -> None:
        method, path, body = request(value)
        try:
            response = await http.request(method, url + path, json=body)
            if response.status_code == 307:
                response = await http.request(method, response.headers["location"], json=body)
        except httpx.HTTPError:
            return
        if response.status_code == 200 and not done:
            done.append((time.perf_counter() - started) * 1000.0)
            cancel.cancel()

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=httpx.Timeout(ATTEMPT_TIMEOUT_S, connect=0.5), limits=limits) as http:
        with trio.move_on_after(WRITE_GIVE_UP_S):
            async with trio.open_nursery() as nursery:
                value = 0
                while True:  # ends when an attempt succeeds (cancel) or at WRITE_GIVE_UP_S
                    value += 1
                    nursery.start_soon(attempt, http, urls[value % len(urls)], value, nursery.cancel_scope)
                    await trio.sleep(ATTEMPT_EVERY_S)
    if not done:
        raise TimeoutError(f"no write acknowledged within {WRITE_GIVE_UP_S} s of the kill")
    return done[0]


def _ours_trial() -> dict[str, float]:
    from scheduler.server.testing import ProcessCluster

    def request(value: int) -> tuple[str, str, Any]:
        return "PUT", "/v1/kv/failover", {"value": value}

    with tempfile.TemporaryDirectory(prefix="raftcron-bench-failover-") as directory:
        with ProcessCluster(Path(directory) / "cluster", 3,
                            extra_args=("--election-timeout-ms", "150", "--log-level", "info")) as cluster:
            cluster.start()
            leader = cluster.wait_leader()
            status = cluster.status(leader)
            old_term = int(status["term"]) if status else 0
            survivors = [i for i in cluster.ids if i != leader]
            write_until_acknowledged([cluster.url(leader)], request, time.perf_counter())
            _wait(lambda: all((s := cluster.status(i)) is not None and s["leader"] == leader
                              for i in survivors), "every survivor up and following the leader")
            started = time.perf_counter()
            cluster.kill(leader, signal.SIGKILL)
            ms = write_until_acknowledged([cluster.url(i) for i in survivors], request, started)
            logs = [Path(directory) / "cluster" / f"{node}.log" for node in survivors]
            return {"ms": ms, "candidacies": _candidacies(logs, old_term)}


_CANDIDATE = re.compile(r"raftcron\.raft: \S+ became candidate at term (\d+)")


def _candidacies(logs: list[Path], after_term: int) -> int:
    """Real (not pre-vote) candidacies logged for terms above `after_term`."""
    count = 0
    for path in logs:
        text = path.read_text(errors="replace") if path.exists() else ""
        count += sum(1 for m in _CANDIDATE.finditer(text) if int(m.group(1)) > after_term)
    return count


def _etcd_trial(etcd: str) -> float:
    from papers.perf.etcd_cluster import EtcdCluster, put_request

    def request(value: int) -> tuple[str, str, Any]:
        path, body = put_request("failover", value)
        return "POST", path, body

    with EtcdCluster(etcd, election_timeout_ms=150, heartbeat_ms=15) as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        survivors = [cluster.url(n) for n in cluster.names if n != leader]
        write_until_acknowledged([cluster.url(leader)], request, time.perf_counter())
        _wait(lambda: all((s := cluster.status(n)) is not None and s.get("leader") for n in cluster.names),
              "every etcd member up and knowing the leader")
        started = time.perf_counter()
        cluster.kill(leader)
        return write_until_acknowledged(survivors, request, started)


def _pysyncobj_trial() -> float:
    directory = Path(tempfile.mkdtemp(prefix="raftcron-bench-pso-"))
    ports = free_ports(3)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for index in range(3):
            node = f"n{index + 1}"
            log = open(directory / f"{node}.log", "wb")
            processes[node] = subprocess.Popen(
                [sys.executable, "-m", "papers.perf.loopback_nodes", "pysyncobj", "--failover", "--id", node,
                 "--ports", ",".join(map(str, ports)), "--dir", str(directory), "--out", str(directory / "unused")],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
            log.close()
        leader = _wait(lambda: _read_json(directory / "leader"), "a PySyncObj leader")["id"]
        _wait(lambda: _successes(directory, [leader]), "a first committed write")
        time.sleep(0.2)
        killed_at = time.time()
        processes[leader].send_signal(signal.SIGKILL)
        processes[leader].wait()
        survivors = [n for n in processes if n != leader]
        after = _wait(lambda: [acked for issued, acked in _successes(directory, survivors) if issued > killed_at],
                      "a write issued after the kill and committed", WRITE_GIVE_UP_S)
        first: float = min(after)
        return (first - killed_at) * 1000.0
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in processes.values():
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _wait(probe: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.002)
    raise TimeoutError(f"{what} not seen within {timeout_s} s")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _successes(directory: Path, nodes: list[str]) -> list[tuple[float, float]]:
    """(issued, acknowledged) wall times of every acknowledged write the nodes logged."""
    times: list[tuple[float, float]] = []
    for node in nodes:
        try:
            lines = (directory / f"success.{node}").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(",")
            if len(parts) == 2 and parts[1]:
                times.append((float(parts[0]), float(parts[1])))
    return times


def main(argv: list[str] | None = None) -> int:
    """`python -m papers.perf.suite_failover --ours N`: N trials of ours alone, for the split
    vote rate (the bench's 20 alternating trials are too few to see a 2% rate)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--ours", type=int, required=True, metavar="N")
    args = parser.parse_args(argv)
    rows = [_ours_trial() for _ in range(args.ours)]
    times = [row["ms"] for row in rows]
    print(json.dumps({**{k: round(v, 1) for k, v in _stats(times).items() if k != "all_ms"},
                      "split_rate": sum(1 for row in rows if row["candidacies"] > 1) / len(rows),
                      "candidacies": [row["candidacies"] for row in rows], "all_ms": _stats(times)["all_ms"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
