"""Shrink a failing `raftcron sim` schedule by delta debugging (Zeller's ddmin), for lab 5.

    python papers/labs/files/shrink.py FOUND.json -o SMALL.json

FOUND.json is a self-contained schedule (`raftcron sim --save-schedule`, or the file a failing
run names after "replay exactly:"). The script replays it and notes the kind of the first
safety violation and when it happened. Then:

1. it drops the actions timed after that moment (they never ran);
2. it removes actions for as long as a replay still breaks the same property no later than
   that moment: first halves of the list, then quarters, and so on down to single actions;
3. it ends the run just after the (possibly earlier) violation of the smallest list.

Every replay is a whole deterministic run, so "still fails" is a yes-or-no question, never a
flaky one; a replay that has not failed by the deadline is cut off there and counts as passing.
This is the idea behind Hypothesis's shrinker in a hundred lines, minus Hypothesis's
cleverness: it can only delete actions, never make a number smaller or a cluster have fewer
servers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

from sim.faults import FaultSchedule
from sim.runner import SimOptions, run_simulation

Action = dict[str, Any]


def first_violation(schedule: dict[str, Any], actions: list[Action], until_ms: float) -> dict[str, Any] | None:
    """Replay `schedule` with only `actions`, for `until_ms` at most; its first safety violation."""
    parsed = FaultSchedule.from_json(dict(schedule, actions=actions))
    assert parsed.options is not None, "a self-contained schedule (seed and options inside) is needed"
    options = SimOptions.from_json(dict(parsed.options, seconds=until_ms / 1000.0), seed=parsed.seed or 0)
    options.schedule = parsed
    violations = run_simulation(options)["safety_violations"]
    return violations[0] if violations else None


def ddmin(actions: list[Action], still_fails: Callable[[list[Action]], bool]) -> tuple[list[Action], int]:
    """A 1-minimal sublist of `actions` for which `still_fails` holds (no single action can be
    removed), by Zeller and Hildebrandt's complement-only ddmin; and how many replays it took."""
    replays, chunks = 0, 2
    while len(actions) >= 2:
        size = math.ceil(len(actions) / chunks)
        for start in range(0, len(actions), size):
            candidate = actions[:start] + actions[start + size:]
            replays += 1
            if still_fails(candidate):
                actions, chunks = candidate, max(chunks - 1, 2)
                break
        else:
            if size == 1:
                break
            chunks = min(chunks * 2, len(actions))
    return actions, replays


def main() -> int:
    parser = argparse.ArgumentParser(description="shrink a failing raftcron sim schedule")
    parser.add_argument("schedule", help="a self-contained schedule that fails")
    parser.add_argument("-o", "--output", required=True, help="where to write the shrunk schedule")
    args = parser.parse_args()
    with open(args.schedule, encoding="utf-8") as handle:
        schedule = json.load(handle)
    if "options" not in schedule:
        print("this schedule has no options inside; save one with raftcron sim --save-schedule", file=sys.stderr)
        return 2
    actions = schedule["actions"]
    first = first_violation(schedule, actions, schedule["options"].get("seconds", 60.0) * 1000.0)
    if first is None:
        print("this schedule does not fail: nothing to shrink", file=sys.stderr)
        return 1
    kind, deadline = first["kind"], math.ceil(first["true_ms"]) + 1.0
    print(f"{len(actions)} actions; the replay breaks {kind} at t={first['true_ms']:.0f} ms")
    ran = [action for action in actions if action["at_ms"] <= first["true_ms"]]
    print(f"{len(ran)} actions are timed before the violation")

    def still_fails(candidate: list[Action]) -> bool:
        violation = first_violation(schedule, candidate, deadline)
        return violation is not None and violation["kind"] == kind

    assert still_fails(ran)
    small, replays = ddmin(ran, still_fails)
    last = first_violation(schedule, small, deadline)
    assert last is not None and last["kind"] == kind
    seconds = (math.ceil(last["true_ms"]) + 1.0) / 1000.0
    result = dict(schedule, options=dict(schedule["options"], seconds=seconds), actions=small)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    print(f"{len(small)} actions after {replays} replays; still breaks {kind} at t={last['true_ms']:.0f} ms:")
    print(f"  {last['detail']}")
    for action in small:
        print("  " + json.dumps(action))
    print(f"wrote {args.output}; run it with: raftcron sim --replay {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
