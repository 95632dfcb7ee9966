"""Hypothesis drives the SCHEDULER in the simulator through faults and operator requests, one
rule at a time, and shrinks any failure to a short schedule `raftcron sim --replay FILE` runs
again, exactly (the jobs travel in the schedule's options; job requests and agent crashes are
fault actions too: `job_put`, `job_delete`, `job_toggle`, `job_run_now`, `agent_crash`,
`agent_restart`, `crash_after_fire`).

The machine owns a real `sim.runner.Runner` with `jobs` (what `raftcron sim --jobs` runs): five
servers, each also an agent (n1-n3 role=web, n4-n5 role=batch). Rules advance virtual time,
crash, pause and partition servers, crash agents alone, jump and skew clocks (within the drift
bound the lease policy assumes), change loss and duplication, transfer leadership, and put,
update, delete, toggle and run jobs now.

- invariants, after every rule: Raft safety (the observer) and exactly-once safety
  (`jepsen_like.exactly_once.check_exactly_once`: at most one Fire per tick committed, one
  Finish per attempt, one start per attempt in the world ledger, no two attempts of one
  execution running at once in true time);
- teardown: heal everything, restart and resume every server and agent, let the cluster
  converge and the operator's requests land, run on past the checkers' margin, and require
  tick liveness (`check_tick_liveness` via the world's summary: every due tick has exactly
  one outcome) and exactly-once safety once more.

Settings: the `ci` profile (tests/conftest.py) keeps this file near a minute; RAFTCRON_DEEP=1
searches far longer. `RAFTCRON_BUG=<name>` (fire-twice, leader-clock-trust, lease-no-drift)
runs the same machine with a scheduler bug switched on: the test is then expected to FAIL,
printing the shrunk schedule. docs/scheduler.md ("Bug switches") has the measured figures.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jepsen_like.exactly_once import check_exactly_once
from scheduler.leases import LeasePolicy
from scheduler.machine import SCHEDULER_BUGS
from sim.faults import FaultAction, FaultSchedule
from sim.runner import Runner, SimOptions, run_simulation
from sim.scheduler_world import SchedulerWorld, WorldOptions
from sim.swarm import liveness_bound_ms

BUG = os.environ.get("RAFTCRON_BUG") or None
if BUG is not None and BUG not in SCHEDULER_BUGS:
    raise pytest.UsageError(f"RAFTCRON_BUG={BUG}: known scheduler bugs are {sorted(SCHEDULER_BUGS)}")

NODES = [f"n{i}" for i in range(1, 6)]
node_numbers = st.integers(0, len(NODES) - 1)
# "leader" is resolved when the action runs; "busy" (the node running the longest attempt, as
# a targeted nemesis picks its victim) is resolved by the machine, so the schedule names it.
targets = st.one_of(st.just("leader"), st.just("busy"), node_numbers)
NAMES = ("a", "b", "c")

# A short lease (D = 2003 ms) makes lease expiries, and so retries, happen within a few rules;
# the default one is drawn too. Clock steps keep any two clocks within the policy's δ
# (max_offset_ms) minus a margin for the rate drift that accumulates over an example (at most
# 2 x 200 ppm x 750 s = 300 ms): the assumption the drift bound D rests on (scheduler/leases.py).
SHORT_LEASE = LeasePolicy(lease_ms=6_000, renew_every_ms=1_000, max_offset_ms=2_000)
LEASES = (SHORT_LEASE, LeasePolicy())
DRIFT_PPM_MAX = 200  # LeasePolicy.drift_rate_max
DRIFT_MARGIN_MS = 400.0

SCHEDULES = ("@every 1s", "@every 700ms", "@every 3s", "*/2 * * * * *", "1/3 * * * * *")
RUN_MS = ([50, 200], [300, 1500], [2500, 4000], [8000, 15000])  # the last outlives a lease
TAGS = (None, {"role": "batch:1"}, {"role": "web:2"}, {"role": "web"})


@st.composite
def job_specs(draw: st.DrawFn, name: str | None = None) -> dict[str, Any]:
    """A job: one of several schedule kinds, concurrency allow/forbid, retries, a fail rate,
    tag targets with or without counts; every run a simulated process of drawn length."""
    job: dict[str, Any] = {
        "name": name if name is not None else draw(st.sampled_from(NAMES)),
        "schedule": draw(st.sampled_from(SCHEDULES)),
        "executor": "sim",
        "executor_config": {"run_ms": draw(st.sampled_from(RUN_MS)),
                            "fail_rate": draw(st.sampled_from([0.0, 0.3]))},
    }
    if draw(st.booleans()):
        job["concurrency"] = "forbid"
    retries = draw(st.integers(0, 2))
    if retries:
        job["retries"] = retries
    tags = draw(st.sampled_from(TAGS))
    if tags is not None:
        job["tags"] = tags
    if draw(st.booleans()):
        job["grace_seconds"] = draw(st.sampled_from([1, 5]))
    return job


@st.composite
def long_retried_job(draw: st.DrawFn) -> dict[str, Any]:
    """A run that outlives a lease, with retries: the job whose lease expiry decides whether a
    retry may overlap it. Drawn as the first job of most examples (and shrunk towards), as the
    Raft machine draws 3 nodes first: cheap runs that exercise the lease path."""
    job = draw(job_specs("a"))
    job["executor_config"] = {"run_ms": [8000, 15000], "fail_rate": 0.0}
    job["retries"] = draw(st.integers(1, 2))
    return job


# For the hunt's figures: examples run so far in this process, and the first that failed.
EXAMPLES = {"run": 0, "first_failure": 0}


class SchedulerMachine(RuleBasedStateMachine):
    runner: Runner
    world: SchedulerWorld
    bugs: frozenset[str] = frozenset({BUG}) if BUG else frozenset()  # a test may set its own

    @initialize(seed=st.integers(0, 2**16), lease=st.sampled_from(LEASES),
                first=st.one_of(long_retried_job(), job_specs("a")),
                more=st.lists(job_specs(), max_size=2, unique_by=lambda j: j["name"]))
    def begin(self, seed: int, lease: LeasePolicy, first: dict[str, Any], more: list[dict[str, Any]]) -> None:
        self.start(seed, lease, [first, *(job for job in more if job["name"] != first["name"])])

    def start(self, seed: int, lease: LeasePolicy, jobs: list[dict[str, Any]]) -> None:
        options = SimOptions(seed=seed, nodes=len(NODES), seconds=3600.0, jobs=jobs,
                             scheduler=WorldOptions(lease=lease),
                             bugs=self.bugs, schedule=FaultSchedule())
        EXAMPLES["run"] += 1
        self.runner = Runner(options)
        world = self.runner.world
        assert world is not None
        self.world = world
        self.names = {job["name"] for job in jobs}  # the jobs as the operator's queue leaves them
        self.runner.advance(400)  # a first leader, usually

    # ---- helpers --------------------------------------------------------------------------------
    def name(self, number: int) -> str:
        return NODES[number % len(NODES)]

    def target(self, choice: str | int) -> str:
        if choice == "busy":
            return self.busy()
        return choice if isinstance(choice, str) else self.name(choice)

    def busy(self, besides: str | None = None) -> str:
        """The node (other than `besides`) whose running attempt will run longest (the simulator
        knows: a nemesis with an oracle aims at the run most likely to outlive its lease); else
        the leader."""
        running = [(run.end_true_ms, node) for node, agent in sorted(self.world.agents.items())
                   if agent.active and node != besides
                   for run in agent.runs.values() if run.state == "running"]
        return max(running)[1] if running else "leader"

    def act(self, kind: str, **fields: Any) -> None:
        self.runner.act(FaultAction(at_ms=0.0, kind=kind, **fields))

    def down(self) -> list[str]:
        return [n for n in NODES if not self.runner.cluster.nodes[n].alive]

    def paused(self) -> list[str]:
        return [n for n in NODES if self.runner.cluster.nodes[n].paused]

    def agents_down(self) -> list[str]:
        return [n for n in NODES if self.world.agent_down(n)]

    def offset(self, node: str) -> float:
        cluster = self.runner.cluster
        return cluster.nodes[node].clock.local(cluster.now) - cluster.now

    # ---- time -------------------------------------------------------------------------------------
    @rule(ms=st.one_of(st.integers(1, 3000), st.sampled_from([7_000, 15_000])))
    def advance(self, ms: int) -> None:
        self.runner.advance(ms)

    # ---- servers and agents -------------------------------------------------------------------------
    @precondition(lambda self: len(self.down()) < len(NODES))
    @rule(who=targets)
    def crash(self, who: str | int) -> None:
        self.act("crash", node=self.target(who))

    @precondition(lambda self: bool(self.down()))
    @rule(number=node_numbers)
    def restart(self, number: int) -> None:
        down = self.down()
        self.act("restart", node=down[number % len(down)])

    @rule(delay=st.integers(0, 10), downtime=st.integers(1, 2000), loss=st.sampled_from([None, 1.0]))
    def crash_after_fire(self, delay: int, downtime: int, loss: float | None) -> None:
        """The next leader to propose a Fire dies `delay` ms later (its entry maybe on the
        wire), back `downtime` ms after: the moment a new leader may fire the tick again."""
        self.act("crash_after_fire", value=float(delay), duration=float(downtime), loss=loss)

    @rule(who=targets)
    def crash_agent(self, who: str | int) -> None:
        self.act("agent_crash", node=self.target(who))

    @precondition(lambda self: bool(self.agents_down()))
    @rule(number=node_numbers)
    def restart_agent(self, number: int) -> None:
        down = self.agents_down()
        self.act("agent_restart", node=down[number % len(down)])

    @precondition(lambda self: len(self.paused()) < len(NODES))
    @rule(who=targets, duration=st.sampled_from([None, 500.0, 5000.0]))
    def pause(self, who: str | int, duration: float | None) -> None:
        self.act("pause", node=self.target(who), duration=duration)

    @precondition(lambda self: bool(self.paused()))
    @rule(number=node_numbers)
    def resume(self, number: int) -> None:
        paused = self.paused()
        self.act("resume", node=paused[number % len(paused)])

    @rule(number=node_numbers)
    def transfer_leadership(self, number: int) -> None:
        self.act("transfer", node=self.name(number))

    # ---- network ------------------------------------------------------------------------------------
    @rule(side=st.sets(targets, min_size=1, max_size=2))
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

    # ---- clocks: always within the drift bound D the lease policy assumes ---------------------------
    @rule(who=targets, delta=st.integers(-4000, 4000))
    def jump_clock(self, who: str | int, delta: int) -> None:
        """Step a clock, clamped so that it stays within δ - margin of every other clock."""
        chosen = self.target(who)
        node = self.runner.cluster.leader() if chosen == "leader" else chosen
        if node is not None:
            self.step_clock(node, delta)

    def step_clock(self, node: str, delta: int) -> int:
        """Step `node`'s clock by `delta`, clamped to δ - margin of every other clock; returns
        the step taken."""
        spread = self.world.lease.max_offset_ms - DRIFT_MARGIN_MS
        others = [self.offset(n) for n in NODES if n != node]
        offset = self.offset(node)
        low, high = max(others) - spread, min(others) + spread
        delta = round(max(low - offset, min(high - offset, delta)))
        if delta:
            self.act("clock_jump", node=node, value=float(delta))
        return delta

    @rule(ahead=st.sampled_from([0.5, 1.0]), hold=st.booleans())
    def isolate_busy_behind_leader(self, ahead: float, hold: bool = False) -> None:
        """A targeted nemesis (the lease's worst case): the leader's clock runs ahead of the busy
        node's as far as the drift bound allows (the leader's steps forward by `ahead` of the
        gap, the busy node's back by the rest, both clamped within δ - margin), and the busy
        node is cut off both ways, so it can neither renew nor hear that its lease expired."""
        leader = self.runner.cluster.leader()
        busy = self.busy(besides=leader)
        if leader is None or busy == "leader":
            return
        spread = self.world.lease.max_offset_ms - DRIFT_MARGIN_MS
        gap = spread - (self.offset(leader) - self.offset(busy))
        if gap > 0:
            forward = self.step_clock(leader, round(gap * ahead))
            self.step_clock(busy, -round(gap - forward))
        self.act("partition", sides=[[busy], ["rest"]])
        if hold:  # and keep it cut off until its lease has surely expired at the leader
            self.runner.advance(int(self.world.lease.lease_ms + 2 * self.world.lease.max_offset_ms + 1000))

    @rule(number=node_numbers, ppm=st.integers(-DRIFT_PPM_MAX, DRIFT_PPM_MAX))
    def skew_clock(self, number: int, ppm: int) -> None:
        self.act("clock_rate", node=self.name(number), value=1.0 + ppm * 1e-6)

    # ---- the operator ------------------------------------------------------------------------------
    @rule(job=job_specs())
    def put_job(self, job: dict[str, Any]) -> None:
        """Add a job, or update one (a new definition from now on)."""
        self.names.add(job["name"])
        self.act("job_put", job=job)

    @precondition(lambda self: bool(self.names))
    @rule(number=st.integers(0, len(NAMES) - 1))
    def delete_job(self, number: int) -> None:
        name = sorted(self.names)[number % len(self.names)]
        self.names.discard(name)
        self.act("job_delete", job={"name": name})

    @precondition(lambda self: bool(self.names))
    @rule(number=st.integers(0, len(NAMES) - 1), disabled=st.booleans())
    def toggle_job(self, number: int, disabled: bool) -> None:
        name = sorted(self.names)[number % len(self.names)]
        self.act("job_toggle", job={"name": name, "disabled": disabled})

    @precondition(lambda self: bool(self.names))
    @rule(number=st.integers(0, len(NAMES) - 1))
    def run_now(self, number: int) -> None:
        name = sorted(self.names)[number % len(self.names)]
        self.act("job_run_now", job={"name": name})

    # ---- properties -------------------------------------------------------------------------------
    @invariant()
    def raft_is_safe(self) -> None:
        violations = self.runner.cluster.observer.violations
        if violations:
            first = violations[0].to_json()
            self.fail(f"Raft safety: {first['kind']}: {first['detail']}")

    @invariant()
    def exactly_once(self) -> None:
        world = self.world
        violations = check_exactly_once(world.history.outcomes, world.history.finishes,
                                        world.ledger.events)
        if violations:
            self.fail(f"exactly-once: {violations[0].to_json()}")

    def teardown(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is None or getattr(self, "failed", False) or runner.cluster.observer.violations:
            return  # an invariant failed already: one error per example, not a second one
        for node in self.agents_down():
            self.act("agent_restart", node=node)
        self.act("core", sides=[list(NODES)], value=liveness_bound_ms(runner.options))
        liveness = runner.liveness
        assert liveness is not None
        while liveness["converged_after_ms"] is None and "failure" not in liveness:
            runner.advance(100)  # the phase polls itself; stop as soon as it has a verdict
        if liveness.get("failure"):
            self.fail(f"liveness (Raft): {liveness['failure']}")
        settle_ms = 30_000.0  # the operator's requests land, then past the checkers' margin
        while self.world.operations_pending and settle_ms > 0:
            runner.advance(100)
            settle_ms -= 100
        runner.advance(self.world.fire_bound_ms() + 2_000.0)
        summary = self.world.summary(runner.cluster.now)
        problems = summary["exactly_once_violations"] + summary["liveness_violations"]
        if self.world.operations_pending:
            problems.append({"kind": "operator", "detail": "requests still pending after 30 s"})
        if problems:
            self.fail(f"exactly-once or liveness at teardown: {problems[0]}")

    def fail(self, problem: str) -> None:
        """Every failure raises here, so Hypothesis sees one error to shrink, not one per
        check that noticed it (a duplicate fire is seen by the invariant and the teardown)."""
        EXAMPLES["first_failure"] = EXAMPLES["first_failure"] or EXAMPLES["run"]
        self.failed = True
        raise AssertionError(f"{self.report(problem)}\n(the first failure was example "
                             f"{EXAMPLES['first_failure']} of this process)")

    def report(self, problem: str) -> str:
        """The failure as a schedule `raftcron sim --replay` runs to this very point."""
        schedule = self.runner.replay_schedule()
        text = schedule.dumps()
        path = os.path.join(tempfile.gettempdir(), f"raftcron-scheduler-{abs(hash(text)) % 10**8}.json")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return (f"{problem}\nreplay ({len(schedule.actions)} actions): raftcron sim --replay {path}"
                f" --json\n{json.dumps(schedule.to_json())}")


_settings = settings(max_examples=4 * settings().max_examples, stateful_step_count=50, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
if BUG is not None:  # hunting: keep going until the bug shows (the run then fails, as it should);
    # no example database, so every hunt starts from scratch and the timing means something
    # and no explain phase (it reruns the minimal example many times to print coverage)
    _settings = settings(_settings, max_examples=max(settings().max_examples, 5000), database=None,
                         phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
SchedulerMachine.TestCase.settings = _settings
TestSchedulerMachine = SchedulerMachine.TestCase


# ---- replay: what the machine prints is what `raftcron sim --replay` runs ---------------------------
def replay(schedule: dict[str, Any]) -> dict[str, Any]:
    parsed = FaultSchedule.from_json(schedule)
    assert parsed.options is not None and parsed.seed is not None
    return run_simulation(SimOptions.replaying(parsed))


JOB = {"name": "a", "schedule": "@every 1s", "executor": "sim",
       "executor_config": {"run_ms": [300, 1500]}, "retries": 1}
LONG = {"name": "b", "schedule": "1/3 * * * * *", "executor": "sim", "concurrency": "forbid",
        "executor_config": {"run_ms": [8000, 15000]}, "tags": {"role": "batch:1"}}


def test_a_replayed_machine_run_is_the_same_run() -> None:
    """Job requests, agent crashes and triggered crashes replay too: same trace hash, same
    outcomes and ledger."""
    machine = SchedulerMachine()
    machine.start(seed=11, lease=SHORT_LEASE, jobs=[JOB])
    machine.advance(1500)
    machine.put_job(LONG)
    machine.crash_after_fire(2, 600, 1.0)
    machine.advance(2500)
    machine.crash_agent(3)
    machine.jump_clock("leader", 900)
    machine.partition({"leader", 4})
    machine.advance(3000)
    machine.run_now(0)
    machine.toggle_job(1, True)
    machine.heal()
    machine.skew_clock(1, -150)
    machine.advance(7000)
    machine.restart_agent(0)
    machine.put_job({**JOB, "schedule": "@every 700ms"})
    machine.delete_job(1)
    machine.advance(3000)
    machine.exactly_once()
    kinds = {a.kind for a in machine.runner.schedule.actions}
    assert {"job_put", "job_toggle", "job_run_now", "job_delete", "agent_crash", "agent_restart",
            "crash_after_fire"} <= kinds
    schedule = machine.runner.replay_schedule().to_json()
    live = machine.runner.finish(0.0)
    again = replay(json.loads(json.dumps(schedule)))
    assert again["trace_sha256"] == live["trace_sha256"]
    for name in ("ticks_due", "ticks_fired", "ticks_skipped", "ticks_missed", "runs", "leaders"):
        assert again[name] == live[name], name
    assert again["exactly_once_violations"] == live["exactly_once_violations"] == []
    assert live["runs"].get("start", 0) > 5 and len(live["leaders"]) > 1  # crash_after_fire struck


# ---- regressions: what the machine found, kept as plain tests -----------------------------------------
def test_an_update_put_behind_a_fast_leaders_fires_keeps_the_old_definitions_ticks() -> None:
    """Found by the machine (as an `invented_tick`): a leader whose clock ran 900 ms ahead
    fired tick T of the old definition; the next leader's update put is stamped before T. The
    state machine rightly starts the new definition after T, so the world's books must keep
    the old definition in force up to T, not up to the put's time."""
    job = {"name": "a", "schedule": "@every 1s", "executor": "sim",
           "executor_config": {"run_ms": [50, 200]}, "grace_seconds": 1}
    actions = [FaultAction(400.0, "clock_jump", node="n3", value=900.0),
               FaultAction(400.0, "transfer", node="n3"),
               FaultAction(9_600.0, "crash", node="leader"),
               FaultAction(9_600.0, "job_put", job={**job, "grace_seconds": 5})]
    options = SimOptions(seed=1, seconds=20, jobs=[job], schedule=FaultSchedule(actions),
                         scheduler=WorldOptions(lease=SHORT_LEASE))
    runner = Runner(options)
    summary = runner.run()
    assert runner.world is not None
    old, new = runner.world.timelines()
    put_at = getattr(new.schedule, "anchor_ms")  # an @every schedule is anchored at the put
    assert old.until_ms == new.anchor_ms > put_at  # the old definition fired past the put's time
    assert summary["liveness_violations"] == summary["exactly_once_violations"] == []


@pytest.mark.parametrize("bugs", [frozenset(), frozenset({"lease-no-drift"})])
def test_the_machine_can_reach_a_lease_no_drift_overlap(bugs: frozenset[str]) -> None:
    """Five rules the machine has: a long retried job runs; the leader's clock steps ahead (the
    clamp stops it at δ - margin = 1600 ms); the busy node is cut off for longer than a lease.
    With D the agent stops before the leader expires its lease; with D = 0 the retry starts
    elsewhere while the first attempt still runs (the search itself is slow to find this)."""
    machine = SchedulerMachine()
    machine.bugs = bugs
    machine.start(seed=3, lease=SHORT_LEASE, jobs=[{**LONG, "schedule": "@every 3s", "retries": 2}])
    machine.advance(3500)
    machine.jump_clock("leader", 4000)
    machine.partition({"busy"})
    machine.advance(15_000)
    assert max(machine.offset(n) for n in NODES) - min(machine.offset(n) for n in NODES) <= \
        SHORT_LEASE.max_offset_ms - DRIFT_MARGIN_MS
    if not bugs:
        machine.exactly_once()
        machine.teardown()
        return
    with pytest.raises(AssertionError, match="overlapping_attempts"):
        machine.exactly_once()


@pytest.mark.parametrize("lease", LEASES, ids=["short-lease", "default-lease"])
@pytest.mark.parametrize("bugs", [frozenset(), frozenset({"lease-no-drift"})], ids=["correct", "bugged"])
def test_the_targeted_lease_nemesis_reaches_the_overlap_in_three_rules(
        bugs: frozenset[str], lease: LeasePolicy) -> None:
    """`isolate_busy_behind_leader` does in one rule what the hand-built test above needs three
    for, within the same clamp (legal skew only): so the search finds lease-no-drift, and the
    correct lease rule (D) is clean under the very same steps."""
    machine = SchedulerMachine()
    machine.bugs = bugs
    machine.start(seed=1, lease=lease, jobs=[{**LONG, "schedule": "@every 3s", "retries": 2}])
    machine.advance(3500)
    machine.isolate_busy_behind_leader(1.0)
    offsets = [machine.offset(n) for n in NODES]
    assert max(offsets) - min(offsets) <= lease.max_offset_ms - DRIFT_MARGIN_MS
    if not bugs:
        machine.advance(15_000)
        machine.exactly_once()
        machine.teardown()
        return
    with pytest.raises(AssertionError, match="overlapping_attempts"):
        machine.advance(15_000)
        machine.exactly_once()


def test_an_operator_delete_right_after_start_is_not_undone_by_the_initial_put() -> None:
    """Found by the machine (operator request pending at teardown): the world's client re-put
    every initial job missing from the leader's replica, so a delete landing between two of
    its polls was undone, and the two alternated PutJob/DeleteJob forever."""
    machine = SchedulerMachine()
    machine.start(seed=65535, lease=SHORT_LEASE, jobs=[
        {"name": "a", "schedule": "@every 1s", "executor": "sim",
         "executor_config": {"run_ms": [50, 200], "fail_rate": 0.0}}])
    machine.advance(70)
    machine.crash("leader")
    machine.advance(339)
    machine.delete_job(0)
    machine.teardown()
    assert "a" not in machine.runner.cluster.nodes["n1"].sm.state.jobs
