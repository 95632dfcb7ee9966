"""Swarm testing (TigerBeetle's VOPR, FoundationDB's swarm): each seed draws *which* faults are
on and *how often*, plus the environment they hit, so different seeds explore very different
runs instead of the same mild mix.

Rules:
  1. Everything here is a pure function of the seed (`random.Random("raftcron-swarm:<seed>")`,
     independent of the cluster's own sub-seeds), and the result is plain data: a `SimOptions`
     and a `FaultSchedule` that `raftcron sim --replay` runs without this module.
  2. Two phases, as in the VOPR: a safety phase with arbitrary faults (a majority may be down
     or cut off), then a liveness phase (`core` action) that heals a majority core and requires
     it to converge within a stated bound, or the run fails with exit 128.
  3. Targets that only exist at run time (`leader`, "the next node to propose") are symbolic and
     resolved deterministically by the runner; the trace records the concrete node.

Fault kinds and what each draws:
  crash     a node or the leader dies, for 1-50 ms (a "bounce", which is what loses an
            unsynced vote) or 0.1-5 s; or a *triggered* crash: the next node to propose, or the
            next node to win an election, dies 0-latency ms later (Figure 8: leaders dying with
            entries on a minority).
  pause     a node or the leader stops (SIGSTOP) for 50 ms-3 s; messages wait for it.
  partition isolate a node or the leader, split minority/majority, cut one node from some
            peers only (partial), or block one direction only (one-way); healed 0.1-5 s later.
  skew      clock jumps of up to +-2 s, and every clock drifts within +-200 ppm.
  loss/dup  bursts of 5-50 % message loss or duplication for 0.1-3 s.
  transfer  leadership transfer to a random node.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import TYPE_CHECKING, Any

from sim.faults import FAULT_KINDS, FaultAction, FaultSchedule

if TYPE_CHECKING:
    from sim.runner import SimOptions

GAP_MS_MIN, GAP_MS_MAX = 200.0, 5000.0  # mean gap between two faults of one kind, per seed
FAULTS_START_MS = 300.0
CLOCK_JUMP_MS_MAX = 2000.0
DRIFT_PPM_MAX = 200.0
LIVENESS_ELECTIONS = 20  # convergence bound: this many election timeouts, plus the largest clock jump
LATENCY_PROFILES_MS = ((1.0, 5.0), (1.0, 10.0), (2.0, 20.0), (5.0, 50.0))
TIMEOUT_PER_LATENCY = 10.0  # the minimum election timeout is at least this many max one-way delays


@dataclasses.dataclass(slots=True)
class SwarmProfile:
    """What one seed drew; printed in the summary so a reader sees what kind of run it was."""

    kinds: list[str]
    mean_gap_ms: dict[str, float]
    liveness_bound_ms: float | None
    environment: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kinds": self.kinds, "mean_gap_ms": {k: round(v, 1) for k, v in self.mean_gap_ms.items()},
                "liveness_bound_ms": self.liveness_bound_ms, "environment": self.environment}


def liveness_bound_ms(options: SimOptions) -> float:
    """How long a healed majority may take to agree: elections can split and clocks may have
    jumped back by up to CLOCK_JUMP_MS_MAX, which delays a node's election timer that much."""
    return CLOCK_JUMP_MS_MAX + LIVENESS_ELECTIONS * options.timings.election_timeout_ms_max


def draw_swarm(options: SimOptions, *, environment: bool) -> tuple[SimOptions, SwarmProfile]:
    """The options of one swarm run: `options` with (if `environment`) network, Raft knobs and
    client mix drawn, and a fault schedule drawn (kinds from `options.faults`, or drawn)."""
    rng = random.Random(f"raftcron-swarm:{options.seed}")
    drawn: dict[str, Any] = {}
    if environment:
        options, drawn = _draw_environment(rng, options)
    ids = [f"n{i}" for i in range(1, options.nodes + 1)]
    kinds = sorted(options.faults) if options.faults is not None else _draw_kinds(rng)
    gaps = {kind: _log_uniform(rng, GAP_MS_MIN, GAP_MS_MAX) for kind in kinds}
    end_ms = options.seconds * 1000.0
    bound = liveness_bound_ms(options)
    liveness = end_ms >= 2.0 * bound and options.nodes >= 1
    faults_end = end_ms - bound if liveness else end_ms * 0.9
    schedule = FaultSchedule(seed=options.seed)
    if "skew" in kinds:
        for node in ids:
            schedule.clock_rates[node] = 1.0 + rng.uniform(-DRIFT_PPM_MAX, DRIFT_PPM_MAX) * 1e-6
    for kind in kinds:
        _add_kind(schedule, rng, kind, ids, gaps[kind], faults_end, options)
    schedule.actions.sort(key=lambda a: a.at_ms)
    if liveness:
        core = sorted(rng.sample(ids, len(ids) // 2 + 1))
        schedule.actions.append(FaultAction(at_ms=_ms(faults_end), kind="core", sides=[core], value=bound))
    if environment and "skew" not in kinds and rng.random() < 0.3:
        drawn["lease_reads"] = True  # leases assume no clock jumps: only then are they fair game
        options = dataclasses.replace(options, lease_reads=True)
    profile = SwarmProfile(kinds, gaps, bound if liveness else None, drawn)
    options = dataclasses.replace(options, schedule=schedule.normalized(), swarm=False, swarm_environment=False)
    return options, profile


def _draw_kinds(rng: random.Random) -> list[str]:
    # Crashes are on more often than the rest: most of Raft's history-rewriting paths need them.
    kinds = [kind for kind in FAULT_KINDS if rng.random() < (0.85 if kind == "crash" else 0.5)]
    return sorted(kinds) if kinds else [rng.choice(FAULT_KINDS)]


def _draw_environment(rng: random.Random, options: SimOptions) -> tuple[SimOptions, dict[str, Any]]:
    latency = rng.choice(LATENCY_PROFILES_MS)
    reorder = rng.choice((0.0, 0.0, 0.05, 0.2))
    network = dataclasses.replace(options.network, latency_ms_min=latency[0], latency_ms_max=latency[1],
                                  reorder_probability=reorder)
    guarded = rng.random() < 0.75  # pre-vote and check-quorum on (the default), or both off
    # Raft's timing requirement, broadcastTime << electionTimeout (§5.6): on a slow network the
    # election timeouts stretch with it, or elections livelock and liveness means nothing.
    base = options.timings
    scale = max(1.0, TIMEOUT_PER_LATENCY * latency[1] / base.election_timeout_ms_min)
    timings = dataclasses.replace(base, pre_vote=guarded, check_quorum=guarded,
                                  entries_per_message_max=rng.choice((1, 1, 2, 4, 256)),
                                  election_timeout_ms_min=base.election_timeout_ms_min * scale,
                                  election_timeout_ms_max=base.election_timeout_ms_max * scale,
                                  heartbeat_interval_ms=base.heartbeat_interval_ms * scale)
    # Drawn in this order (the seed's stream), then named in `drawn` for the report.
    snapshot_entries = rng.choice((0, 25, 200, 1000))
    rate = round(_log_uniform(rng, 5.0, 150.0), 1)
    clients = rng.randint(2, 8)
    keys = rng.randint(1, 4)
    client_timeout_ms = rng.choice((300.0, 1000.0, 2000.0))
    drawn = {
        "latency_ms": list(latency), "reorder_probability": reorder, "pre_vote_check_quorum": guarded,
        "election_timeout_ms": [timings.election_timeout_ms_min, timings.election_timeout_ms_max],
        "entries_per_message_max": timings.entries_per_message_max,
        "snapshot_entries": snapshot_entries, "rate": rate, "clients": clients, "keys": keys,
        "client_timeout_ms": client_timeout_ms,
    }
    options = dataclasses.replace(options, network=network, timings=timings, snapshot_entries=snapshot_entries,
                                  proposals_per_second=rate, clients=clients, keys=keys,
                                  client_timeout_ms=client_timeout_ms)
    return options, drawn


def _add_kind(schedule: FaultSchedule, rng: random.Random, kind: str, ids: list[str], gap_ms: float,
              end_ms: float, options: SimOptions) -> None:
    """A Poisson stream of one kind's faults, from FAULTS_START_MS to `end_ms`; every fault that
    takes something away also gives it back before `end_ms` (restarts may land just after)."""
    t = FAULTS_START_MS + rng.expovariate(1.0 / gap_ms)
    while t < end_ms - 1.0:  # every fault lasts >= 1 ms and must end by `end_ms`
        add = _ADDERS[kind]
        add(schedule.actions, rng, _ms(t), ids, min(end_ms, t + 5000.0) - t, options)
        t += rng.expovariate(1.0 / gap_ms)


def _victim(rng: random.Random, ids: list[str], leader_share: float) -> str:
    return "leader" if rng.random() < leader_share else rng.choice(ids)


def _add_crash(actions: list[FaultAction], rng: random.Random, at: float, ids: list[str], room: float,
               options: SimOptions) -> None:
    downtime = rng.uniform(1.0, 50.0) if rng.random() < 0.4 else rng.uniform(100.0, 5000.0)
    downtime = _ms(max(1.0, min(downtime, room)))
    latency_max = options.network.latency_ms_max
    style = rng.random()
    if style < 0.15:  # a leader dies with its newest entry on the wire: some peers get it
        delay = _ms(rng.uniform(0.0, latency_max))
        actions.append(FaultAction(at_ms=at, kind="crash_after_propose", value=delay, duration=downtime,
                                   loss=1.0))
    elif style < 0.4:  # leader churn: the next few leaders each die with their no-op on the wire
        for _ in range(rng.randint(2, 6)):
            delay = _ms(rng.uniform(0.0, 3.0 * latency_max))
            back = _ms(rng.uniform(1.0, 600.0))
            actions.append(FaultAction(at_ms=at, kind="crash_after_elect", value=delay, duration=back,
                                       loss=1.0))
    elif style < 0.55:  # voters bounce mid-election; a vote must survive the restart
        for _ in range(rng.randint(1, 4)):
            bounce = _ms(rng.uniform(0.5, latency_max))
            actions.append(FaultAction(at_ms=at, kind="crash_after_vote", value=0.0, duration=bounce))
    else:
        actions.append(FaultAction(at_ms=at, kind="crash", node=_victim(rng, ids, 0.4), duration=downtime))


def _add_pause(actions: list[FaultAction], rng: random.Random, at: float, ids: list[str], room: float,
               options: SimOptions) -> None:
    duration = _ms(max(1.0, min(rng.uniform(50.0, 3000.0), room)))
    actions.append(FaultAction(at_ms=at, kind="pause", node=_victim(rng, ids, 0.4), duration=duration))


def _add_partition(actions: list[FaultAction], rng: random.Random, at: float, ids: list[str], room: float,
                   options: SimOptions) -> None:
    heal_at = _ms(at + max(1.0, min(rng.uniform(100.0, 5000.0), room)))
    mode = rng.random()
    if mode < 0.25:  # isolate one node
        actions.append(FaultAction(at_ms=at, kind="partition", sides=[[rng.choice(ids)], ["rest"]]))
    elif mode < 0.45:  # isolate whoever leads (the stale-leader story)
        actions.append(FaultAction(at_ms=at, kind="partition", sides=[["leader"], ["rest"]]))
    elif mode < 0.65:  # a minority against a majority
        minority = rng.sample(ids, rng.randint(1, max(1, (len(ids) - 1) // 2)))
        actions.append(FaultAction(at_ms=at, kind="partition", sides=[sorted(minority), ["rest"]]))
    elif mode < 0.85:  # partial: one node loses some of its peers only
        node = rng.choice(ids)
        others = [n for n in ids if n != node]
        cut = rng.sample(others, rng.randint(1, max(1, len(others) - 1))) if others else []
        actions.append(FaultAction(at_ms=at, kind="partition", sides=[[node], sorted(cut)]))
    else:  # one-way: a node (or the leader) can send but not receive, or the reverse
        node = "leader" if rng.random() < 0.5 else rng.choice(ids)
        sides = [[node], ["rest"]] if rng.random() < 0.5 else [["rest"], [node]]
        actions.append(FaultAction(at_ms=at, kind="one_way", sides=sides))
    actions.append(FaultAction(at_ms=heal_at, kind="heal"))


def _add_skew(actions: list[FaultAction], rng: random.Random, at: float, ids: list[str], room: float,
              options: SimOptions) -> None:
    delta = rng.uniform(10.0, CLOCK_JUMP_MS_MAX) * rng.choice((-1.0, 1.0))
    actions.append(FaultAction(at_ms=at, kind="clock_jump", node=_victim(rng, ids, 0.3), value=round(delta, 3)))


def _add_loss(actions: list[FaultAction], rng: random.Random, at: float, ids: list[str], room: float,
              options: SimOptions) -> None:
    stop = _ms(at + max(1.0, min(rng.uniform(100.0, 3000.0), room)))
    actions.append(FaultAction(at_ms=at, kind="net", loss=round(rng.uniform(0.05, 0.5), 3)))
    actions.append(FaultAction(at_ms=stop, kind="net", loss=0.0))


def _add_dup(actions: list[FaultAction], rng: random.Random, at: float, ids: list[str], room: float,
             options: SimOptions) -> None:
    stop = _ms(at + max(1.0, min(rng.uniform(100.0, 3000.0), room)))
    actions.append(FaultAction(at_ms=at, kind="net", dup=round(rng.uniform(0.05, 0.5), 3)))
    actions.append(FaultAction(at_ms=stop, kind="net", dup=0.0))


def _add_transfer(actions: list[FaultAction], rng: random.Random, at: float, ids: list[str], room: float,
                  options: SimOptions) -> None:
    actions.append(FaultAction(at_ms=at, kind="transfer", node=rng.choice(ids)))


_ADDERS = {"crash": _add_crash, "pause": _add_pause, "partition": _add_partition, "skew": _add_skew,
           "loss": _add_loss, "dup": _add_dup, "transfer": _add_transfer}


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _ms(value: float) -> float:
    """Times on the microsecond grid the schedule's JSON keeps, so generated == replayed."""
    return round(value, 3)
