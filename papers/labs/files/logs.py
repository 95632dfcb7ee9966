"""Replay a `raftcron sim` schedule and print every server's log at chosen moments (labs 2, 5).

    python papers/labs/files/logs.py SCHEDULE.json --at 2.1 2.95 --from-index 31

For each moment (true time, in seconds) it prints one line per server: its role, term, commit
index and the entries of its log from --from-index on, written `index/term` as in the Raft
paper's figures. A crashed server shows what its storage kept, marked `down (disk)`. The replay is the
same deterministic run `raftcron sim --replay SCHEDULE.json` makes, stopped at each moment in
turn (and it stops for good at the first safety violation, like the simulator).
"""

from __future__ import annotations

import argparse
import json
import sys

from sim.faults import FaultSchedule
from sim.runner import Runner, SimOptions


def log_line(node, lo: int) -> str:  # type: ignore[no-untyped-def]
    if node.alive and node.raft is not None:
        raft = node.raft
        head = f"{raft.role.value:<13} term {raft.term:>2}  commit {raft.commit_index:>3}"
        last, term_at = raft.last_index, raft.log_term
    else:
        storage = node.storage
        hard = storage.initial_state()  # what the crashed server's disk holds
        head = f"{'down (disk)':<13} term {hard.term:>2}  commit {hard.commit:>3}"
        last, term_at = storage.last_index(), storage.term
    entries = [f"{index}/{term_at(index)}" for index in range(max(lo, 1), last + 1)]
    return f"{head}  log {' '.join(entries) if entries else '(nothing from here)'}"


def main() -> int:
    parser = argparse.ArgumentParser(description="print every server's log at chosen moments of a replay")
    parser.add_argument("schedule", help="a self-contained schedule (seed and options inside)")
    parser.add_argument("--at", type=float, nargs="+", required=True, metavar="SECONDS",
                        help="moments of true time, in seconds")
    parser.add_argument("--from-index", type=int, default=1, help="first log index to print (default 1)")
    args = parser.parse_args()
    with open(args.schedule, encoding="utf-8") as handle:
        schedule = FaultSchedule.from_json(json.load(handle))
    if schedule.options is None:
        print("this schedule has no options inside; save one with raftcron sim --save-schedule", file=sys.stderr)
        return 2
    runner = Runner(SimOptions.replaying(schedule))
    try:
        for moment in sorted(args.at):
            runner.advance(round(moment * 1000.0 - runner.cluster.now, 3))
            print(f"t={moment:g} s")
            for name, node in runner.cluster.nodes.items():
                print(f"  {name}  {log_line(node, args.from_index)}")
            if runner.stopped:
                violation = runner.cluster.observer.violations[0].to_json()
                print(f"stopped at t={violation['true_ms']:.3f} ms: {violation['kind']}: {violation['detail']}")
                break
    finally:
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
