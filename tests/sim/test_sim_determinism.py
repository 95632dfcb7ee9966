"""One seed names one run (TigerBeetle's VOPR): the same seed gives the same trace, byte for byte,
whatever the storage, the faults or the interpreter's hash seed; other seeds give other runs; a
saved schedule replays to the same trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sim.faults import FaultSchedule
from sim.runner import SimOptions, run_simulation


def swarm(seed: int, **overrides: object) -> SimOptions:
    options = SimOptions(seed=seed, seconds=20.0, swarm=True, swarm_environment=True)
    for name, value in overrides.items():
        setattr(options, name, value)
    return options


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: SimOptions(seed=3, seconds=20.0), id="default-story"),
        pytest.param(lambda: swarm(11), id="swarm-all-faults"),
        pytest.param(lambda: SimOptions(seed=5, seconds=20.0, faults={"crash", "partition", "pause", "skew", "loss",
                                                                          "dup", "transfer"}, swarm=True),
                     id="every-fault-kind"),
        pytest.param(lambda: swarm(7, storage="lmdb"), id="lmdb-swarm"),
        pytest.param(lambda: SimOptions(seed=2, seconds=10.0, workload="counter"), id="counter-workload"),
    ],
)
def test_the_same_seed_gives_the_same_trace(make) -> None:  # type: ignore[no-untyped-def]
    first, second = run_simulation(make()), run_simulation(make())
    assert first["trace_sha256"] == second["trace_sha256"]
    assert first["events"] == second["events"]
    assert first["safety_violations"] == second["safety_violations"] == []
    assert first["linearizable"] == second["linearizable"]


def test_memory_lmdb_and_wal_storage_run_the_same_story() -> None:
    """Storage is behind the same contract: a simulated crash keeps exactly what was saved, so
    the run does not depend on which storage holds it. With `wal` every crash drops the
    storage without its checkpoint and the reopen replays the write-ahead log (checkpoints
    every few saves, snapshots every 50 entries), under the safety checks."""
    memory = run_simulation(swarm(7))
    lmdb = run_simulation(swarm(7, storage="lmdb"))
    assert memory["trace_sha256"] == lmdb["trace_sha256"]
    for seed in (7, 8, 9):
        options = dict(seed=seed, seconds=30.0, swarm=True, faults={"crash", "partition", "loss", "transfer"},
                       snapshot_entries=50, proposals_per_second=50)
        wal = run_simulation(SimOptions(storage="wal", **options))  # type: ignore[arg-type]
        assert wal["safety_violations"] == [] and (seed == 7 or wal["snapshots_installed"] > 0)
        assert wal["trace_sha256"] == run_simulation(SimOptions(**options))["trace_sha256"]  # type: ignore[arg-type]


def test_different_seeds_give_different_runs() -> None:
    hashes = {run_simulation(swarm(seed, seconds=5.0))["trace_sha256"] for seed in range(4)}
    assert len(hashes) == 4
    stories = {run_simulation(SimOptions(seed=seed, seconds=5.0))["trace_sha256"] for seed in range(3)}
    assert len(stories) == 3, "even the default story draws its timers and clients from the seed"


def test_a_saved_schedule_replays_alone_to_the_same_trace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The schedule JSON carries the seed and options: nothing else is needed to replay it."""
    from sim.runner import Runner

    runner = Runner(swarm(21))
    try:
        original = runner.run()
    finally:
        runner.close()
    path = tmp_path / "schedule.json"
    path.write_text(runner.schedule.dumps())
    schedule = FaultSchedule.from_json(json.loads(path.read_text()))
    assert schedule.seed == 21 and schedule.options is not None
    replayed = run_simulation(SimOptions.replaying(schedule))
    assert replayed["trace_sha256"] == original["trace_sha256"]
    assert replayed["client_operations"] == original["client_operations"]


def test_the_trace_does_not_depend_on_the_hash_seed() -> None:
    """Set and dict orders follow PYTHONHASHSEED; nothing in a run may."""
    code = ("from sim.runner import SimOptions, run_simulation;"
            "print(run_simulation(SimOptions(seed=4, seconds=8.0, swarm=True, swarm_environment=True))"
            "['trace_sha256'])")
    hashes = set()
    for hash_seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True, timeout=120)
        hashes.add(result.stdout.strip())
    assert len(hashes) == 1, hashes


def test_the_cli_prints_the_same_hash_twice(capsys: pytest.CaptureFixture[str]) -> None:
    from raftcron.cli import main

    runs = []
    for _ in range(2):
        assert main(["sim", "--json", "--seconds", "10", "--faults", "all", "--seed", "9"]) == 0
        runs.append(json.loads(capsys.readouterr().out)["trace_sha256"])
    assert runs[0] == runs[1]
