"""Hypothesis drives a simulated cluster through faults, one rule at a time, and shrinks any
failure to a short fault schedule that `raftcron sim --replay FILE` runs again, exactly.

The machine owns a real `sim.runner.Runner` (the same code `raftcron sim` runs) and records
every rule as a `FaultAction` at the current virtual time (`Runner.act`), so the schedule it
prints is the run. Background clients (the kv workload) read, write and cas all along; rules
add explicit operations, faults, membership changes and time.

Time passes in every rule (`then`, ms after the action), not only in `advance`: Hypothesis
swarm-tests rules (each program switches a random subset of them off), and with time in one
rule alone half the programs never left t = 400 ms, so no election ever followed a fault.

- invariants, after every rule: Raft safety (the observer's violations list is empty);
- teardown: heal everything, restart and resume every member (the servers the membership
  rules leave in the cluster), and require convergence within the liveness bound (a leader,
  equal commit index and state), then linearizability of the client history.

Settings: the `ci` profile (tests/conftest.py) keeps this file well under 60 s; RAFTCRON_DEEP=1
searches far longer. `RAFTCRON_BUG=<name>` (e.g. commit-old-term) runs the same machine with a
known bug switched on: the test is then expected to FAIL, printing the shrunk schedule, the
replay command, and how many programs and seconds the search took (docs/bugs.md).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

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
# What follows an action, matched to the cluster's clocks (latency <= 10 ms, heartbeat 50 ms,
# election timeout 150-300 ms): at once, a message or two, a heartbeat, about one election,
# a few elections. Shrinks towards 0 (actions at one instant).
waits = st.sampled_from([0, 5, 20, 60, 200, 400, 1000])


class Hunt:
    """Counts programs across one pytest process, so a failure says how long the search took
    (Hypothesis reports the shrunk example, not when the first one failed)."""

    started: float | None = None
    programs = 0
    first_failure: tuple[int, float] | None = None  # (programs run, seconds) at the first failure

    @classmethod
    def program(cls) -> None:
        if cls.started is None:
            cls.started = time.perf_counter()
        cls.programs += 1

    @classmethod
    def failed(cls) -> str:
        if cls.first_failure is None:
            cls.first_failure = (cls.programs, time.perf_counter() - (cls.started or time.perf_counter()))
        programs, seconds = cls.first_failure
        return f"first failure: program {programs} of this hunt, {seconds:.1f} s into it"


class ClusterMachine(RuleBasedStateMachine):
    runner: Runner

    @initialize(seed=st.integers(0, 2**16), nodes=st.sampled_from([3, 5, 3]),
                entries_per_message=st.sampled_from([1, 4, 256]), snapshot_entries=st.sampled_from([0, 20]),
                guarded=st.booleans(), rate=st.sampled_from([100.0, 30.0]))
    def start(self, seed: int, nodes: int, entries_per_message: int, snapshot_entries: int, guarded: bool,
              rate: float) -> None:
        Hunt.program()
        options = SimOptions(seed=seed, nodes=nodes, seconds=3600.0, proposals_per_second=rate, clients=3, keys=2,
                             snapshot_entries=snapshot_entries, bugs=frozenset({BUG}) if BUG else frozenset(),
                             schedule=FaultSchedule())
        options.timings.entries_per_message_max = entries_per_message
        options.timings.pre_vote = options.timings.check_quorum = guarded
        options.network.latency_ms_max = 10.0
        self.runner = Runner(options)
        self.nodes = [f"n{i}" for i in range(1, nodes + 1)]  # the members once membership settles
        self.runner.advance(400)  # a first leader, usually

    # ---- helpers --------------------------------------------------------------------------------------
    def name(self, number: int) -> str:
        return self.nodes[number % len(self.nodes)]

    def target(self, choice: str | int) -> str:
        return choice if isinstance(choice, str) else self.name(choice)

    def act(self, kind: str, then: int = 0, **fields: object) -> None:
        self.runner.act(FaultAction(at_ms=0.0, kind=kind, **fields))  # type: ignore[arg-type]
        if then:
            self.runner.advance(then)

    def down(self) -> list[str]:
        return [n for n in self.nodes if not self.runner.cluster.nodes[n].alive]

    def paused(self) -> list[str]:
        return [n for n in self.nodes if self.runner.cluster.nodes[n].paused]

    def membership_settled(self) -> bool:
        return not self.runner.membership_pending()

    # ---- time ---------------------------------------------------------------------------------------------
    @rule(ms=st.sampled_from([300, 50, 150, 1000, 3000]))
    def advance(self, ms: int) -> None:
        self.runner.advance(ms)

    # ---- processes -------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.down()) < len(self.nodes))
    @rule(who=targets, then=waits)
    def crash(self, who: str | int, then: int) -> None:
        self.act("crash", then, node=self.target(who))

    @precondition(lambda self: bool(self.down()))
    @rule(number=node_numbers, then=waits)
    def restart(self, number: int, then: int) -> None:
        down = self.down()
        self.act("restart", then, node=down[number % len(down)])

    @rule(who=targets, downtime=st.sampled_from([5, 1, 50, 300, 1000]), then=waits)
    def bounce(self, who: str | int, downtime: int, then: int) -> None:
        """A crash and a restart `downtime` ms later (what loses an unsynced vote)."""
        self.act("crash", then, node=self.target(who), duration=float(downtime))

    @rule(kind=st.sampled_from(["crash_after_propose", "crash_after_elect"]),
          delay=st.integers(0, 20), downtime=st.integers(1, 1000), loss=st.sampled_from([None, 1.0]), then=waits)
    def crash_when(self, kind: str, delay: int, downtime: int, loss: float | None, then: int) -> None:
        """The Figure 8 pattern: the next node to propose or win dies `delay` ms later, with
        the messages it has not yet flushed lost, and comes back `downtime` ms later."""
        self.act(kind, then, value=float(delay), duration=float(downtime), loss=loss)

    @rule(first=st.sampled_from([None, 0, 5]), crashes=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 600)),
                                                                 min_size=2, max_size=5), then=waits)
    def leader_churn(self, first: int | None, crashes: list[tuple[int, int]], then: int) -> None:
        """Figure 8 as a chain: the leader dies `first` ms after its next proposal (the entry on
        it alone; back after the last crash's downtime), then the next leaders each die (delay, downtime) after winning, their no-op
        on the wire; one must die at once and a later one a round trip or two after winning."""
        if first is not None:
            self.act("crash_after_propose", value=float(first), duration=float(crashes[-1][1]), loss=1.0)
        for delay, downtime in crashes:
            self.act("crash_after_elect", value=float(delay), duration=float(downtime), loss=1.0)
        self.runner.advance(then)

    @rule(bounces=st.lists(st.integers(1, 10), min_size=1, max_size=4), then=waits)
    def vote_bounces(self, bounces: list[int], then: int) -> None:
        """The next voters each restart that many ms after granting a vote: a vote that does
        not survive a restart lets a second candidate of the same term win too."""
        for downtime in bounces:
            self.act("crash_after_vote", value=0.0, duration=float(downtime))
        self.runner.advance(then)

    @precondition(lambda self: len(self.paused()) < len(self.nodes))
    @rule(who=targets, duration=st.sampled_from([None, 100.0, 1000.0]), then=waits)
    def pause(self, who: str | int, duration: float | None, then: int) -> None:
        self.act("pause", then, node=self.target(who), duration=duration)

    @precondition(lambda self: bool(self.paused()))
    @rule(number=node_numbers, then=waits)
    def resume(self, number: int, then: int) -> None:
        paused = self.paused()
        self.act("resume", then, node=paused[number % len(paused)])

    # ---- network ----------------------------------------------------------------------------------------
    @rule(side=st.sets(st.one_of(st.just("leader"), node_numbers), min_size=1, max_size=2), then=waits)
    def partition(self, side: set[str | int], then: int) -> None:
        self.act("partition", then, sides=[sorted({self.target(n) for n in side}), ["rest"]])

    @rule(who=targets, outgoing=st.booleans(), then=waits)
    def one_way(self, who: str | int, outgoing: bool, then: int) -> None:
        node = self.target(who)
        self.act("one_way", then, sides=[[node], ["rest"]] if outgoing else [["rest"], [node]])

    @rule(number=node_numbers, cut=st.sets(node_numbers, min_size=1, max_size=3), then=waits)
    def partial_partition(self, number: int, cut: set[int], then: int) -> None:
        node = self.name(number)
        peers = sorted({self.name(n) for n in cut} - {node})
        if peers:
            self.act("partition", then, sides=[[node], peers])

    @rule(then=waits)
    def heal(self, then: int) -> None:
        self.act("heal", then)

    @rule(loss=st.sampled_from([0.0, 0.1, 0.3]), dup=st.sampled_from([0.0, 0.1, 0.3]), then=waits)
    def lossy_network(self, loss: float, dup: float, then: int) -> None:
        self.act("net", then, loss=loss, dup=dup)

    # ---- clocks (ReadIndex reads do not trust clocks, so any jump is fair) -----------------------------
    @rule(numbers=st.sets(node_numbers, min_size=1, max_size=2), delta=st.integers(-2000, 2000), then=waits)
    def jump_clock(self, numbers: set[int], delta: int, then: int) -> None:
        """One clock, or two at once (an NTP step fleet-wide): two followers whose clocks jump
        past their election timeouts campaign together, in the same term."""
        for node in sorted({self.name(n) for n in numbers}):
            self.act("clock_jump", node=node, value=float(delta))
        self.runner.advance(then)

    @rule(number=node_numbers, ppm=st.integers(-200, 200), then=waits)
    def skew_clock(self, number: int, ppm: int, then: int) -> None:
        self.act("clock_rate", then, node=self.name(number), value=1.0 + ppm * 1e-6)

    # ---- clients and operators --------------------------------------------------------------------------
    @rule(who=targets, key=keys, cas=st.booleans(), then=waits)
    def propose(self, who: str | int, key: int, cas: bool, then: int) -> None:
        self.act("client_cas" if cas else "client_write", then, node=self.target(who), value=float(key))

    @rule(who=targets, key=keys, then=waits)
    def read(self, who: str | int, key: int, then: int) -> None:
        self.act("client_read", then, node=self.target(who), value=float(key))

    @rule(number=node_numbers, then=waits)
    def transfer_leadership(self, number: int, then: int) -> None:
        self.act("transfer", then, node=self.name(number))

    @precondition(lambda self: len(self.nodes) < NODES_MAX and self.membership_settled())
    @rule(then=waits)
    def add_server(self, then: int) -> None:
        """A new, empty server joins as a learner and is promoted once caught up (one server
        at a time, thesis §4.1; the runner drives it as an operator would)."""
        node = f"n{len(self.runner.cluster.ids) + 1}"
        self.nodes.append(node)
        self.act("add_server", then, node=node)

    @precondition(lambda self: len(self.nodes) > 3 and self.membership_settled())
    @rule(number=node_numbers, then=waits)
    def remove_server(self, number: int, then: int) -> None:
        """A member leaves (the leader too); once its removal commits the runner stops it."""
        node = self.name(number)
        self.nodes.remove(node)
        self.act("remove_server", then, node=node)

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
        # The members: a majority of the configuration before any change still in progress and
        # all of the one after it (changes go one server at a time), so they can finish it.
        bound = liveness_bound_ms(runner.options)
        self.act("core", sides=[list(self.nodes)], value=bound)
        liveness = runner.liveness
        assert liveness is not None
        while liveness["converged_after_ms"] is None and "failure" not in liveness and not runner.stopped:
            runner.advance(100)  # the phase polls itself; stop as soon as it has a verdict
        self.raft_is_safe()  # healing can break safety too (a stopped run has no liveness verdict)
        summary = runner.finish(0.0)
        liveness = summary["liveness"]
        if liveness.get("failure"):
            raise AssertionError(self.report(f"liveness: {liveness['failure']}"))
        if summary["linearizable"] is False:
            keys_failed = [failure["key"] for failure in summary["linearizability_violations"]]
            raise AssertionError(self.report(f"the client history is not linearizable (keys {keys_failed})"))

    def report(self, problem: str) -> str:
        """The failure as a schedule `raftcron sim --replay` runs to this very point. One file
        per hunt: Hypothesis runs the shrunk example last, so the file is the one printed."""
        schedule = self.runner.replay_schedule()
        path = os.path.join(tempfile.gettempdir(), f"raftcron-stateful-{BUG or 'nobug'}-{os.getpid()}.json")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(schedule.dumps())
        return (f"{problem}\n{Hunt.failed()}\n{len(schedule.actions)} fault actions; "
                f"replay: raftcron sim --replay {path}\n{json.dumps(schedule.to_json())}")


# Five times the profile's examples (300 in ci).
_settings = settings(max_examples=5 * settings().max_examples, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
if BUG is not None:  # hunting: keep going until the bug shows (the run then fails, as it should);
    # no example database, so every hunt starts from scratch and the timing means something
    _settings = settings(_settings, max_examples=max(settings().max_examples, 3000), database=None)
    # Shrinking a 40-rule program runs it thousands of times; Hypothesis gives up after 300 s
    # (a private constant, no setting). Most of the shrinking happens early: stop after
    # RAFTCRON_SHRINK_S (60 s) so a hunt ends in minutes. Shrinking takes what it has by then.
    import hypothesis.internal.conjecture.engine as _engine

    if hasattr(_engine, "MAX_SHRINKING_SECONDS"):
        _engine.MAX_SHRINKING_SECONDS = int(os.environ.get("RAFTCRON_SHRINK_S", "60"))
ClusterMachine.TestCase.settings = _settings
TestClusterMachine = ClusterMachine.TestCase


# ---- regression tests: shrunk failures, replayed -------------------------------------------------------
def replay(schedule: dict[str, object]) -> dict[str, object]:
    parsed = FaultSchedule.from_json(schedule)
    assert parsed.options is not None and parsed.seed is not None
    return run_simulation(SimOptions.replaying(parsed))


def test_a_replayed_machine_run_is_the_same_run() -> None:
    """What the machine prints is what `--replay` runs: same trace hash, same verdicts."""
    machine = ClusterMachine()
    machine.start(seed=7, nodes=5, entries_per_message=1, snapshot_entries=20, guarded=True, rate=30.0)
    machine.crash("leader", 500)
    machine.partition({0, 1}, 0)
    machine.propose("leader", 1, False, 700)
    machine.crash_when("crash_after_elect", 3, 200, 1.0, 0)
    machine.jump_clock({2}, -1500, 0)
    machine.read(3, 1, 0)
    machine.heal(1200)
    machine.restart(0, 300)
    machine.add_server(400)
    machine.remove_server(1, 400)
    schedule = machine.runner.replay_schedule().to_json()
    live = machine.runner.finish(0.0)
    again = replay(json.loads(json.dumps(schedule)))
    assert again["trace_sha256"] == live["trace_sha256"]
    assert again["client_operations"] == live["client_operations"]
    assert again["safety_violations"] == live["safety_violations"] == []
