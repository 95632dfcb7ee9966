"""What a closed connection costs when the leader is alive, on a real 3-server cluster.

    python -m papers.perf.spurious_close [--closes 40] [--json]

`RaftNode.leader_connection_lost` treats a closed leader connection as evidence of a crash.
Here the leader lives: each round resets (`ss -K`, a TCP RST on the leader's outbound
connection) the connection from the leader to one follower, or to both, waits one second, and
records whether the term moved (an election happened); `pre_candidacies` counts every
pre-vote campaign in the servers' logs, the first election included.
The servers run as in `raftcron bench failover` (150-300 ms election timeout, 50 ms
heartbeats, lease reads off). Needs `ss` with socket-destroy support (iproute2, root).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTLE_S = 1.0


def leader_sockets(pid: int, follower_port: int) -> list[tuple[str, str]]:
    """(local, peer) addresses of process `pid`'s TCP connections to `follower_port`."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "dport", f"= :{follower_port}"],
                         capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if f"pid={pid}," in line:
            fields = line.split()
            found.append((fields[2], fields[3]))
    return found


def reset(local: str, peer: str) -> None:
    subprocess.run(["ss", "-K", "src", local, "dst", peer], capture_output=True, check=True)


def run(closes: int, seed: int) -> dict[str, Any]:
    from scheduler.server.testing import ProcessCluster

    rng = random.Random(seed)
    rows: dict[str, dict[str, int]] = {"one follower": {"closes": 0, "elections": 0, "reset": 0},
                                       "both followers": {"closes": 0, "elections": 0, "reset": 0}}
    with tempfile.TemporaryDirectory(prefix="raftcron-spurious-") as directory:
        with ProcessCluster(Path(directory) / "cluster", 3,
                            extra_args=("--election-timeout-ms", "150", "--log-level", "info")) as cluster:
            cluster.start()
            for _ in range(closes):
                leader = cluster.wait_leader()
                status = cluster.status(leader)
                assert status is not None
                term = int(status["term"])
                followers = [n for n in cluster.ids if n != leader]
                mode = "both followers" if rng.random() < 0.5 else "one follower"
                targets = followers if mode == "both followers" else [rng.choice(followers)]
                time.sleep(rng.uniform(0.0, 0.05))  # a random heartbeat phase
                pid = cluster.processes[leader].pid
                for follower in targets:
                    for local, peer in leader_sockets(pid, cluster.node(follower).raft[1]):
                        reset(local, peer)
                        rows[mode]["reset"] += 1
                rows[mode]["closes"] += 1
                time.sleep(SETTLE_S)
                now = cluster.wait_leader()
                after = cluster.status(now)
                assert after is not None
                rows[mode]["elections"] += int(after["term"]) > term
            logs = "".join((Path(directory) / "cluster" / f"{n}.log").read_text(errors="replace")
                           for n in cluster.ids)
    return {"closes": closes, "rows": rows,
            "pre_candidacies": len(re.findall(r"became pre-candidate", logs))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--closes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.closes, args.seed)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for mode, row in result["rows"].items():
        print(f"{mode:<16} closes {row['closes']:>3}  sockets reset {row['reset']:>3}  "
              f"elections {row['elections']:>3}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
