"""`jepsen run` for real: server processes, clients, nemesis, store, checkers.

Short runs (about 10 s of faults each) keep this file near a minute; `-m slow` runs (with
RAFTCRON_DEEP=1) are the long ones. Every run's summary is printed, so a failure shows the
run directory, the nemesis and each checker's evidence.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jepsen_like.clients import OutcomeLog, read_ledger
from jepsen_like.history import Event, dump_history, load_history
from jepsen_like.nemesis import find_libfaketime
from jepsen_like.netns import probe
from jepsen_like.runner import RunOptions, execute, summary_lines
from jepsen_like.store import analyze, read_json

STORE_FILES = ("run.json", "nemesis.json", "history.jsonl", "nemesis.jsonl", "results.json",
               "timeline.jsonl", "nodes/n1.log", "nodes/n1.trace.jsonl")


def run(options: RunOptions) -> tuple[Path, dict[str, Any]]:
    run_dir, results = execute(options)
    print("\n".join(summary_lines(run_dir, results)))
    return run_dir, results


@pytest.fixture(scope="module")
def register_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """3 nodes, 12 s of the register workload under kill and pause."""
    store = tmp_path_factory.mktemp("store")
    return run(RunOptions(nodes=3, time_limit_s=12.0, workload="register",
                          nemesis=("kill", "pause"), fault_s=2.0, interval_s=1.5, rate=40.0,
                          seed=11, store=store, echo=False))


# ---- the register workload ----------------------------------------------------------------------

def test_a_short_register_run_under_kill_and_pause_is_linearizable(
        register_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, results = register_run
    assert results["valid"] is True, results["checkers"]
    checker = results["checkers"]["linearizability"]
    assert checker["valid"] is True and checker["model"] == "kv"
    ops = results["ops"]
    assert ops["ok"] >= 50, ops
    assert ops["invoked"] == ops["ok"] + ops["fail"] + ops["info"] + ops["open"]
    assert set(ops["by_f"]) == {"read", "write", "cas"}
    assert results["network"]["mode"] == "loopback"
    for name in STORE_FILES:
        assert (run_dir / name).exists(), name
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()
    assert not (run_dir / "data").exists()  # data directories go unless --keep-data


def test_the_nemesis_schedule_and_what_it_did_are_recorded(
        register_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = register_run
    plan = read_json(run_dir / "nemesis.json")
    assert plan["steps"] and len(plan["done"]) == len(plan["steps"])
    assert {step["family"] for step in plan["steps"]} <= {"kill", "pause"}
    assert not plan["errors"]
    timeline = [json.loads(line) for line in (run_dir / "nemesis.jsonl").read_text().splitlines()]
    for record in timeline:  # the simulator's trace schema, so papers/plots can draw it
        assert {"t", "node", "local", "kind"} <= set(record)
    kinds = [record["kind"] for record in timeline]
    killed = sum(len(entry["nodes"]) for entry in plan["done"] if entry["family"] == "kill")
    paused = sum(len(entry["nodes"]) for entry in plan["done"] if entry["family"] == "pause")
    assert kinds.count("crash") == killed and kinds.count("pause") == paused
    assert kinds.count("resume") == paused
    assert kinds.count("start") == 3 + killed  # every killed node was started again
    history = load_history(run_dir / "history.jsonl")
    nemesis_ops = [e for e in history if e.process == "nemesis" and e.type == "invoke"]
    assert len(nemesis_ops) == 2 * len(plan["done"])


def test_a_stale_read_inserted_into_the_history_makes_the_results_invalid(
        register_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    source, _ = register_run
    run_dir = tmp_path / "tampered"
    shutil.copytree(source, run_dir)
    events = load_history(run_dir / "history.jsonl")
    key = next(e.key for e in reversed(events) if e.type == "ok" and e.f == "write")
    end, index = max(e.time for e in events), len(events)

    def event(offset: int, process: int, type_: str, f: str, value: Any) -> Event:
        return Event(index + offset, end + 1000 * (offset + 1), process,
                     type_, f, key, value)  # type: ignore[arg-type]

    events += [event(0, 9001, "invoke", "write", 100), event(1, 9001, "ok", "write", 100),
               event(2, 9001, "invoke", "write", 101), event(3, 9001, "ok", "write", 101),
               event(4, 9002, "invoke", "read", None), event(5, 9002, "ok", "read", 100)]
    dump_history(events, run_dir / "history.jsonl")
    results = analyze(run_dir, plot=False)
    assert results["valid"] is False
    checker = read_json(run_dir / "results.json")["checkers"]["linearizability"]
    assert checker["valid"] is False and checker["invalid_keys"] == [key]
    assert any("100" in line for line in checker["explanation"])
    cli = subprocess.run([sys.executable, "-m", "raftcron", "jepsen", "analyze", str(run_dir)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "INVALID" in cli.stdout, cli.stdout + cli.stderr


# ---- the cron workload -------------------------------------------------------------------------

def test_a_cron_job_fires_each_tick_once_while_the_leader_is_killed(tmp_path: Path) -> None:
    run_dir, results = run(RunOptions(
        nodes=3, time_limit_s=12.0, workload="cron", nemesis=("kill",), targets=("leader",),
        fault_s=2.5, interval_s=2.0, recovery_s=3.0, seed=5, store=tmp_path, echo=False))
    ledger, problems = read_ledger(run_dir / "ledger.jsonl")
    assert not problems
    starts = [event.attempt for event in ledger if event.kind == "start"]
    ticks = [attempt[1] for attempt in starts]
    assert len(ticks) >= 8, starts
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {sorted(ticks)}"
    checkers = results["checkers"]
    assert checkers["exactly_once"]["valid"] is True, checkers["exactly_once"]
    assert checkers["liveness"]["valid"] is True, checkers["liveness"]
    assert checkers["liveness"]["lost"] == 0 and checkers["liveness"]["due"] >= 8
    assert checkers["no_spof"]["valid"] is True, checkers["no_spof"]
    plan = read_json(run_dir / "nemesis.json")
    assert plan["done"] and all(entry["target"] == "leader" for entry in plan["done"])
    assert results["valid"] is True
    # The same checker, shown a ledger where one attempt ran twice, says so.
    line = next(l for l in (run_dir / "ledger.jsonl").read_text().splitlines() if '"start"' in l)
    with open(run_dir / "ledger.jsonl", "a") as handle:
        handle.write(line.replace('"node":"n', '"node":"x') + "\n")
    again = analyze(run_dir, plot=False)
    assert again["valid"] is False
    assert "duplicate_start" in {v["kind"] for v in again["checkers"]["exactly_once"]["violations"]}


# ---- partitions and clocks -----------------------------------------------------------------------

def test_a_partition_without_namespaces_uses_the_labelled_transport_fallback(
        tmp_path: Path) -> None:
    run_dir, results = run(RunOptions(
        nodes=3, time_limit_s=8.0, workload="register", nemesis=("partition",),
        targets=("leader",), network="transport", fault_s=2.5, interval_s=1.0, seed=3,
        store=tmp_path, plot=False, echo=False))
    assert results["network"]["mode"] == "transport"
    assert results["network"]["label"].startswith("FALLBACK")
    assert results["valid"] is True, results["checkers"]
    timeline = (run_dir / "nemesis.jsonl").read_text()
    assert '"kind":"partition"' in timeline and '"via":"transport"' in timeline
    logs = "".join((run_dir / "nodes" / f"n{i}.log").read_text() for i in (1, 2, 3))
    assert "fault injection: dropping Raft traffic with" in logs


def test_partitions_in_namespaces_and_clock_bumps_reach_the_servers(tmp_path: Path) -> None:
    found = probe()
    if not found.available:
        pytest.skip(f"network namespaces unavailable here ({found.reason}); the transport "
                    "fallback is tested above")
    skew = find_libfaketime() is not None  # test_nemesis.py says so when it is missing
    run_dir, results = run(RunOptions(
        nodes=3, time_limit_s=9.0, workload="register",
        nemesis=("partition", "skew") if skew else ("partition",), network="netns", fault_s=2.0,
        interval_s=1.0, seed=9, store=tmp_path, plot=False, echo=False))
    assert results["network"]["mode"] == "netns"
    assert results["valid"] is True, results["checkers"]
    timeline = [json.loads(line) for line in (run_dir / "nemesis.jsonl").read_text().splitlines()]
    kinds = [record["kind"] for record in timeline]
    assert kinds.count("partition") == kinds.count("heal") >= 1
    assert all(r["via"] == "netns" for r in timeline if r["kind"] in ("partition", "heal"))
    if not skew:
        return
    assert results["clock"]["mode"] == "libfaketime"
    jumps = [r for r in timeline if r["kind"] == "clock_jump"]
    assert jumps and jumps[-1]["offset_ms"] == 0.0  # every bump is reset
    verified = 0
    for bump in (r for r in jumps if r["offset_ms"] != 0.0):
        same_node = [r["t"] for r in jumps if r["node"] == bump["node"]]
        since = max((t for t in same_node if t < bump["t"]), default=-1e9)  # the last reset
        reset = min(t for t in same_node if t > bump["t"])
        verified += _node_clock_moved(run_dir, bump, since, reset)
    assert verified >= 1, "no Raft event on both sides of any clock bump"


def _node_clock_moved(run_dir: Path, bump: dict[str, Any], since_t: float, reset_t: float) -> bool:
    """The server's own trace stamps its (fake) wall clock as `t` and its monotonic clock as
    `local`: across the bump, t - local moves by the offset, so libfaketime reached it."""
    origin = read_json(run_dir / "run.json")["t0_unix_ms"]
    offset = bump["offset_ms"]
    path = run_dir / "nodes" / f"{bump['node']}.trace.jsonl"
    trace = [json.loads(line) for line in path.read_text().splitlines()]
    before = [r for r in trace if since_t + 50 < r["t"] - origin < bump["t"] - 50]
    during = [r for r in trace if bump["t"] + 50 < r["t"] - origin - offset < reset_t - 50]
    if not before or not during:
        return False
    moved = (during[0]["t"] - during[0]["local"]) - (before[-1]["t"] - before[-1]["local"])
    assert abs(moved - offset) < 250, (moved, offset)
    return True


# ---- outcome polling, on its own -----------------------------------------------------------------

def _outcome(tick: int) -> dict[str, Any]:
    return {"job": "j", "outcome": "fired", "first_ms": tick, "last_ms": tick, "count": 1,
            "trigger": "schedule"}


def test_polls_of_recent_outcomes_are_pieced_together_keeping_duplicates() -> None:
    log = OutcomeLog(since_ms=0.0)
    log.add([_outcome(1), _outcome(2)], invoked_ms=10.0, answered_ms=11.0)
    log.add([_outcome(2), _outcome(3), _outcome(3)], invoked_ms=20.0, answered_ms=21.0)
    log.add([_outcome(3), _outcome(3), _outcome(4)], invoked_ms=30.0, answered_ms=31.0)
    assert [r["first_ms"] for r in log.records] == [1, 2, 3, 3, 4]
    assert log.bounds == [(0.0, 11.0), (0.0, 11.0), (10.0, 21.0), (10.0, 21.0), (20.0, 31.0)]
    assert log.gaps == []
    log.add([_outcome(9), _outcome(10)], invoked_ms=40.0, answered_ms=41.0)
    assert log.gaps == [(4, 9)]


@pytest.mark.slow
def test_a_minute_of_every_nemesis_on_five_nodes(tmp_path: Path) -> None:
    _, results = run(RunOptions(nodes=5, time_limit_s=60.0, workload="register",
                                store=tmp_path, echo=False))
    assert results["valid"] is True, results["checkers"]


@pytest.mark.slow
def test_a_minute_of_cron_under_every_nemesis(tmp_path: Path) -> None:
    _, results = run(RunOptions(nodes=5, time_limit_s=60.0, workload="cron", store=tmp_path,
                                echo=False))
    assert results["checkers"]["exactly_once"]["valid"] is True, results["checkers"]
