"""No single point of failure, at the Raft level (DESIGN.md guarantee 4 without the scheduler):
if a quorum has been up and connected from t - L to t + L, a command a client submits at t is
committed by t + L, where L = max election timeout + heartbeat + max network delay.

Hypothesis generates whole fault schedules that keep one majority (the core) up and connected
all along, while the other servers crash, pause, are cut off (fully, partially, one way), and
get leadership handed to them just before they fail. Probe clients submit a command every
PROBE_EVERY_MS and resubmit to each new leader until one copy is committed, as a new cron
leader re-proposes due ticks; every probe must commit within its bound.

What the bound can honestly be (docs/testing.md, "No single point of failure"):
- L holds for a failover that takes one election round. Randomized elections have no hard
  bound: two candidates can split the vote, and a pre-vote can land on a node still inside its
  leader lease (or a restarted node keeping its no-vote promise); each such failed round costs
  up to one more max election timeout E. So a probe's bound is L + E x (failed rounds), with
  failed rounds counted from the trace as core campaigns beyond the first. A run where
  elections never fail is held to L itself.
- A leader cut off one way (it can send, not hear) or partially (it keeps some followers but
  not a quorum) still sends heartbeats, so followers do not notice; only check-quorum deposes
  it, up to 2E after the cut. Schedules with such cuts get 2E more.
The counterexamples that show L alone is too tight are kept below as regression tests.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from raft.errors import NotLeader, ProposalDropped
from raft.messages import Entry
from sim.faults import FaultAction, FaultSchedule
from sim.runner import Runner, SimOptions

PROBE_EVERY_MS = 97.0  # not a divisor of the fault grid: probes land at every phase of a failover
RUN_MS = 8_000.0
PROBE_KEY = 99  # a key no client uses
RETRY_MS = 1.0  # an ideal client: the bound is the cluster's, not the client's backoff
CLEAN_FAULTS = ("crash", "pause", "isolate")
ASYMMETRIC_FAULTS = ("partial", "one_way_out", "one_way_in")


def design_bound_ms(options: SimOptions) -> float:
    """DESIGN.md's L at the Raft level: max election timeout + heartbeat + max network delay."""
    timings, network = options.timings, options.network
    return timings.election_timeout_ms_max + timings.heartbeat_interval_ms + network.latency_ms_max


class Probes:
    """Persistent clients: probe k is submitted at its time to the current leader, and again to
    each newly elected leader until some copy is applied (a new cron leader re-proposes the
    ticks that are due; a client retries at the new leader). Also notes when core nodes start
    an election round, to count the rounds that failed."""

    def __init__(self, runner: Runner, times: list[float], core: list[str]) -> None:
        self.cluster = runner.cluster
        self.core = frozenset(core)
        self.submitted: dict[int, float] = {}
        self.committed: dict[int, float] = {}
        self.rounds_ms: list[float] = []  # start of every election round that counts (see on_event)
        self._round_terms: set[int] = set()  # the terms those rounds campaigned for
        self.transfers: list[tuple[float, float]] = []  # windows in which a leader refused writes
        self._transfer_open: dict[str, float] = {}
        self._holder: dict[int, str] = {}  # probe -> the leader holding its latest copy
        self._chain_hooks(runner)
        for number, at in enumerate(times):
            self.cluster.call_at(at, lambda n=number: self._submit(n))

    def _chain_hooks(self, runner: Runner) -> None:
        cluster = self.cluster
        previous_apply, previous_role, previous_event = cluster.on_apply, cluster.on_role, cluster.on_event

        def on_apply(node: str, lifetime: int, entry: Entry, result: object) -> None:
            if previous_apply is not None:
                previous_apply(node, lifetime, entry, result)
            self._on_apply(entry)

        def on_role(node: str, role: str, term: int) -> None:
            if previous_role is not None:
                previous_role(node, role, term)
            if role == "leader":  # not from inside the node's Ready: a moment later
                cluster.call_at(cluster.now, self._resubmit_all)

        def on_event(node: str, kind: str, fields: dict[str, object]) -> None:
            if previous_event is not None:
                previous_event(node, kind, fields)
            if kind == "campaign" and (node in self.core or not fields["pre_vote"]):
                # Core nodes' rounds, and transfer targets' (no pre-vote): a non-core node cut
                # off and campaigning in vain every timeout must not buy the cluster slack.
                self.rounds_ms.append(cluster.now)
                self._round_terms.add(int(str(fields["term"])))
            elif kind == "role" and fields["role"] == "candidate" and node not in self.core:
                # A non-core node that won its pre-vote holds a real election round, which can
                # split the vote with a core candidate's (seed 5544 below); counted once per term,
                # so a round that a core node's campaign opened is not counted twice.
                term = int(str(fields["term"]))
                if term not in self._round_terms:
                    self._round_terms.add(term)
                    self.rounds_ms.append(cluster.now)
            elif kind == "transfer":
                self._transfer_open.setdefault(node, cluster.now)
            elif node in self._transfer_open and (kind == "transfer_aborted" or kind == "role"):
                self.transfers.append((self._transfer_open.pop(node), cluster.now))

        def went_down(stop: Callable[[str], None]) -> Callable[[str], None]:
            def wrapper(node: str) -> None:  # a crash or pause ends its transfer (no event says so)
                if node in self._transfer_open:
                    self.transfers.append((self._transfer_open.pop(node), cluster.now))
                stop(node)
            return wrapper

        cluster.crash = went_down(cluster.crash)  # type: ignore[method-assign]
        cluster.pause = went_down(cluster.pause)  # type: ignore[method-assign]

        cluster.on_apply, cluster.on_role, cluster.on_event = on_apply, on_role, on_event

    def transfer_overlap_ms(self, start_ms: float, end_ms: float) -> float:
        """How long within [start, end] some leader was refusing writes for a transfer (an
        operator's action, thesis §3.10; its cost is its own, not a failover's)."""
        windows = self.transfers + [(opened, end_ms) for opened in self._transfer_open.values()]
        covered, cursor = 0.0, start_ms
        for opened, closed in sorted(windows):
            low, high = max(opened, cursor), min(closed, end_ms)
            if high > low:
                covered += high - low
                cursor = high
        return covered

    def failed_rounds(self, start_ms: float, end_ms: float) -> int:
        """Core election rounds begun in (start, end] beyond the one that succeeded."""
        begun = bisect.bisect_right(self.rounds_ms, end_ms) - bisect.bisect_right(self.rounds_ms, start_ms)
        return max(0, begun - 1)

    def _submit(self, number: int) -> None:
        self.submitted[number] = self.cluster.now
        self._propose(number)

    def _resubmit_all(self) -> None:
        for number in self.submitted:
            if number not in self.committed:
                self._propose(number)

    def _propose(self, number: int) -> None:
        cluster = self.cluster
        if number in self.committed:
            return
        leader = cluster.leader()
        if leader is None:  # nobody (reachable) leads right now: ask again very soon
            cluster.call_at(cluster.now + RETRY_MS, lambda: self._propose(number))
            return
        if self._holder.get(number) == leader:
            return  # it has a copy; a newly elected leader will get another
        data = msgpack.packb([-1 - number, "write", PROBE_KEY, number])
        try:
            cluster.propose(leader, data)
            self._holder[number] = leader
        except (NotLeader, ProposalDropped):  # e.g. a transfer in progress: it ends, or aborts
            cluster.call_at(cluster.now + RETRY_MS, lambda: self._propose(number))

    def _on_apply(self, entry: Entry) -> None:
        if not entry.data:
            return
        op_id, _f, key, _value = msgpack.unpackb(entry.data)
        if key == PROBE_KEY and op_id < 0:
            self.committed.setdefault(-1 - op_id, self.cluster.now)


# ---- schedules that keep a core majority up and connected ------------------------------------------
@dataclass(slots=True)
class CoreRun:
    options: SimOptions
    core: list[str]
    asymmetric: bool  # some cut lets a node send but not hear, or hear only some peers


@st.composite
def core_preserving_runs(draw: st.DrawFn, kinds: tuple[str, ...]) -> CoreRun:
    nodes = draw(st.sampled_from([3, 5]))
    ids = [f"n{i}" for i in range(1, nodes + 1)]
    core = sorted(draw(st.permutations(ids))[: nodes // 2 + 1])
    others = [n for n in ids if n not in core]
    schedule = FaultSchedule()
    for node in ids:
        schedule.clock_rates[node] = 1.0 + draw(st.integers(-200, 200)) * 1e-6
    at, asymmetric = 400.0, False
    for _ in range(draw(st.integers(0, 10))):
        at += draw(st.integers(1, 1500))
        if at >= RUN_MS - 500:
            break
        victim = draw(st.sampled_from(others))
        if draw(st.booleans()):  # make it the leader first: the interesting failovers
            schedule.actions.append(FaultAction(at_ms=at, kind="transfer", node=victim))
            at += draw(st.integers(0, 400))
        kind = draw(st.sampled_from(kinds))
        asymmetric |= kind in ASYMMETRIC_FAULTS
        _add_fault(draw, schedule, kind, victim, ids, at)
    seed = draw(st.integers(0, 2**16))
    options = SimOptions(seed=seed, nodes=nodes, seconds=RUN_MS / 1000.0, proposals_per_second=0.0,
                         schedule=schedule)
    return CoreRun(options, core, asymmetric)


def _add_fault(draw: st.DrawFn, schedule: FaultSchedule, kind: str, victim: str, ids: list[str],
               at: float) -> None:
    duration = float(draw(st.integers(1, 3000)))
    add = schedule.actions.append
    if kind in ("crash", "pause"):
        add(FaultAction(at_ms=at, kind=kind, node=victim, duration=duration))
        return
    if kind == "isolate":
        add(FaultAction(at_ms=at, kind="partition", sides=[[victim], ["rest"]]))
    elif kind == "partial":
        peers = [n for n in ids if n != victim]
        cut = draw(st.lists(st.sampled_from(peers), min_size=1, max_size=len(peers), unique=True))
        add(FaultAction(at_ms=at, kind="partition", sides=[[victim], sorted(cut)]))
    else:
        sides = [[victim], ["rest"]] if kind == "one_way_out" else [["rest"], [victim]]
        add(FaultAction(at_ms=at, kind="one_way", sides=sides))
    add(FaultAction(at_ms=at + duration, kind="heal"))


# ---- the property ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class ProbeResult:
    number: int
    submitted_ms: float
    took_ms: float | None  # None: never committed
    failed_rounds: int
    transfer_ms: float = 0.0

    def describe(self) -> str:
        took = "never" if self.took_ms is None else f"after {self.took_ms:.1f} ms"
        return (f"probe {self.number} submitted at {self.submitted_ms:.1f} ms committed {took} "
                f"({self.failed_rounds} failed election rounds, {self.transfer_ms:.1f} ms in transfers)")


def run_probes(run: CoreRun) -> list[ProbeResult]:
    options = run.options
    assert options.schedule is not None
    options.schedule = options.schedule.normalized()
    runner = Runner(options)
    bound = design_bound_ms(options)
    end = options.seconds * 1000.0
    times = []
    at = bound
    while at + 3 * bound <= end:  # room for the worst bound to elapse before the run ends
        times.append(at)
        at += PROBE_EVERY_MS
    probes = Probes(runner, times, run.core)
    summary = runner.run()
    assert summary["safety_violations"] == []
    results = []
    for number, submitted in probes.submitted.items():
        committed = probes.committed.get(number)
        until = committed if committed is not None else end
        results.append(ProbeResult(number, submitted, None if committed is None else committed - submitted,
                                   probes.failed_rounds(submitted, until),
                                   probes.transfer_overlap_ms(submitted, until)))
    return results


def allowed_ms(run: CoreRun, probe: ProbeResult) -> float:
    """L, plus one max election timeout per failed election round, plus the time a leader spent
    refusing writes for a transfer, plus check-quorum's 2E when a leader may have been cut off
    one way or partially."""
    election_max = run.options.timings.election_timeout_ms_max
    bound = design_bound_ms(run.options) + probe.failed_rounds * election_max + probe.transfer_ms
    if run.asymmetric:
        bound += 2 * election_max
    return bound


def late(run: CoreRun) -> list[str]:
    return [p.describe() for p in run_probes(run) if p.took_ms is None or p.took_ms > allowed_ms(run, p)]


def explain(run: CoreRun, problems: list[str]) -> str:
    assert run.options.schedule is not None
    return (f"{len(problems)} late with core {run.core} up and connected throughout "
            f"(L = {design_bound_ms(run.options)} ms, seed {run.options.seed}, {run.options.nodes} nodes): "
            f"{problems[:5]}\nschedule: {run.options.schedule.dumps()}")


@settings(max_examples=2 * settings().max_examples)
@given(core_preserving_runs(CLEAN_FAULTS))
def test_with_a_quorum_up_a_failover_takes_L_per_election_round(run: CoreRun) -> None:
    problems = late(run)
    assert not problems, explain(run, problems)


@settings(max_examples=2 * settings().max_examples)
@given(core_preserving_runs(CLEAN_FAULTS + ASYMMETRIC_FAULTS))
def test_a_leader_cut_off_one_way_is_deposed_by_check_quorum_within_2E_more(run: CoreRun) -> None:
    problems = late(run)
    assert not problems, explain(run, problems)


# ---- regression tests: counterexamples Hypothesis found, kept as they shrank ---------------------------
def core_run(seed: int, nodes: int, core: list[str], actions: list[dict[str, object]], *,
             asymmetric: bool = False) -> CoreRun:
    schedule = FaultSchedule.from_json({"actions": actions})
    options = SimOptions(seed=seed, nodes=nodes, seconds=RUN_MS / 1000.0, proposals_per_second=0.0,
                         schedule=schedule)
    return CoreRun(options, core, asymmetric)


def test_regression_a_transfer_is_not_aborted_just_after_timeout_now() -> None:
    """n3 hands leadership to n2, which is down; n2 restarts, catches up, and gets TimeoutNow
    just before the transfer's deadline. n3 used to abort 1 ms later and take writes again, so
    n2's campaign failed and its term deposed n3: probe 10 took 492 ms. Fixed in raft/node.py
    (TimeoutNow gives the target's election its own election timeout): well within L now."""
    run = core_run(475, 3, ["n1", "n3"], [
        {"at_ms": 401.0, "kind": "transfer", "node": "n2"},
        {"at_ms": 509.0, "kind": "crash", "node": "n2", "duration": 1.0},
        {"at_ms": 1170.0, "kind": "crash", "node": "n2", "duration": 364.0},
        {"at_ms": 1291.0, "kind": "transfer", "node": "n2"},
        {"at_ms": 1291.0, "kind": "crash", "node": "n2", "duration": 1.0},
    ])
    results = run_probes(run)
    assert all(p.took_ms is not None and p.took_ms <= design_bound_ms(run.options) for p in results), [
        p.describe() for p in results if p.took_ms is None or p.took_ms > design_bound_ms(run.options)]


def test_regression_a_repeated_transfer_does_not_extend_the_pause_in_writes() -> None:
    """Two transfers to the same dead target, 96 ms apart: the second used to restart the
    deadline, so writes waited 355.3 ms. A transfer already under way now ignores a retry."""
    run = core_run(0, 5, ["n1", "n2", "n3"], [
        {"at_ms": 401.0, "kind": "transfer", "node": "n4"},
        {"at_ms": 401.0, "kind": "crash", "node": "n4", "duration": 101.0},
        {"at_ms": 402.0, "kind": "crash", "node": "n4", "duration": 1.0},
        {"at_ms": 497.0, "kind": "transfer", "node": "n4"},
        {"at_ms": 497.0, "kind": "crash", "node": "n4", "duration": 1.0},
    ])
    results = run_probes(run)
    assert max(p.took_ms or math.inf for p in results) <= design_bound_ms(run.options)


def test_the_design_bound_alone_is_too_tight_after_a_split_vote() -> None:
    """The leader n1 crashes; n2 and n3 time out within a millisecond, both win their pre-votes
    (which bind nobody), and split the vote, while the restarted n1 still keeps its promise
    not to vote for a minimum election timeout. A second round wins: 445.6 ms > L = 355 ms.
    Randomized elections have no hard bound; each failed round may cost one more timeout."""
    run = core_run(4000, 3, ["n2", "n3"], [
        {"at_ms": 653.0, "kind": "crash", "node": "n1", "duration": 1.0},
        {"at_ms": 979.0, "kind": "crash", "node": "n1", "duration": 1.0},
        {"at_ms": 1295.0, "kind": "partition", "sides": [["n1"], ["rest"]]},
        {"at_ms": 1296.0, "kind": "heal"},
        {"at_ms": 2714.0, "kind": "transfer", "node": "n1"},
        {"at_ms": 2974.0, "kind": "crash", "node": "n1", "duration": 77.0},
    ])
    results = run_probes(run)
    beyond = [p for p in results if p.took_ms is not None and p.took_ms > design_bound_ms(run.options)]
    assert beyond and all(p.failed_rounds >= 1 for p in beyond), [p.describe() for p in results]
    assert all(p.took_ms is not None and p.took_ms <= allowed_ms(run, p) for p in results)


def test_the_design_bound_alone_is_too_tight_for_a_leader_that_cannot_hear() -> None:
    """The leader n3 can still send but no longer receive: its heartbeats keep n1 and n2 loyal,
    so nobody notices until check-quorum deposes it, up to 2E later; then one election. The
    first probe after the cut takes 509.8 ms > L, with no failed election round: only the
    asymmetric allowance (2E) covers it."""
    run = core_run(0, 3, ["n1", "n2"], [
        {"at_ms": 401.0, "kind": "one_way", "sides": [["rest"], ["n3"]]},
        {"at_ms": 721.0, "kind": "heal"},
    ], asymmetric=True)
    results = run_probes(run)
    beyond = [p for p in results if p.took_ms is not None and p.took_ms > design_bound_ms(run.options)]
    assert beyond and all(p.failed_rounds == 0 for p in beyond), [p.describe() for p in results]
    assert all(p.took_ms is not None and p.took_ms <= allowed_ms(run, p) for p in results)


def test_the_design_bound_alone_is_too_tight_after_a_split_with_a_non_core_candidate() -> None:
    """The leader n5 (not in the core) crashes for 23 ms. In term 6 the core's n2 and the
    restarted n5 both win their pre-votes and split the vote (n1 for n2, n3 for n5); n5 wins
    term 7: probe 27 takes 358.9 ms > L = 355 ms. The round of term 6 failed, but only n2's
    campaign was a core round, so it used to count as the one that succeeded and the probe
    was held to L itself. Found by Hypothesis on 2026-11-24."""
    run = core_run(5544, 5, ["n1", "n2", "n3"], [
        {"at_ms": 770.0, "kind": "crash", "node": "n4", "duration": 638.0},
        {"at_ms": 818.0, "kind": "partition", "sides": [["n5"], ["rest"]]},
        {"at_ms": 1205.0, "kind": "heal"},
        {"at_ms": 1567.0, "kind": "crash", "node": "n4", "duration": 489.0},
        {"at_ms": 2101.0, "kind": "transfer", "node": "n4"},
        {"at_ms": 2247.0, "kind": "crash", "node": "n4", "duration": 751.0},
        {"at_ms": 2548.0, "kind": "transfer", "node": "n5"},
        {"at_ms": 2948.0, "kind": "crash", "node": "n5", "duration": 23.0},
    ])
    results = run_probes(run)
    beyond = [p for p in results if p.took_ms is not None and p.took_ms > design_bound_ms(run.options)]
    assert beyond and all(p.failed_rounds == 1 for p in beyond), [p.describe() for p in results]
    assert all(p.took_ms is not None and p.took_ms <= allowed_ms(run, p) for p in results)


def test_a_bound_tighter_than_an_election_timeout_is_violated_by_a_real_failover() -> None:
    """The probes' check can fail: the leader n3 is cut off (no connection closes, so the
    followers wait out an election timeout), and a probe written just after the cut commits
    within its allowed time but not within one 250 ms shorter (less than E_min = 150 ms of
    slack left), so a cluster that waited longer than the bound assumes would be reported."""
    run = core_run(1, 3, ["n1", "n2"], [
        {"at_ms": 401.0, "kind": "transfer", "node": "n3"},
        {"at_ms": 800.0, "kind": "partition", "sides": [["n3"], ["rest"]]},
    ])
    results = run_probes(run)
    assert all(p.took_ms is not None and p.took_ms <= allowed_ms(run, p) for p in results)
    tight = [p.describe() for p in results if p.took_ms is not None and p.took_ms > allowed_ms(run, p) - 250.0]
    assert tight, [p.describe() for p in results]
