"""The nemesis on its own: the seeded schedule, target choice, carrying a schedule out against
a recording fake cluster (every fault undone, even when cancelled), libfaketime reaching a
real Python process, and network namespaces where the kernel allows them."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from jepsen_like.history import NEMESIS_PROCESS, HistoryRecorder, pair_operations
from jepsen_like.nemesis import (
    FAULTS_MAX, FakeTime, FaultStep, Nemesis, NemesisOptions, choose_nodes, find_libfaketime,
    partition_sides, plan_faults,
)
from jepsen_like.netns import NamespaceNetwork, probe

NODES = ["n1", "n2", "n3", "n4", "n5"]


# ---- the schedule --------------------------------------------------------------------------------

def test_one_seed_gives_one_schedule_and_another_seed_another() -> None:
    options = NemesisOptions(families=("kill", "pause", "partition", "skew"))
    first = plan_faults(options, 60.0, random.Random(7))
    assert first == plan_faults(options, 60.0, random.Random(7))
    assert first != plan_faults(options, 60.0, random.Random(8))
    assert {step.family for step in first} <= {"kill", "pause", "partition", "skew"}


def test_faults_follow_one_another_and_end_by_the_time_limit() -> None:
    options = NemesisOptions(families=("kill", "pause"), fault_s_min=1.0, fault_s_max=3.0,
                             quiet_s_min=0.5, quiet_s_max=1.0)
    steps = plan_faults(options, 30.0, random.Random(1))
    assert 5 <= len(steps) <= 30
    for step, after in zip(steps, steps[1:]):
        assert step.at_s + step.duration_s + 0.5 <= after.at_s + 1e-9  # quiet in between
    assert all(step.at_s + step.duration_s <= 30.0 + 1e-9 for step in steps)
    assert all(step.duration_s > 0 for step in steps)


def test_no_nemesis_plans_nothing_and_a_long_run_is_still_bounded() -> None:
    assert plan_faults(NemesisOptions(families=()), 60.0, random.Random(1)) == []
    tiny = NemesisOptions(families=("kill",), fault_s_min=0.001, fault_s_max=0.001,
                          quiet_s_min=0.0, quiet_s_max=0.0)
    assert len(plan_faults(tiny, 10_000.0, random.Random(1))) == FAULTS_MAX


def test_clock_bumps_stay_within_the_configured_range() -> None:
    options = NemesisOptions(families=("skew",), skew_ms_min=200.0, skew_ms_max=900.0)
    steps = plan_faults(options, 120.0, random.Random(3))
    assert steps and all(200.0 <= abs(step.offset_ms) <= 900.0 for step in steps)
    assert {step.offset_ms > 0 for step in steps} == {True, False}


def test_bad_options_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="unknown nemesis"):
        NemesisOptions(families=("kill", "meteor"))
    with pytest.raises(ValueError, match="targets"):
        NemesisOptions(targets=("everyone",))


def test_targets_are_the_leader_one_node_or_a_minority() -> None:
    step = FaultStep(0.0, 1.0, "kill", "leader", draw=5)
    assert choose_nodes(step, NODES, "n4") == ["n4"]
    assert len(choose_nodes(step, NODES, None)) == 1  # no leader known: one node
    minority = choose_nodes(FaultStep(0.0, 1.0, "pause", "minority", draw=5), NODES, "n1")
    assert len(minority) == 2 and len(set(minority)) == 2
    assert choose_nodes(FaultStep(0.0, 1.0, "pause", "minority", 9), NODES[:3], None).__len__() == 1
    assert partition_sides(["n2"], NODES) == [["n2"], ["n1", "n3", "n4", "n5"]]


# ---- carrying it out -----------------------------------------------------------------------------

class FakeCluster:
    """Records what the nemesis asks for; keeps the state a real cluster would have."""

    def __init__(self) -> None:
        self.node_ids = list(NODES[:3])
        self.calls: list[tuple[str, object]] = []
        self.down: set[str] = set()
        self.paused: set[str] = set()
        self.cut = False
        self.offsets: dict[str, float] = {}
        self.healed = 0

    async def leader(self) -> str | None:
        return "n2"

    async def kill(self, node: str) -> None:
        self.calls.append(("kill", node))
        self.down.add(node)

    async def start(self, node: str) -> None:
        self.calls.append(("start", node))
        self.down.discard(node)

    async def pause(self, node: str) -> None:
        self.calls.append(("pause", node))
        self.paused.add(node)

    async def resume(self, node: str) -> None:
        self.calls.append(("resume", node))
        self.paused.discard(node)

    async def partition(self, sides: list[list[str]]) -> None:
        self.calls.append(("partition", sides))
        self.cut = True

    async def heal(self) -> None:
        self.calls.append(("heal", None))
        self.cut = False

    async def set_clock(self, node: str, offset_ms: float) -> None:
        self.calls.append(("clock", (node, offset_ms)))
        self.offsets[node] = offset_ms

    async def heal_everything(self) -> None:
        self.healed += 1
        self.down.clear()
        self.paused.clear()
        self.cut = False
        self.offsets = {node: 0.0 for node in self.offsets}


def _steps() -> list[FaultStep]:
    return [FaultStep(1.0, 2.0, "kill", "leader", 1), FaultStep(4.0, 2.0, "pause", "one", 2),
            FaultStep(7.0, 2.0, "partition", "minority", 3),
            FaultStep(10.0, 2.0, "skew", "one", 4, offset_ms=800.0)]


def test_the_nemesis_carries_out_the_schedule_and_undoes_every_fault() -> None:
    cluster = FakeCluster()
    clock = trio.testing.MockClock(autojump_threshold=0)
    history = HistoryRecorder(lambda: int(clock.current_time() * 1e9))
    nemesis = Nemesis(cluster, _steps(), history)

    async def main() -> None:
        await nemesis.run(trio.current_time(), trio.current_time() + 30.0)

    trio.run(main, clock=clock)
    kinds = [kind for kind, _ in cluster.calls]
    assert kinds == ["kill", "start", "pause", "resume", "partition", "heal", "clock", "clock"]
    assert cluster.calls[0] == ("kill", "n2")  # the leader
    assert cluster.calls[-1][1] == (cluster.calls[-2][1][0], 0.0)  # type: ignore[index]
    assert not cluster.down and not cluster.paused and not cluster.cut and cluster.healed == 1
    assert [entry["family"] for entry in nemesis.done] == ["kill", "pause", "partition", "skew"]
    events = [e for e in history.events if e.process == NEMESIS_PROCESS]
    assert [e.f for e in events if e.type == "invoke"] == [
        "kill", "start", "pause", "resume", "start-partition", "stop-partition", "bump-clock",
        "reset-clock"]
    assert pair_operations(history.events) == []  # nemesis events are never client operations


def test_a_cancelled_nemesis_still_undoes_the_fault_in_progress() -> None:
    cluster = FakeCluster()
    clock = trio.testing.MockClock(autojump_threshold=0)
    nemesis = Nemesis(cluster, [FaultStep(1.0, 100.0, "pause", "minority", 1)],
                      HistoryRecorder(lambda: int(clock.current_time() * 1e9)))

    async def main() -> None:
        with trio.move_on_after(5.0):
            await nemesis.run(trio.current_time(), trio.current_time() + 1000.0)

    trio.run(main, clock=clock)
    assert [kind for kind, _ in cluster.calls] == ["pause", "resume"]
    assert not cluster.paused and cluster.healed == 1


def test_the_time_limit_cuts_a_long_fault_short() -> None:
    cluster = FakeCluster()
    clock = trio.testing.MockClock(autojump_threshold=0)
    nemesis = Nemesis(cluster, [FaultStep(1.0, 50.0, "kill", "one", 1),
                                FaultStep(60.0, 5.0, "kill", "one", 2)],
                      HistoryRecorder(lambda: int(clock.current_time() * 1e9)))
    finished: list[float] = []

    async def main() -> None:
        start = trio.current_time()
        await nemesis.run(start, start + 10.0)
        finished.append(trio.current_time() - start)

    trio.run(main, clock=clock)
    assert finished == [pytest.approx(10.0)]
    assert [kind for kind, _ in cluster.calls] == ["kill", "start"]  # the second never began


# ---- libfaketime ---------------------------------------------------------------------------------

LIBRARY = find_libfaketime()
needs_faketime = pytest.mark.skipif(
    LIBRARY is None, reason="libfaketime is not installed (apt-get install faketime; .ci/run does)")

PROBE_SCRIPT = """
import sys, time
print(round(time.time() * 1000), round(time.monotonic() * 1000), flush=True)
sys.stdin.readline()
print(round(time.time() * 1000), round(time.monotonic() * 1000), flush=True)
"""


@needs_faketime
def test_libfaketime_moves_the_wall_clock_of_a_python_process_but_not_its_monotonic_clock(
        tmp_path: Path) -> None:
    """What the skew nemesis relies on: the offset file is read at every clock read, and the
    monotonic clock (Raft's timers, trio) is left alone."""
    assert LIBRARY is not None
    clock = FakeTime(LIBRARY, tmp_path / "clock", offset_ms=1500.0)
    clock.write()
    child = subprocess.Popen([sys.executable, "-c", PROBE_SCRIPT], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **clock.environment()})
    try:
        assert child.stdout is not None and child.stdin is not None
        wall, mono = map(int, child.stdout.readline().split())
        assert abs(wall - time.time() * 1000 - 1500) < 300
        assert abs(mono - time.monotonic() * 1000) < 300
        clock.offset_ms = -2000.0
        clock.write()  # the nemesis's bump, while the process runs
        child.stdin.write("\n")
        child.stdin.flush()
        wall, mono = map(int, child.stdout.readline().split())
        assert abs(wall - time.time() * 1000 + 2000) < 300
        assert abs(mono - time.monotonic() * 1000) < 300
    finally:
        child.kill()
        child.wait(timeout=10)


def test_the_clock_file_holds_seconds_and_a_rate(tmp_path: Path) -> None:
    clock = FakeTime("/nonexistent/libfaketime.so.1", tmp_path / "n1", offset_ms=-1250.0,
                     rate=1.0015)
    clock.write()
    assert (tmp_path / "n1").read_text() == "-1.250 x1.001500\n"  # not "ms": "m" means minutes
    assert clock.environment()["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"


# ---- network namespaces --------------------------------------------------------------------------

def test_namespaces_cut_and_heal_links_or_the_machine_says_why_not() -> None:
    """The probe builds two namespaces, checks that TCP passes, that a DROP rule stops it and
    that healing restores it, and removes everything. Where the kernel refuses, the runner
    falls back to the transport (tested in test_runner.py) and this test says why."""
    found = probe(refresh=True)
    if not found.available:
        pytest.skip(f"network namespaces unavailable here: {found.reason}")
    assert found.elapsed_s < 10


def test_namespace_names_and_addresses_stay_inside_our_own_subnet() -> None:
    found = probe()
    if not found.available:
        pytest.skip(f"network namespaces unavailable here: {found.reason}")
    with NamespaceNetwork(["a", "b", "c"]) as network:
        slot = network.slot
        addresses = [network.address(node) for node in ("a", "b", "c")]
        assert addresses == [f"10.213.{slot}.{10 + i}" for i in range(3)]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(f"rcj{slot}-{node}" in listed for node in ("a", "b", "c"))
        network.partition([["a"], ["b", "c"]])
        rules = subprocess.run([*network.exec_prefix("a"), "iptables-save"], capture_output=True,
                               text=True).stdout
        assert f"-A INPUT -s {addresses[1]}/32 -j DROP" in rules
        assert f"-A OUTPUT -d {addresses[2]}/32 -j DROP" in rules
        network.heal()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert f"rcj{slot}-" not in listed and f"rcj{slot}br" not in links
