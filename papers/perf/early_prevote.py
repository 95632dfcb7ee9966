"""Failover in the simulator with `RaftNode.leader_connection_lost`, against the plain timer.

    python -m papers.perf.early_prevote [--trials 500] [--json]

Issue 9 item 3: a follower that sees its leader's connection close need not wait for its
randomized election timeout. This began as a study that moved the survivors' deadlines from
outside (the README keeps its table); the behaviour now lives in raft/ and this script
measures the real thing: `SimCluster(notify_closed_connections=True)` tells every survivor
that the crashed node's connection closed, one network latency after the crash, and each
survivor's core decides what to do. Variants:

- `baseline`: no notification; the first survivor times out at its randomized 150-300 ms.
- `lease-expiry J`: `lease_reads=True` (the default): the survivors take turns from the
  moment the lease promise expires (last heartbeat + minimum election timeout): the k-th by id
  after k·J + U(0, J/2). Lease reads stay safe.
- `drop-lease J`: `lease_reads=False`: forget the lease promise and take turns from the close.

`--spurious` measures the other side of the bargain: a close while the leader is alive (a
transport restart on the leader closes every follower's connection; a one-way fault closes
one). Per close: how often the cluster got a new leader because of it.

Measured per trial: failover (crash until the new leader's first AppendEntries reached the
other survivor) and whether the election split (more than one real candidacy).
3 servers, 150-300 ms election timeouts, 50 ms heartbeats, 0.1-0.5 ms latency, no storage
cost (the simulator's disk is instantaneous), crash at a uniformly random heartbeat phase.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from typing import Any

from raft.messages import AppendEntries, Message
from sim.cluster import RaftTimings, SimCluster
from sim.network import NetworkOptions
from sim.trace import TraceWriter

SETTLE_MS = 2000.0
GIVE_UP_MS = 20_000.0
VARIANTS: tuple[tuple[str, float | None], ...] = (
    ("baseline", None), ("lease-expiry", 10.0), ("lease-expiry", 30.0),
    ("drop-lease", 10.0), ("drop-lease", 30.0), ("drop-lease", 50.0))


class _NullTrace(TraceWriter):
    def write(self, *args: Any, **kwargs: Any) -> None:
        pass


def trial(variant: str, jitter_ms: float | None, seed: int, *, latency_ms: tuple[float, float] = (0.1, 0.5),
          servers: int = 3) -> dict[str, float]:
    """One crash of a settled leader; failover ms (inf if none within GIVE_UP_MS), split 0/1,
    and whether the safety observer stayed quiet (it raises on a violation)."""
    ids = [f"n{i + 1}" for i in range(servers)]
    timings = RaftTimings(150.0, 300.0, 50.0, lease_reads=variant != "drop-lease",
                          leader_loss_jitter_ms=jitter_ms)
    cluster = SimCluster(ids, seed=seed, timings=timings,
                         network=NetworkOptions(latency_ms_min=latency_ms[0], latency_ms_max=latency_ms[1]),
                         trace=_NullTrace(), notify_closed_connections=variant != "baseline")
    cluster.run_until(SETTLE_MS)
    old = cluster.leader()
    assert old is not None, "no leader after settling"
    old_term = cluster.nodes[old].raft.term  # type: ignore[union-attr]
    crash_at = cluster.now + random.Random(seed).uniform(0.0, 50.0)
    cluster.run_until(crash_at)
    cluster.crash(old)
    done: dict[str, float] = {}
    candidacies = [0]

    def on_role(node: str, role: str, term: int) -> None:
        if role == "candidate":
            candidacies[0] += 1

    def on_deliver(message: Message) -> None:
        if isinstance(message, AppendEntries) and message.term > old_term and "ms" not in done:
            done["ms"] = cluster.now - crash_at

    cluster.on_role, cluster.on_deliver = on_role, on_deliver
    end = crash_at + GIVE_UP_MS
    while "ms" not in done and cluster.now < end:
        cluster.run_until(cluster.now + 10.0)
    return {"ms": done.get("ms", math.inf), "split": 1.0 if candidacies[0] > 1 else 0.0}


def summarise(results: list[dict[str, float]]) -> dict[str, float]:
    times = sorted(r["ms"] for r in results)
    return {"median_ms": round(statistics.median(times), 1),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 1),
            "max_ms": round(times[-1], 1),
            "split_rate": round(sum(r["split"] for r in results) / len(results), 3)}


def spurious_trial(lease_reads: bool, everyone: bool, seed: int) -> bool:
    """One close with the leader alive, at a random heartbeat phase; True if leadership moved."""
    ids = ["n1", "n2", "n3"]
    cluster = SimCluster(ids, seed=seed, timings=RaftTimings(150.0, 300.0, 50.0, lease_reads=lease_reads),
                         network=NetworkOptions(latency_ms_min=0.1, latency_ms_max=0.5), trace=_NullTrace(),
                         notify_closed_connections=True)
    cluster.run_until(SETTLE_MS)
    leader = cluster.leader()
    assert leader is not None
    term = cluster.nodes[leader].raft.term  # type: ignore[union-attr]
    cluster.run_until(cluster.now + random.Random(seed).uniform(0.0, 50.0))
    followers = [n for n in ids if n != leader]
    for follower in followers if everyone else followers[:1]:
        cluster.connection_closed(follower, leader)
    cluster.run_until(cluster.now + 1000.0)
    assert not cluster.observer.violations
    return any(n.raft is not None and n.raft.term > term for n in cluster.nodes.values())


def run_spurious(trials: int) -> dict[str, float]:
    rows = {}
    for lease_reads in (True, False):
        for everyone in (False, True):
            mode = "lease-expiry" if lease_reads else "drop-lease"
            name = f"{mode}, close at {'every follower' if everyone else 'one follower'}"
            moved = sum(spurious_trial(lease_reads, everyone, seed) for seed in range(trials))
            rows[name] = round(moved / trials, 3)
    return rows


def run(trials: int) -> dict[str, Any]:
    rows = {}
    for variant, jitter in VARIANTS:
        name = variant if jitter is None else f"{variant} J={jitter:g}ms"
        rows[name] = summarise([trial(variant, jitter, seed) for seed in range(trials)])
    return {"trials": trials, "servers": 3, "election_timeout_ms": [150, 300], "heartbeat_ms": 50,
            "latency_ms": [0.1, 0.5], "variants": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--spurious", action="store_true", help="closes with the leader alive instead")
    args = parser.parse_args(argv)
    if args.spurious:
        rows = run_spurious(args.trials)
        if args.json:
            print(json.dumps({"trials": args.trials, "new_term_rate": rows}, indent=1))
        else:
            for name, rate in rows.items():
                print(f"{name:<44} new term after the close: {rate:.1%}")
        return 0
    result = run(args.trials)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'variant':<24} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'split rate':>10}")
    for name, row in result["variants"].items():
        print(f"{name:<24} {row['median_ms']:>10} {row['p90_ms']:>8} {row['max_ms']:>8} {row['split_rate']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
