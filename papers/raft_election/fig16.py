"""Figure 16 of the Raft paper, reproduced in the simulator: how long a 5-server cluster is
without a leader after the leader crashes, for several election-timeout ranges.

One *trial* is one independent, seeded run of a fresh cluster:

1. Five servers start; one is told to campaign at once (a `TimeoutNow`), so the first election
   costs one round trip even for 150-150 ms, where a natural first election is itself a
   multi-second split-vote storm that the paper did not measure.
2. The leader sends heartbeats every `min timeout / 2` ms (the paper's heartbeat interval).
   After it has settled, right after one heartbeat broadcast at `T_hb`, two followers are cut
   off from the leader for an instant while the leader appends one entry: the entry reaches the
   other two followers only. The heartbeat at `T_hb` reached everyone, so all four followers'
   timers were just reset together (the paper's "synchronised heartbeat broadcast just before
   exiting"), and two of the four survivors now have a shorter log, so they cannot win an
   election (the paper's "2 of the 4 survivors ineligible").
3. The leader crashes at `T_hb + U(0, heartbeat interval)` and is never restarted.
4. Downtime is measured from the crash until the new leader's first heartbeat (AppendEntries of
   its term) has been received by all three other survivors ("all": the paper's wording, "the
   other servers received the new leader's first heartbeat"); the time when it had reached a
   quorum (two others plus the leader itself, `sim.runner.FailoverMeter`'s definition) is
   recorded too.

The network's one-way latency is uniform in [5, 10] ms, so a request and its reply take 15 ms on
average: the paper's "broadcast time" of about 15 ms (a network round trip plus a disk write on
LogCabin's hardware; our simulated disk is instantaneous, so the whole 15 ms is in the network).

Every trial's seed derives from (base seed, timeout range, trial number) alone, so the results do
not depend on the number of worker processes, and a variant (`+prevote`, `+loss5`) of a range is
run on the same seeds as the range itself (common random numbers: the comparison is paired).
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from raft.messages import AppendEntries, Message, TimeoutNow
from raft.node import RaftNode
from raft.progress import Role
from sim.cluster import RaftTimings, SimCluster
from sim.network import NetworkOptions
from sim.trace import NullTrace, TraceWriter

NODE_IDS = ("n1", "n2", "n3", "n4", "n5")
LATENCY_MS_DEFAULT = (7.0, 8.0)
SIM_MS_MAX_DEFAULT = 300_000.0  # per trial; the paper's slowest 150-150 trial took ~528 s
TRIALS_DEFAULT = 1000
TRIALS_NO_RANDOMNESS_DEFAULT = 100  # as the paper: a 150-150 trial is ~20 s of split votes
PROPOSE_AFTER_HEARTBEAT_MS = 0.001  # the lagging entry is appended just after the broadcast
LAGGING_ENTRY = msgpack.packb([1, "write", 0, 16])  # a KVStateMachine command: [op, f, key, value]


@dataclass(frozen=True, slots=True)
class Fig16Config:
    """One line of the figure: a timeout range and, for the extras, what else differs."""

    timeout_ms_min: float
    timeout_ms_max: float
    pre_vote: bool = False
    loss_probability: float = 0.0
    figure2_timer: bool = False  # an ablation: see `_keep_timer_on_step_down`

    @property
    def range_name(self) -> str:
        return f"{self.timeout_ms_min:g}-{self.timeout_ms_max:g}"

    @property
    def name(self) -> str:
        suffix = "+prevote" if self.pre_vote else ""
        if self.loss_probability:
            suffix += f"+loss{self.loss_probability * 100:g}"
        if self.figure2_timer:
            suffix += "+fig2timer"
        return self.range_name + suffix

    @property
    def heartbeat_interval_ms(self) -> float:
        return self.timeout_ms_min / 2.0

    @staticmethod
    def parse(text: str) -> Fig16Config:
        """`150-300`, `150-300+prevote`, `150-300+loss5`, `150-300+fig2timer`, or several."""
        range_text, *flags = text.strip().split("+")
        low_text, _, high_text = range_text.partition("-")
        try:
            low, high = float(low_text), float(high_text or low_text)
        except ValueError:
            raise ValueError(f"not a timeout range: {text!r} (expected e.g. 150-300)") from None
        if not 0 < low <= high:
            raise ValueError(f"need 0 < MIN <= MAX in {text!r}")
        pre_vote, loss, figure2_timer = False, 0.0, False
        for flag in flags:
            if flag == "prevote":
                pre_vote = True
            elif flag == "fig2timer":
                figure2_timer = True
            elif flag.startswith("loss") and _is_number(flag[4:]):
                loss = float(flag[4:]) / 100.0
            else:
                raise ValueError(f"unknown variant {flag!r} in {text!r} (known: +prevote, +lossN, +fig2timer)")
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be within [0, 100) percent in {text!r}")
        return Fig16Config(low, high, pre_vote, loss, figure2_timer)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


RANDOMNESS_SERIES = tuple(Fig16Config(150, high) for high in (150, 151, 155, 175, 200, 300))
SCALE_SERIES = tuple(Fig16Config(low, 2 * low) for low in (12, 25, 50, 100, 150))
BASE_CONFIGS = RANDOMNESS_SERIES + SCALE_SERIES[:-1]  # 150-300 is in both series: run it once
# `--extras`: what the paper did not measure. Pre-vote (thesis §9.6) with check-quorum still
# off; 5% message loss from the synchronising heartbeat on; and the `+fig2timer` ablation, which
# explains most of the gap between our baseline and the paper (see README.md).
EXTRA_RANGES = ((150, 155), (150, 175), (150, 300), (12, 24), (50, 100))
EXTRA_VARIANTS: tuple[tuple[bool, float, bool], ...] = (  # (pre_vote, loss_probability, figure2_timer)
    (True, 0.0, False),
    (False, 0.05, False),
    (False, 0.0, True),
)
EXTRA_CONFIGS = tuple(
    Fig16Config(low, high, pre_vote, loss, figure2_timer)
    for (low, high) in EXTRA_RANGES
    for (pre_vote, loss, figure2_timer) in EXTRA_VARIANTS
)

# The paper's numbers, from raft-anchors §2: the text states 287 ms (150-155 median), 513 ms
# (150-200 max), 35 ms and 152 ms (12-24 mean and max); the rest was read off the thesis's
# figure paths. Milliseconds; None where the figure gives nothing.
PAPER_MS: dict[str, dict[str, float | None]] = {
    "150-150": {"median": 41_000, "mean": 55_000, "p90": 85_000, "p99": None, "max": 528_000},
    "150-151": {"median": 1199, "mean": 1537, "p90": 3132, "p99": 6013, "max": 8231},
    "150-155": {"median": 287, "mean": 345, "p90": 609, "p99": 1242, "max": 2143},
    "150-175": {"median": 141, "mean": 164, "p90": 291, "p99": 467, "max": 610},
    "150-200": {"median": 147, "mean": 156, "p90": 194, "p99": 352, "max": 512},
    "150-300": {"median": 171, "mean": 181, "p90": 244, "p99": 415, "max": 603},
    "12-24": {"median": 30, "mean": 34.7, "p90": 53, "p99": 87, "max": 152},
    "25-50": {"median": 43, "mean": 48, "p90": 74, "p99": 119, "max": 276},
    "50-100": {"median": 67, "mean": 71, "p90": 96, "p99": 169, "max": 253},
    "100-200": {"median": 120, "mean": 126, "p90": 166, "p99": 277, "max": 335},
}
PAPER_TRIALS = {"150-150": 100}


@dataclass(frozen=True, slots=True)
class TrialOptions:
    latency_ms_min: float = LATENCY_MS_DEFAULT[0]
    latency_ms_max: float = LATENCY_MS_DEFAULT[1]
    sim_ms_max: float = SIM_MS_MAX_DEFAULT


@dataclass(frozen=True, slots=True)
class Trial:
    """One failover. `capped`: no leader reached everyone within `sim_ms_max` (the downtime is
    then a lower bound, `sim_ms_max` minus the setup)."""

    downtime_ms: float  # crash -> new leader's first heartbeat received by all 3 other survivors
    downtime_quorum_ms: float  # ... by a quorum (2 others + the leader)
    elections: int  # terms used: 1 means the first election after the crash succeeded
    eligible: int  # survivors whose log could win an election at the crash (2 by construction)
    first_campaign_eligible: bool  # the first survivor to time out could win
    sync_spread_ms: float  # spread of the survivors' last contact with the old leader
    crash_phase: float  # (crash - last heartbeat broadcast) / heartbeat interval, in [0, 1)
    capped: bool


def trial_seed(seed: int, config: Fig16Config, index: int) -> int:
    """A trial's seed: a function of the range and trial number only (not of the variant, the
    worker, or the order of execution)."""
    digest = hashlib.sha256(f"fig16:{seed}:{config.range_name}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class _TrialRun:
    """The state of one trial while it runs; see the module docstring for the steps."""

    def __init__(self, config: Fig16Config, seed: int, options: TrialOptions,
                 trace: TraceWriter | None = None) -> None:
        self.config = config
        self.options = options
        self.rng = random.Random(seed)  # the trial's own choices: first candidate, laggers, crash
        timings = RaftTimings(config.timeout_ms_min, config.timeout_ms_max, config.heartbeat_interval_ms,
                              pre_vote=config.pre_vote, check_quorum=False)
        network = NetworkOptions(latency_ms_min=options.latency_ms_min, latency_ms_max=options.latency_ms_max)
        self.cluster = SimCluster(list(NODE_IDS), seed=self.rng.getrandbits(64), timings=timings,
                                  network=network, trace=trace or NullTrace())
        self.cluster.on_role = self._on_role
        if config.figure2_timer:
            for node in self.cluster.nodes.values():
                assert node.raft is not None
                _keep_timer_on_step_down(node.raft)
        self.elected_at: dict[str, float] = {}
        self.crashed: str | None = None
        self.crash_ms = math.nan
        self.crash_term = 0
        self.survivors: frozenset[str] = frozenset()
        self.heard: dict[tuple[int, str], set[str]] = {}
        self.quorum_ms: float | None = None
        self.all_ms: float | None = None
        self.new_term = 0
        self.eligible: frozenset[str] = frozenset()
        self.first_campaigner: str | None = None
        self.heartbeat_at = math.nan
        self.leader_heard_ms: dict[str, float] = {}  # follower -> last AppendEntries from the old leader
        self.sync_spread_ms = math.nan
        self.attempt = 0
        self.setup_failed = False
        self.cluster.on_deliver = self._on_deliver

    def _on_role(self, node: str, role: str, term: int) -> None:
        if role == "leader":
            self.elected_at[node] = self.cluster.now
        elif self.crashed is not None and self.first_campaigner is None and role in ("candidate", "pre-candidate"):
            self.first_campaigner = node

    def run(self) -> Trial:
        cluster = self.cluster
        while self.crashed is None:
            self._plan_crash()
            while self.crashed is None and not self.setup_failed:
                cluster.run_until(cluster.now + self.config.heartbeat_interval_ms)
        end_ms = self.options.sim_ms_max
        step_ms = 4.0 * self.config.timeout_ms_max
        while self.all_ms is None and cluster.now < end_ms:
            cluster.run_until(min(end_ms, cluster.now + step_ms))
        return self._result(end_ms)

    def _plan_crash(self) -> None:
        """Schedule steps 2 and 3. If the leader is deposed before the crash (12-24 ms timeouts
        sit below the 15 ms broadcast time, so a slow heartbeat can cost the leader its term),
        the plan is dropped and made again for the next leader."""
        leader, heartbeat_at = self._settle()
        self.attempt += 1
        self.setup_failed = False
        attempt = self.attempt
        heartbeat_ms = self.config.heartbeat_interval_ms
        followers = [n for n in NODE_IDS if n != leader]
        laggers = set(self.rng.sample(followers, 2))
        margin_ms = 2.0 * PROPOSE_AFTER_HEARTBEAT_MS
        crash_after_ms = margin_ms + self.rng.random() * (heartbeat_ms - 2.0 * margin_ms)
        cluster = self.cluster
        if self.config.loss_probability:
            cluster.call_at(heartbeat_at - PROPOSE_AFTER_HEARTBEAT_MS, self._start_loss)
        cluster.call_at(heartbeat_at + PROPOSE_AFTER_HEARTBEAT_MS,
                        lambda: self._append_past(attempt, leader, laggers))
        cluster.call_at(heartbeat_at + crash_after_ms, lambda: self._crash(attempt, leader))
        self.heartbeat_at = heartbeat_at

    def _settle(self) -> tuple[str, float]:
        """Elect a leader, let it settle (its no-op acknowledged, followers in step), and return
        it with the time of one of its coming heartbeat broadcasts. Its heartbeats go out at
        `elected + k * heartbeat interval`: the leader's timer fires exactly on time here."""
        cluster = self.cluster
        first = self.rng.choice(NODE_IDS)
        other = next(n for n in NODE_IDS if n != first)
        kick = TimeoutNow(src=other, dst=first, term=0)
        cluster.with_node(first, lambda raft: raft.step(kick, cluster.now))
        heartbeat_ms = self.config.heartbeat_interval_ms
        settle_ms = 4.0 * self.options.latency_ms_max + 2.0 * heartbeat_ms
        while cluster.now < self.options.sim_ms_max:
            cluster.run_until(cluster.now + heartbeat_ms / 2.0)
            leader = cluster.leader()
            if leader is None or cluster.now - self.elected_at[leader] < settle_ms:
                continue
            elected_ms = self.elected_at[leader]
            beats = math.ceil((cluster.now + heartbeat_ms / 4.0 - elected_ms) / heartbeat_ms)
            return leader, elected_ms + beats * heartbeat_ms
        raise AssertionError("no leader settled within the simulated time cap")

    def _start_loss(self) -> None:
        self.cluster.network.options.loss_probability = self.config.loss_probability

    def _append_past(self, attempt: int, leader: str, laggers: set[str]) -> None:
        """The leader appends one entry that the laggers never get (their copies are dropped;
        the next heartbeat round, which would resend it, comes after the crash)."""
        if attempt != self.attempt or self.setup_failed:
            return
        if self.cluster.leader() != leader:
            self.setup_failed = True
            return
        network = self.cluster.network
        network.partition({leader}, laggers, one_way=True)
        self.cluster.propose(leader, LAGGING_ENTRY)
        network.heal()

    def _crash(self, attempt: int, leader: str) -> None:
        if attempt != self.attempt or self.setup_failed:
            return
        cluster = self.cluster
        if cluster.leader() != leader:
            self.setup_failed = True
            return
        raft = cluster.nodes[leader].raft
        assert raft is not None
        self.crash_term = raft.term
        self.crashed, self.crash_ms = leader, cluster.now
        self.survivors = frozenset(n for n in NODE_IDS if n != leader)
        cluster.crash(leader)
        # Messages the leader sent before it crashed still arrive: look once they have landed.
        cluster.call_at(cluster.now + self.options.latency_ms_max + 0.001, self._census)

    def _census(self) -> None:
        """Check the setup: who can win an election, and how synchronised the timers are."""
        self.eligible = _eligible(self.cluster, self.survivors)
        heard = [self.leader_heard_ms.get(n, -math.inf) for n in self.survivors]
        self.sync_spread_ms = max(heard) - min(heard)

    def _on_deliver(self, message: Message) -> None:
        """Watch the new leader's heartbeats arrive (the measurement, `FailoverMeter`-style)."""
        if not isinstance(message, AppendEntries):
            return
        if self.crashed is None or message.term == self.crash_term:
            self.leader_heard_ms[message.dst] = self.cluster.now  # for the synchronisation check
            return
        if message.term < self.crash_term:
            return
        key = (message.term, message.src)
        heard = self.heard.setdefault(key, set())
        heard.add(message.dst)
        elapsed_ms = self.cluster.now - self.crash_ms
        if self.quorum_ms is None and len(heard) >= 2:  # two others and the leader: 3 of 5
            self.quorum_ms = elapsed_ms
        if self.all_ms is None and heard >= self.survivors - {message.src}:
            self.all_ms = elapsed_ms
            self.new_term = message.term

    def _result(self, end_ms: float) -> Trial:
        assert self.crashed is not None, "the simulated time cap ended the trial before the crash"
        capped = self.all_ms is None
        bound_ms = end_ms - self.crash_ms
        downtime_ms = bound_ms if self.all_ms is None else self.all_ms
        quorum_ms = bound_ms if self.quorum_ms is None else self.quorum_ms
        assert quorum_ms <= downtime_ms
        violations = self.cluster.observer.violations
        assert not violations, f"Raft safety violated in a Figure 16 trial: {violations[0]}"
        elections = (self.new_term - self.crash_term) if not capped else 0
        phase = (self.crash_ms - self.heartbeat_at) / self.config.heartbeat_interval_ms
        return Trial(round(downtime_ms, 3), round(quorum_ms, 3), elections, len(self.eligible),
                     self.first_campaigner in self.eligible, round(self.sync_spread_ms, 3), round(phase, 4),
                     capped)


def _keep_timer_on_step_down(raft: RaftNode) -> None:
    """The `+fig2timer` ablation: make one node keep its election deadline when it adopts a
    higher term or loses an election, as Figure 2 of the paper and LogCabin do (LogCabin's
    `stepDown` re-arms the timer only for a leader), instead of drawing a fresh timeout as
    raftcron's core and etcd-raft do. Figure 2 resets the timer only on an AppendEntries from
    the current leader, on granting a vote, and on starting an election.

    This reaches into the core's private state, on purpose and only for this experiment: it
    patches one node object (never the class), so nothing else in the process is affected. If
    the core is refactored, the assertions below fail loudly rather than measure something else.
    """
    original = raft._become_follower
    assert hasattr(raft, "_election_deadline"), "RaftNode changed: update the +fig2timer ablation"

    def become_follower(term: int, leader: str | None, *, reason: str, keep_timer: bool = False) -> None:
        deadline = raft._election_deadline
        keep = reason in ("higher term", "lost election") and raft.role is not Role.LEADER
        original(term, leader, reason=reason, keep_timer=keep_timer)
        if keep and math.isfinite(deadline):
            raft._election_deadline = deadline

    raft._become_follower = become_follower  # type: ignore[method-assign]


def _eligible(cluster: SimCluster, survivors: Iterable[str]) -> frozenset[str]:
    """Survivors whose log is at least as up to date as every other survivor's (§5.4.1), once
    the entries in flight have landed: an entry sent before the crash still arrives."""
    positions = {}
    for node_id in survivors:
        raft = cluster.nodes[node_id].raft
        assert raft is not None
        positions[node_id] = (raft.last_term, raft.last_index)
    best = max(positions.values())
    return frozenset(node for node, position in positions.items() if position == best)


def run_trial(config: Fig16Config, seed: int, options: TrialOptions = TrialOptions(),
              trace: TraceWriter | None = None) -> Trial:
    """One trial; pass a `TraceWriter` to keep its trace (for `raftcron plot timeline`)."""
    return _TrialRun(config, seed, options, trace).run()


# ---- many trials -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Fig16Options:
    configs: Sequence[Fig16Config] = BASE_CONFIGS
    trials: int | None = None  # None: 1000 a line, 100 for a range without randomness

    def trials_for(self, config: Fig16Config) -> int:
        if self.trials is not None:
            return self.trials
        if config.timeout_ms_min == config.timeout_ms_max:
            return TRIALS_NO_RANDOMNESS_DEFAULT
        return TRIALS_DEFAULT
    seed: int = 0
    workers: int = 2
    trial: TrialOptions = field(default_factory=TrialOptions)


def _run_task(task: tuple[Fig16Config, int, TrialOptions]) -> Trial:
    config, seed, trial_options = task
    return run_trial(config, seed, trial_options)


def run_trials(options: Fig16Options, progress: Callable[[int, int], None] | None = None
               ) -> dict[str, list[Trial]]:
    """All trials of all configurations, in trial order per configuration."""
    tasks: list[tuple[Fig16Config, int, TrialOptions]] = []
    owners: list[tuple[str, int]] = []
    # Slowest lines first (no randomness means long split-vote storms), so workers end together.
    for config in sorted(options.configs, key=lambda c: c.timeout_ms_max - c.timeout_ms_min):
        for index in range(options.trials_for(config)):
            tasks.append((config, trial_seed(options.seed, config, index), options.trial))
            owners.append((config.name, index))
    results: dict[str, list[Trial | None]] = {c.name: [None] * options.trials_for(c) for c in options.configs}
    done = 0
    for position, trial in _map(tasks, options.workers):
        name, index = owners[position]
        results[name][index] = trial
        done += 1
        if progress is not None:
            progress(done, len(tasks))
    return {name: [t for t in trials if t is not None] for name, trials in results.items()}


def _map(tasks: list[tuple[Fig16Config, int, TrialOptions]], workers: int) -> Iterable[tuple[int, Trial]]:
    if workers <= 1 or len(tasks) < 50:
        for position, task in enumerate(tasks):
            yield position, _run_task(task)
        return
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with context.Pool(workers) as pool:
        # imap keeps the order; small chunks keep both workers busy through the slow lines.
        yield from enumerate(pool.imap(_run_task, tasks, chunksize=8))


# ---- statistics ---------------------------------------------------------------------------------
def percentile(values_sorted: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    assert values_sorted, "no values"
    assert 0.0 <= fraction <= 1.0
    position = fraction * (len(values_sorted) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values_sorted) - 1)
    return values_sorted[low] + (values_sorted[high] - values_sorted[low]) * (position - low)


def summarize_values(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(percentile(ordered, 0.5), 1),
        "mean_ms": round(sum(ordered) / len(ordered), 1),
        "p90_ms": round(percentile(ordered, 0.9), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
        "max_ms": round(ordered[-1], 1),
        "min_ms": round(ordered[0], 1),
    }


def summarize(config: Fig16Config, trials: Sequence[Trial]) -> dict[str, Any]:
    """One configuration's line of `--json`: the documented keys are `trials`, `median_ms`,
    `mean_ms`, `p90_ms`, `p99_ms`, `max_ms` (all survivors heard the new leader), and the same
    statistics under `quorum` (a quorum heard it)."""
    summary: dict[str, Any] = {
        "config": config.name,
        "timeout_ms": [config.timeout_ms_min, config.timeout_ms_max],
        "heartbeat_ms": config.heartbeat_interval_ms,
        "pre_vote": config.pre_vote,
        "loss": config.loss_probability,
        "trials": len(trials),
    }
    summary.update(summarize_values([t.downtime_ms for t in trials]))
    summary["quorum"] = summarize_values([t.downtime_quorum_ms for t in trials])
    finished = [t for t in trials if not t.capped]
    summary["capped"] = len(trials) - len(finished)
    summary["elections_mean"] = round(sum(t.elections for t in finished) / len(finished), 3) if finished else None
    summary["first_election_won"] = round(sum(1 for t in finished if t.elections == 1) / len(trials), 4)
    summary["first_campaign_eligible"] = round(sum(1 for t in trials if t.first_campaign_eligible) / len(trials), 4)
    summary["eligible_survivors"] = sorted({t.eligible for t in trials})
    paper = PAPER_MS.get(config.name)
    if paper is not None:
        summary["paper"] = {f"{k}_ms": v for k, v in paper.items()}
        summary["paper"]["trials"] = PAPER_TRIALS.get(config.name, 1000)
    return summary


def run(options: Fig16Options, progress: Callable[[int, int], None] | None = None
        ) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Run every trial; return the JSON summary and each configuration's downtimes (ms)."""
    started = time.perf_counter()
    results = run_trials(options, progress)
    wall_s = time.perf_counter() - started
    by_name = {c.name: c for c in options.configs}
    summary = {
        "figure": "Raft paper Figure 16 (ATC'14 Figure 14): leader failover downtime",
        "metric": "ms from the leader's crash until all 3 other survivors received the new leader's "
                  "first heartbeat; `quorum`: until 2 of them had (3 of 5 with the leader)",
        "seed": options.seed,
        "nodes": len(NODE_IDS),
        "latency_ms": [options.trial.latency_ms_min, options.trial.latency_ms_max],
        "sim_ms_max": options.trial.sim_ms_max,
        "workers": options.workers,
        "wall_seconds": round(wall_s, 2),
        "code": code_version(),
        "configs": {name: summarize(by_name[name], trials) for name, trials in results.items()},
    }
    downtimes = {name: [t.downtime_ms for t in trials] for name, trials in results.items()}
    return summary, downtimes


def code_version() -> dict[str, Any] | None:
    """The git commit the numbers came from (and whether the tree had local changes): Raft or
    simulator changes move the numbers, so a results file should say which code made it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", "raft", "sim"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "raft_or_sim_modified": bool(status.strip())}


def slowest_trial(options: Fig16Options, config: Fig16Config, downtimes: Sequence[float]) -> tuple[int, int]:
    """(trial number, seed) of a configuration's longest outage, to replay it with a trace."""
    index = max(range(len(downtimes)), key=lambda i: downtimes[i])
    return index, trial_seed(options.seed, config, index)
