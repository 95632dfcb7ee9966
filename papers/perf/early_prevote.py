"""Would an early election on a closed leader connection beat the peers' failover? A study.

    python -m papers.perf.early_prevote [--trials 500] [--json]

Issue item 3 suggests that a follower seeing its leader's connection close may start a
pre-vote at once. This script *emulates* that in the simulator, without changing raft/, so the
raft owners can see the effect before deciding: at the instant the leader crashes (plus a
0.1 ms detection delay), each survivor's election deadline is moved, from outside, as a
transport callback would move it. Variants:

- `baseline`: nothing moves; the first survivor times out at its randomized 150-300 ms.
- `at-once`: each survivor campaigns after U(0, J) ms, leases untouched. The other survivor
  still holds its lease promise (no vote within the minimum election timeout of its last
  heartbeat) and ignores the pre-vote, so the early pre-candidate waits a fresh timeout.
- `drop-lease`: as at-once, and both survivors also forget the leader's lease (what a
  "connection closed" signal would have to mean). Fast, but it breaks the promise lease reads
  rely on when the connection closed for any other reason than a crash.
- `lease-expiry`: campaign when the lease promise expires: last heartbeat + minimum
  election timeout + U(0, J). Keeps lease reads safe.

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
from raft.progress import Role
from sim.cluster import RaftTimings, SimCluster
from sim.network import NetworkOptions
from sim.trace import TraceWriter

DETECT_MS = 0.1
SETTLE_MS = 2000.0
GIVE_UP_MS = 20_000.0


class _NullTrace(TraceWriter):
    def write(self, *args: Any, **kwargs: Any) -> None:
        pass


def trial(variant: str, jitter_ms: float, seed: int) -> dict[str, float]:
    ids = ["n1", "n2", "n3"]
    cluster = SimCluster(ids, seed=seed, timings=RaftTimings(150.0, 300.0, 50.0),
                         network=NetworkOptions(latency_ms_min=0.1, latency_ms_max=0.5), trace=_NullTrace())
    cluster.run_until(SETTLE_MS)
    old = cluster.leader()
    assert old is not None, "no leader after settling"
    old_term = cluster.nodes[old].raft.term  # type: ignore[union-attr]
    crash_at = cluster.now + random.Random(seed).uniform(0.0, 50.0)
    cluster.run_until(crash_at)
    cluster.crash(old)
    survivors = [n for n in ids if n != old]
    done: dict[str, float] = {}
    candidacies = [0]

    def on_role(node: str, role: str, term: int) -> None:
        if role == "candidate":
            candidacies[0] += 1

    def on_deliver(message: Message) -> None:
        if isinstance(message, AppendEntries) and message.term > old_term and "ms" not in done:
            done["ms"] = cluster.now - crash_at

    cluster.on_role, cluster.on_deliver = on_role, on_deliver
    if variant != "baseline":
        cluster.call_at(crash_at + DETECT_MS, lambda: _on_close(cluster, survivors, variant, jitter_ms, seed))
    end = crash_at + GIVE_UP_MS
    while "ms" not in done and cluster.now < end:
        cluster.run_until(cluster.now + 10.0)
    return {"ms": done.get("ms", math.inf), "split": 1.0 if candidacies[0] > 1 else 0.0}


def _on_close(cluster: SimCluster, survivors: list[str], variant: str, jitter_ms: float, seed: int) -> None:
    """What a transport's 'the leader's connection closed' callback would do (emulated)."""
    rng = random.Random(seed * 7 + 1)
    for node_id in survivors:
        node = cluster.nodes[node_id]
        raft = node.raft
        assert raft is not None
        if raft.role is not Role.FOLLOWER:
            continue
        now = node.clock.local(cluster.now)
        jitter = rng.uniform(0.0, jitter_ms)
        if variant == "lease-expiry":
            deadline = max(now, raft._leader_contact + raft.cfg.election_timeout_ms_min) + jitter
        else:
            if variant == "drop-lease":
                raft._leader_contact = -math.inf
            deadline = now + jitter
        raft._election_deadline = min(raft._election_deadline, deadline)
        node.timer_at = math.nan  # force `_reschedule` to arm the new, earlier deadline
        cluster._reschedule(node)


def run(trials: int) -> dict[str, Any]:
    variants = [("baseline", 0.0)] + [(v, j) for v in ("at-once", "drop-lease", "lease-expiry")
                                      for j in (0.0, 10.0, 30.0)]
    rows = {}
    for variant, jitter in variants:
        results = [trial(variant, jitter, seed) for seed in range(trials)]
        times = sorted(r["ms"] for r in results)
        rows[f"{variant} J={jitter:g}ms"] = {
            "median_ms": round(statistics.median(times), 1),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 1),
            "max_ms": round(times[-1], 1),
            "split_rate": round(sum(r["split"] for r in results) / trials, 3),
        }
    return {"trials": trials, "servers": 3, "election_timeout_ms": [150, 300], "heartbeat_ms": 50,
            "latency_ms": [0.1, 0.5], "variants": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
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
