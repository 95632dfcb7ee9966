"""`raftcron bench NAME --quick --json`: every bench runs at a tiny size and prints the JSON
shape the issue asks for. Timing is never checked here (these machines are shared); only
shape. Peers are used when already installed and never installed by the tests
(`--no-install`): a missing peer must show up as a reason under `skipped`, not a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest

from papers.perf.harness import alternate, ratios, summarise
from raftcron.cli import main

COMMON_KEYS = {"bench", "settings", "repeats", "ours", "peer", "peer_name", "peers", "ratio", "skipped",
               "targets", "notes", "wall_seconds"}


def bench(capsys: pytest.CaptureFixture[str], name: str, *extra: str) -> dict[str, Any]:
    code = main(["bench", name, "--quick", "--json", "--no-install", *extra])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert COMMON_KEYS <= set(result), sorted(COMMON_KEYS - set(result))
    assert result["bench"] == name
    for target in result["targets"]:
        assert {"name", "value", "threshold", "relation", "met"} <= set(target)
    if result["peer"] is None:
        assert result["ratio"] is None
    else:
        assert result["peer_name"] in result["peers"]
        assert result["peers"][result["peer_name"]] == result["peer"]
    return result


def check_levels(sample: dict[str, Any], levels: tuple[str, ...]) -> None:
    for level in levels:
        assert {"ops_s", "p50_ms", "p99_ms"} <= set(sample[level]), sample[level]
        assert sample[level]["ops_s"] > 0


def test_harness_medians_min_max_and_ratios() -> None:
    calls: list[str] = []
    values = iter([1.0, 10.0, 3.0, 30.0, 2.0, 20.0])

    def side(name: str) -> Any:
        def run() -> dict[str, Any]:
            calls.append(name)
            return {"64": {"ops_s": next(values)}}
        return run

    samples = alternate(3, {"ours": side("ours"), "peer": side("peer")})
    assert calls == ["ours", "peer", "peer", "ours", "ours", "peer"]  # alternating order
    ours, peer = summarise(samples["ours"]), summarise(samples["peer"])
    assert ours["64"] == {"ops_s": 2.0, "ops_s_min": 1.0, "ops_s_max": 30.0}
    assert peer["64"] == {"ops_s": 10.0, "ops_s_min": 3.0, "ops_s_max": 20.0}
    assert ratios(ours, peer) == {"64": {"ops_s": 0.2}}  # medians only, never _min/_max


def test_checker(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench(capsys, "checker", "--repeats", "1")
    assert result["peer"] is None and "porcupine/knossos" in result["skipped"]
    assert all("check_s" in row for row in result["ours"].values())


def test_sim(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench(capsys, "sim", "--repeats", "1")
    for scenario in ("idle", "proposals_100"):
        assert {"sim_speedup", "sim_speedup_cpu", "events_s", "messages_s"} <= set(result["ours"][scenario])
    if result["peer"] is not None:
        ours, peer = result["ours"]["idle"]["messages"], result["peer"]["idle"]["messages"]
        assert abs(ours - peer) <= 0.1 * peer, (ours, peer)  # the same traffic, give or take an election
        assert "sim_speedup" in result["ratio"]["idle"]
    else:
        assert "simpy" in result["skipped"]


def test_planner(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench(capsys, "planner", "--repeats", "1")
    for level in ("100", "1000"):
        assert {"every", "cron"} <= set(result["ours"][level])
        assert result["ours"][level]["every"]["planner_fires_s"] > 0
    assert result["ours"]["memory"]["rss_mb"] > 0


def test_raft(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench(capsys, "raft", "--repeats", "1")
    for ours in (result["ours"], result["ours"]["lmdb"]):  # the server's WAL, LMDB alone
        check_levels(ours, ("1", "8", "64"))
        floor = ours["floor"]  # measured inside the run: the servers' saves, a loopback rtt
        assert floor["save_ms"] > 0 and floor["rtt_ms"] > 0 and floor["saves"] > 0 and floor["pings"] > 0
        assert floor["floor_ms"] == pytest.approx(floor["save_ms"] + floor["rtt_ms"], rel=1e-3)
        # the floor, a synced LMDB commit + rtt, comes from the LMDB-alone run
        assert floor["lmdb_floor_ms"] == pytest.approx(result["ours"]["lmdb"]["floor"]["floor_ms"], rel=1e-3)
        assert ours["64"]["entries_per_save"] >= 1
        assert ours["1"]["p50_over_floor"] > 0 and ours["1"]["p50_over_own_floor"] > 0
    assert len([t for t in result["targets"] if "p50" in t["name"]]) == 2
    if result["peer"] is not None:
        check_levels(result["peer"], ("1", "8", "64"))
        assert set(result["ratio"]["64"]) >= {"ops_s", "p50_ms"}


def test_http(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench(capsys, "http", "--repeats", "1")
    check_levels(result["ours"], ("1", "8", "64"))
    if result["peer"] is not None:
        check_levels(result["peer"], ("1", "8", "64"))


def test_failover(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench(capsys, "failover")
    assert {"median_ms", "p90_ms", "max_ms"} <= set(result["ours"])
    for name, peer in result["peers"].items():
        assert {"median_ms", "p90_ms", "max_ms"} <= set(peer), name
