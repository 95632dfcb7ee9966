"""Every planted Raft bug is caught by the swarm simulator, and the same seeds are clean without it.

A checker that never fails proves nothing (DESIGN.md). Each bug switch re-introduces one
classic mistake (docs/bugs.md); a small fixed set of swarm seeds (60 simulated seconds each,
`raftcron sim --bug NAME --faults swarm --seed S`) must catch it, through Raft safety or through
the client history's linearizability, and the caught run must replay exactly from its schedule.

If a change to the simulator moves the seeds (different draws, different runs), re-pick them with
`raftcron sim --bug NAME --seeds 100 --json` and update SEEDS: the rates in docs/bugs.md say
how many seeds a bug usually needs.
"""

from __future__ import annotations

import json

import pytest

from sim.faults import FaultSchedule
from sim.runner import Runner, SimOptions, run_simulation

SEEDS: dict[str, list[int]] = {
    "commit-old-term": [10, 83, 84],  # Figure 8: a leader counts replicas of an old-term entry
    "forget-vote": [9, 17, 21],  # a restart forgets the vote: two leaders in one term
    "vote-any-log": [0, 1],  # votes without the up-to-date check: a leader lacks committed entries
    "no-truncate": [0, 2],  # a follower keeps a conflicting suffix: logs diverge
    "stale-read": [4, 6, 8],  # an isolated old leader serves reads: only linearizability sees it
}
EXPECTED = {
    "commit-old-term": {"leader_completeness", "state_machine_safety", "log_matching"},
    "forget-vote": {"election_safety", "log_matching", "leader_completeness", "state_machine_safety"},
    "vote-any-log": {"leader_completeness", "state_machine_safety", "log_matching"},
    "no-truncate": {"log_matching", "state_machine_safety", "leader_completeness"},
}


def swarm(seed: int, bug: str | None) -> SimOptions:
    return SimOptions(seed=seed, seconds=60.0, swarm=True, swarm_environment=True,
                      bugs=frozenset({bug}) if bug else frozenset())


def caught(summary: dict[str, object]) -> bool:
    return bool(summary["safety_violations"] or summary["linearizability_violations"])


@pytest.mark.parametrize("bug", sorted(SEEDS))
def test_each_bug_is_caught_by_its_seeds_and_replays_exactly(bug: str) -> None:
    for seed in SEEDS[bug]:
        runner = Runner(swarm(seed, bug))
        try:
            summary = runner.run()
        finally:
            runner.close()
        if caught(summary):
            break
    else:
        pytest.fail(f"--bug {bug} was not caught by seeds {SEEDS[bug]} (see the module docstring)")
    if bug == "stale-read":
        assert summary["safety_violations"] == [], "stale reads break no log property: only clients see them"
        assert summary["linearizable"] is False
    else:
        kinds = {violation["kind"] for violation in summary["safety_violations"]}  # type: ignore[union-attr]
        assert kinds and kinds <= EXPECTED[bug], kinds
    schedule = FaultSchedule.from_json(json.loads(runner.schedule.dumps()))
    assert schedule.options is not None and schedule.seed == seed
    again = run_simulation(SimOptions.replaying(schedule))
    assert again["trace_sha256"] == summary["trace_sha256"]
    assert again["safety_violations"] == summary["safety_violations"]
    assert again["linearizability_violations"] == summary["linearizability_violations"]


def test_without_bugs_the_same_seeds_are_clean() -> None:
    seeds = sorted({seed for chosen in SEEDS.values() for seed in chosen})
    for seed in seeds:
        summary = run_simulation(swarm(seed, None))
        assert summary["safety_violations"] == [], (seed, summary["safety_violations"])
        assert summary["linearizable"] is True, (seed, summary["linearizability_violations"])
        assert summary["liveness"] is None or summary["liveness"]["converged_after_ms"] is not None, (
            seed, summary["liveness"])


def test_the_cli_hunts_a_bug_and_prints_an_exact_replay(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`raftcron sim --bug NAME --seeds N` swarms by default, stops at the first failure with exit
    129, and names a schedule file that `--replay` runs to the same trace."""
    from raftcron.cli import main

    path = tmp_path / "failure.json"
    code = main(["sim", "--bug", "vote-any-log", "--seeds", "5", "--save-schedule", str(path)])
    captured = capsys.readouterr()
    assert code == 129
    assert "reproduce exactly: raftcron sim --replay" in captured.err
    assert "SAFETY VIOLATIONS" in captured.out
    found = [line for line in captured.out.splitlines() if line.startswith("  trace sha256")]
    assert main(["sim", "--replay", str(path)]) == 129
    again = capsys.readouterr().out
    assert found and found[0] in again.splitlines()
