"""Where one write's latency goes: the median of each gap along its path, over N sequential
writes to a real 3-server loopback cluster (the `bench http` setup) with the latency probe on.

    python -m papers.perf.latency_gaps [--writes 200] [--json]

Every server appends `point index ns` marks (raft/latency_probe.py); the marks of one entry
index, from the leader and from the follower that acknowledged first, are laid out in path
order and each consecutive gap's median is printed, beside the client's own round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# (process, point) in path order; "L" the leader, "F" the first follower to acknowledge.
PATH: tuple[tuple[str, str], ...] = (
    ("C", "client_send"), ("L", "http_request"), ("L", "proposed"), ("L", "ready"), ("L", "queued_append"),
    ("L", "save_start"), ("L", "wire_append"), ("F", "received_append"), ("F", "step_append"),
    ("F", "ready"), ("F", "save_start"), ("F", "disk_start"), ("F", "disk_end"), ("F", "save_end"), ("F", "queued_ack"), ("F", "wire_ack"),
    ("L", "received_ack"), ("L", "step_ack"), ("L", "ready_committed"), ("L", "applied"),
    ("L", "handler_resumed"), ("L", "http_sent"), ("C", "client_received"),
)
LEADER_SAVE = (("L", "save_start"), ("L", "disk_start"), ("L", "disk_end"), ("L", "save_end"))

Marks = dict[str, dict[int, int]]  # point -> index -> first ns


def read_marks(directory: Path) -> dict[int, Marks]:
    by_pid: dict[int, Marks] = {}
    for path in directory.glob("*.probe"):
        marks: Marks = defaultdict(dict)
        for line in path.read_text().splitlines():
            point, index, ns = line.split()
            marks[point].setdefault(int(index), int(ns))
        by_pid[int(path.stem)] = marks
    return by_pid


def gaps(by_pid: dict[int, Marks], indexes: list[int], client: Marks) -> dict[str, Any]:
    leader = next((pid for pid, marks in by_pid.items() if marks.get("http_request")), None)
    if leader is None:
        return {}  # the probe is off (e.g. a tree without it)
    followers = [marks for pid, marks in by_pid.items() if pid != leader]
    rows: dict[str, list[float]] = defaultdict(list)
    for index in indexes:
        acked = [f for f in followers if index in f.get("wire_ack", {})]
        if not acked or index not in by_pid[leader].get("http_sent", {}):
            continue
        follower = min(acked, key=lambda f: f["wire_ack"][index])
        sides = {"L": by_pid[leader], "F": follower, "C": client}
        stamps = [sides[side].get(point, {}).get(index) for side, point in PATH]
        previous: tuple[str, int] | None = None
        for (side, point), stamp in zip(PATH, stamps):
            if stamp is None:
                continue
            if previous is not None:
                rows[f"{previous[0]} -> {side}.{point}"].append((stamp - previous[1]) / 1e6)
            previous = (f"{side}.{point}", stamp)
        save = [sides["L"].get(p, {}).get(index) for _, p in LEADER_SAVE]
        for (_, p1), (_, p2), t1, t2 in zip(LEADER_SAVE, LEADER_SAVE[1:], save, save[1:]):
            if t1 is not None and t2 is not None:
                rows[f"(leader save, overlapping) L.{p1} -> L.{p2}"].append((t2 - t1) / 1e6)
        first, last = stamps[1], stamps[-2]
        if first is not None and last is not None:
            rows["total: request -> response sent"].append((last - first) / 1e6)
    return {name: summary(v) for name, v in rows.items()}


def summary(values: list[float]) -> dict[str, Any]:
    """Median, mean and p90: the gaps are bimodal (a flush is fast or slow), so medians alone
    do not add up to the total."""
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered), 3), "mean_ms": round(statistics.fmean(ordered), 3),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3), "n": len(ordered)}


def run(writes: int, probe: bool = True) -> dict[str, Any]:
    import httpx

    from scheduler.server.testing import ProcessCluster

    with tempfile.TemporaryDirectory(prefix="raftcron-gaps-") as directory:
        probes = Path(directory) / "probes"
        probes.mkdir()
        env = {"RAFTCRON_LATENCY_PROBE": str(probes)} if probe else {}
        with ProcessCluster(Path(directory) / "cluster", 3, extra_args=("--log-level", "warning"),
                            env=env) as cluster:
            cluster.start()
            url = cluster.url(cluster.wait_leader())
            round_trips: list[float] = []
            indexes: list[int] = []
            client: Marks = defaultdict(dict)
            with httpx.Client(timeout=10.0) as http:
                for value in range(20):  # warm-up: connections, LMDB pages
                    http.put(f"{url}/v1/kv/warm", json={"value": value})
                for value in range(writes):
                    started = time.perf_counter_ns()
                    response = http.put(f"{url}/v1/kv/k", json={"value": value})
                    ended = time.perf_counter_ns()
                    round_trips.append((ended - started) / 1e6)
                    if response.status_code == 200:
                        index = int(response.json()["version"])
                        indexes.append(index)
                        client["client_send"][index] = started
                        client["client_received"][index] = ended
            by_pid = read_marks(probes)
    result = gaps(by_pid, indexes, client)
    result["client round trip"] = summary(round_trips)
    result["load_average"] = os.getloadavg()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-probe", action="store_true", help="only the client's round trips")
    args = parser.parse_args(argv)
    result = run(args.writes, probe=not args.no_probe)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    for name, row in result.items():
        if isinstance(row, dict):
            print(f"{name:62s} p50 {row['p50_ms']:7.3f}  mean {row['mean_ms']:7.3f}  p90 {row['p90_ms']:7.3f} ms"
                  f"  (n={row['n']})")
        else:
            print(f"{name:48s} {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
