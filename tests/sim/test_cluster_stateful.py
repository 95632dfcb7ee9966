"""Hypothesis drives a simulated cluster through faults, one rule at a time, and shrinks any
failure to a short fault schedule that `raftcron sim --replay FILE` runs again, exactly.

The machine owns a real `sim.runner.Runner` (the same code `raftcron sim` runs) and records
every rule as a `FaultAction` at the current virtual time (`Runner.act`), so the schedule it
prints is the run. Background clients (the kv workload) read, write and cas all along; rules
add explicit operations, faults and time.

- invariants, after every rule: Raft safety (the observer's violations list is empty);
- teardown: heal everything, restart and resume every node, and require convergence within
  the liveness bound (a leader, equal commit index and state), then linearizability of the
  client history.

Settings: the `ci` profile (tests/conftest.py) keeps this file well under 90 s; RAFTCRON_DEEP=1
searches far longer. `RAFTCRON_BUG=<name>` (e.g. commit-old-term) runs the same machine with a
known bug switched on: the test is then expected to FAIL, printing the shrunk schedule.
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raft.config import KNOWN_BUGS
from sim.faults import FaultAction, FaultSchedule
from sim.runner import Runner, SimOptions, run_simulation
from sim.swarm import liveness_bound_ms

BUG = os.environ.get("RAFTCRON_BUG") or None
SIM_BUGS = frozenset({"forget-vote"})
if BUG is not None and BUG not in KNOWN_BUGS | SIM_BUGS:
    raise pytest.UsageError(f"RAFTCRON_BUG={BUG}: known Raft bugs are {sorted(KNOWN_BUGS | SIM_BUGS)}")

NODES_MAX = 5
node_numbers = st.integers(0, NODES_MAX - 1)
targets = st.one_of(st.just("leader"), node_numbers)
keys = st.integers(0, 1)


class ClusterMachine(RuleBasedStateMachine):
    runner: Runner

    @initialize(seed=st.integers(0, 2**16), nodes=st.sampled_from([3, 5]),
                entries_per_message=st.sampled_from([1, 4, 256]), snapshot_entries=st.sampled_from([0, 20]),
                guarded=st.booleans())
    def start(self, seed: int, nodes: int, entries_per_message: int, snapshot_entries: int, guarded: bool) -> None:
        options = SimOptions(seed=seed, nodes=nodes, seconds=3600.0, proposals_per_second=30.0, clients=3, keys=2,
                             snapshot_entries=snapshot_entries, bugs=frozenset({BUG}) if BUG else frozenset(),
                             schedule=FaultSchedule())
        options.timings.entries_per_message_max = entries_per_message
        options.timings.pre_vote = options.timings.check_quorum = guarded
        options.network.latency_ms_max = 10.0
        self.runner = Runner(options)
        self.nodes = [f"n{i}" for i in range(1, nodes + 1)]
        self.runner.advance(400)  # a first leader, usually

    # ---- helpers --------------------------------------------------------------------------------------
    def name(self, number: int) -> str:
        return self.nodes[number % len(self.nodes)]

    def target(self, choice: str | int) -> str:
        return choice if isinstance(choice, str) else self.name(choice)

    def act(self, kind: str, **fields: object) -> None:
        self.runner.act(FaultAction(at_ms=0.0, kind=kind, **fields))  # type: ignore[arg-type]

    def down(self) -> list[str]:
        return [n for n in self.nodes if not self.runner.cluster.nodes[n].alive]

    def paused(self) -> list[str]:
        return [n for n in self.nodes if self.runner.cluster.nodes[n].paused]

    # ---- time ---------------------------------------------------------------------------------------------
    @rule(ms=st.integers(1, 3000))
    def advance(self, ms: int) -> None:
        self.runner.advance(ms)

    # ---- processes -------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.down()) < len(self.nodes))
    @rule(who=targets)
    def crash(self, who: str | int) -> None:
        self.act("crash", node=self.target(who))

    @precondition(lambda self: bool(self.down()))
    @rule(number=node_numbers)
    def restart(self, number: int) -> None:
        down = self.down()
        self.act("restart", node=down[number % len(down)])

    @rule(kind=st.sampled_from(["crash_after_propose", "crash_after_elect", "crash_after_vote"]),
          delay=st.integers(0, 20), downtime=st.integers(1, 1000), loss=st.sampled_from([None, 1.0]))
    def crash_when(self, kind: str, delay: int, downtime: int, loss: float | None) -> None:
        """The Figure 8 pattern: a node dies right after it proposes, wins or votes, with the
        messages it has not yet flushed lost, and comes back `downtime` ms later."""
        self.act(kind, value=float(delay), duration=float(downtime), loss=loss)

    @rule(count=st.integers(2, 5), delay=st.integers(0, 20), downtime=st.integers(1, 600))
    def leader_churn(self, count: int, delay: int, downtime: int) -> None:
        """The next `count` leaders each die `delay` ms after winning, their no-op on the wire."""
        for _ in range(count):
            self.act("crash_after_elect", value=float(delay), duration=float(downtime), loss=1.0)

    @precondition(lambda self: len(self.paused()) < len(self.nodes))
    @rule(who=targets, duration=st.sampled_from([None, 100.0, 1000.0]))
    def pause(self, who: str | int, duration: float | None) -> None:
        self.act("pause", node=self.target(who), duration=duration)

    @precondition(lambda self: bool(self.paused()))
    @rule(number=node_numbers)
    def resume(self, number: int) -> None:
        paused = self.paused()
        self.act("resume", node=paused[number % len(paused)])

    # ---- network ----------------------------------------------------------------------------------------
    @rule(side=st.sets(st.one_of(st.just("leader"), node_numbers), min_size=1, max_size=2))
    def partition(self, side: set[str | int]) -> None:
        self.act("partition", sides=[sorted({self.target(n) for n in side}), ["rest"]])

    @rule(who=targets, outgoing=st.booleans())
    def one_way(self, who: str | int, outgoing: bool) -> None:
        node = self.target(who)
        self.act("one_way", sides=[[node], ["rest"]] if outgoing else [["rest"], [node]])

    @rule(number=node_numbers, cut=st.sets(node_numbers, min_size=1, max_size=3))
    def partial_partition(self, number: int, cut: set[int]) -> None:
        node = self.name(number)
        peers = sorted({self.name(n) for n in cut} - {node})
        if peers:
            self.act("partition", sides=[[node], peers])

    @rule()
    def heal(self) -> None:
        self.act("heal")

    @rule(loss=st.sampled_from([0.0, 0.1, 0.3]), dup=st.sampled_from([0.0, 0.1, 0.3]))
    def lossy_network(self, loss: float, dup: float) -> None:
        self.act("net", loss=loss, dup=dup)

    # ---- clocks (ReadIndex reads do not trust clocks, so any jump is fair) -----------------------------
    @rule(number=node_numbers, delta=st.integers(-2000, 2000))
    def jump_clock(self, number: int, delta: int) -> None:
        self.act("clock_jump", node=self.name(number), value=float(delta))

    @rule(number=node_numbers, ppm=st.integers(-200, 200))
    def skew_clock(self, number: int, ppm: int) -> None:
        self.act("clock_rate", node=self.name(number), value=1.0 + ppm * 1e-6)

    # ---- clients and operators --------------------------------------------------------------------------
    @rule(who=targets, key=keys, cas=st.booleans())
    def propose(self, who: str | int, key: int, cas: bool) -> None:
        self.act("client_cas" if cas else "client_write", node=self.target(who), value=float(key))

    @rule(who=targets, key=keys)
    def read(self, who: str | int, key: int) -> None:
        self.act("client_read", node=self.target(who), value=float(key))

    @rule(number=node_numbers)
    def transfer_leadership(self, number: int) -> None:
        self.act("transfer", node=self.name(number))

    # ---- properties ---------------------------------------------------------------------------------------
    @invariant()
    def raft_is_safe(self) -> None:
        violations = self.runner.cluster.observer.violations
        if violations:
            first = violations[0].to_json()
            raise AssertionError(self.report(f"Raft safety: {first['kind']}: {first['detail']}"))

    def teardown(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is None or runner.cluster.observer.violations:
            return
        bound = liveness_bound_ms(runner.options)
        self.act("core", sides=[list(self.nodes)], value=bound)
        liveness = runner.liveness
        assert liveness is not None
        while liveness["converged_after_ms"] is None and "failure" not in liveness:
            runner.advance(100)  # the phase polls itself; stop as soon as it has a verdict
        summary = runner.finish(0.0)
        liveness = summary["liveness"]
        if liveness.get("failure"):
            raise AssertionError(self.report(f"liveness: {liveness['failure']}"))
        if summary["linearizable"] is False:
            keys_failed = [failure["key"] for failure in summary["linearizability_violations"]]
            raise AssertionError(self.report(f"the client history is not linearizable (keys {keys_failed})"))

    def report(self, problem: str) -> str:
        """The failure as a schedule `raftcron sim --replay` runs to this very point."""
        schedule = self.runner.replay_schedule()
        text = schedule.dumps()
        path = os.path.join(tempfile.gettempdir(), f"raftcron-stateful-{abs(hash(text)) % 10**8}.json")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return f"{problem}\nreplay: raftcron sim --replay {path}\n{json.dumps(schedule.to_json())}"


# Five times the profile's examples: one example costs ~40 ms, so ci stays near 15 s.
_settings = settings(max_examples=5 * settings().max_examples, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
if BUG is not None:  # hunting: keep going until the bug shows (the run then fails, as it should);
    # no example database, so every hunt starts from scratch and the timing means something
    _settings = settings(_settings, max_examples=max(settings().max_examples, 3000), database=None,
                         stateful_step_count=100)
ClusterMachine.TestCase.settings = _settings
TestClusterMachine = ClusterMachine.TestCase


# ---- regression tests: shrunk failures, replayed -------------------------------------------------------
def replay(schedule: dict[str, object]) -> dict[str, object]:
    parsed = FaultSchedule.from_json(schedule)
    assert parsed.options is not None and parsed.seed is not None
    options = SimOptions.from_json(parsed.options, seed=parsed.seed)
    options.schedule = parsed
    return run_simulation(options)


def test_a_replayed_machine_run_is_the_same_run() -> None:
    """What the machine prints is what `--replay` runs: same trace hash, same verdicts."""
    machine = ClusterMachine()
    machine.start(seed=7, nodes=5, entries_per_message=1, snapshot_entries=20, guarded=True)
    machine.crash("leader")
    machine.advance(500)
    machine.partition({0, 1})
    machine.propose("leader", 1, False)
    machine.advance(700)
    machine.crash_when("crash_after_elect", 3, 200, 1.0)
    machine.jump_clock(2, -1500)
    machine.read(3, 1)
    machine.heal()
    machine.advance(1200)
    machine.restart(0)
    machine.advance(300)
    schedule = machine.runner.replay_schedule().to_json()
    live = machine.runner.finish(0.0)
    again = replay(json.loads(json.dumps(schedule)))
    assert again["trace_sha256"] == live["trace_sha256"]
    assert again["client_operations"] == live["client_operations"]
    assert again["safety_violations"] == live["safety_violations"] == []
