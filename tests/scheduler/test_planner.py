"""The leader's planner and dispatch, driven against a real state machine without Raft.

`Leader` stands in for a leader node: it plans by its clock, applies its own entries at once
(as if committed) and feeds the effects back, which is what the simulator does too.
"""

from __future__ import annotations

from typing import Any

from scheduler.commands import (
    AttemptKey, Batch, Expire, Finish, Fire, PutJob, RecordTicks, RegisterNode,
)
from scheduler.leases import LeasePolicy
from scheduler.machine import SchedulerStateMachine
from scheduler.planner import AgentInfo, Planner, PlannerPolicy
from scheduler.results import Outcome, Result

WEB = AgentInfo(tags={"role": "web"}, tokens=4, reserved_tokens=1)
DB = AgentInfo(tags={"role": "db"}, tokens=4, reserved_tokens=1)
POLICY = PlannerPolicy(lease=LeasePolicy(lease_ms=10_000, renew_every_ms=1_000,
                                         max_offset_ms=2_000, drift_rate_max=0.0))


class Leader:
    def __init__(self, m: SchedulerStateMachine, now: int, policy: PlannerPolicy = POLICY,
                 agents: dict[str, AgentInfo] | None = None) -> None:
        self.m = m
        self.planner = Planner(m.state, policy, now)
        self.agents = agents if agents is not None else {"n1": WEB, "n2": WEB, "n3": DB}
        self.results: list[Result] = []

    def round(self, now: int, *, apply: bool = True) -> list[Batch]:
        for name, info in self.agents.items():
            self.planner.heard(name, now, info)
        entries = self.planner.plan(now)
        if apply:
            for entry in entries:
                result = self.m.apply_command(entry)
                self.results.append(result)
                self.planner.observe(result.all_effects())
        return entries

    def outcomes(self) -> list[Outcome]:
        return [e for r in self.results for e in r.all_effects() if isinstance(e, Outcome)]


def setup(*jobs: dict[str, Any], now: int = 0) -> SchedulerStateMachine:
    m = SchedulerStateMachine()
    for name, info in (("n1", WEB), ("n2", WEB), ("n3", DB)):
        m.apply_command(RegisterNode(now_ms=now, node=name, tags=info.tags, tokens=info.tokens,
                                     reserved_tokens=info.reserved_tokens))
    for job in jobs:
        assert m.apply_command(PutJob(now_ms=now, job=job)).ok
    return m


def fires(entries: list[Batch]) -> list[tuple[str, int, tuple[str | None, ...]]]:
    return [(item.job, item.tick_ms, item.nodes) for entry in entries for c in entry.commands
            if isinstance(c, Fire) for item in c.items]


EVERY = {"name": "tick", "schedule": "@every 1s"}


def test_a_new_leader_continues_from_the_replicated_cursor_not_from_now() -> None:
    m = setup(EVERY)
    old = Leader(m, 0)
    old.round(2_000)
    assert m.state.jobs["tick"].cursor_ms == 2_000
    new = Leader(m, 4_500)  # elected 2.5 s later: ticks 3000 and 4000 are due, within grace
    assert [t for _, t, _ in fires(new.round(4_500))] == [3_000, 4_000]
    assert [o.first_ms for o in new.outcomes()] == [3_000, 4_000]


def test_the_leader_clock_trust_bug_starts_from_now_and_loses_the_due_ticks() -> None:
    m = setup(EVERY)
    Leader(m, 0).round(2_000)
    buggy = Leader(m, 4_500, PlannerPolicy(lease=POLICY.lease, trust_clock=True))
    assert fires(buggy.round(4_500)) == []
    assert [t for _, t, _ in fires(buggy.round(5_000))] == [5_000]


def test_after_a_long_outage_old_ticks_are_one_missed_range_and_the_rest_fire() -> None:
    m = setup({**EVERY, "grace_seconds": 3})
    leader = Leader(m, 3_600_000)
    entries = leader.round(3_600_000)
    records = [c for e in entries for c in e.commands if isinstance(c, RecordTicks)]
    assert [(r.first_ms, r.last_ms, r.outcome) for r in records] == [(1_000, 3_596_000,
                                                                       "missed")]
    assert [t for _, t, _ in fires(entries)] == [3_597_000, 3_598_000, 3_599_000, 3_600_000]
    assert leader.outcomes()[0].count == 3_596
    assert m.state.jobs["tick"].cursor_ms == 3_600_000


def test_catch_up_is_bounded_per_round() -> None:
    m = setup({**EVERY, "grace_seconds": 600})
    leader = Leader(m, 0, PlannerPolicy(lease=POLICY.lease, catch_up_per_job_max=5))
    assert len(fires(leader.round(100_000))) == 5
    assert len(fires(leader.round(100_100))) == 5


def test_two_leaders_proposing_the_same_tick_fire_it_once() -> None:
    m = setup(EVERY)
    old, new = Leader(m, 0), Leader(m, 0)
    stale = old.round(1_000, apply=False)  # in the log, not yet applied when `new` plans
    fresh = new.round(1_000, apply=False)
    results = [m.apply_command(entry) for entry in [*stale, *fresh]]
    fire_results = [r for r in results if r.children and r.children[0].children]
    verdicts = [child.ok for r in fire_results for child in r.children[0].children]
    assert verdicts == [True, False]
    assert m.state.jobs["tick"].fired == 1


def test_slots_follow_tags_counts_and_tokens() -> None:
    m = setup({"name": "pair", "schedule": "@every 1s", "tags": {"role": "web:2"}},
              {"name": "all-web", "schedule": "@every 1s", "tags": {"role": "web"}},
              {"name": "any", "schedule": "@every 1s", "weight": 2},
              {"name": "big", "schedule": "@every 1s", "weight": 4})
    placed = {job: nodes for job, _, nodes in fires(Leader(m, 0).round(1_000))}
    assert sorted(placed["pair"]) == ["n1", "n2"]  # type: ignore[type-var]
    assert placed["all-web"] == ("n1", "n2")
    assert len(placed["any"]) == 1 and placed["any"][0] is not None
    assert placed["big"] == (None,)  # 4 tokens minus 1 reserved: nobody fits; queued


def test_silent_nodes_are_proposed_down_and_never_chosen() -> None:
    m = setup({"name": "web", "schedule": "@every 1s", "tags": {"role": "web"}})
    roomy = AgentInfo(tags={"role": "web"}, tokens=100, reserved_tokens=0)
    leader = Leader(m, 0, agents={"n1": roomy})
    leader.round(1_000)
    leader.round(3_500)
    assert (m.state.nodes["n2"].state, m.state.nodes["n3"].state) == ("down", "down")
    assert fires(leader.round(4_000)) == [("web", 4_000, ("n1",))]
    leader.agents["n2"] = WEB
    leader.round(4_500)
    assert m.state.nodes["n2"].state == "up"


def test_unknown_agents_are_registered_from_their_heartbeats() -> None:
    m = setup()
    leader = Leader(m, 0, agents={"n9": AgentInfo(tags={"role": "x"}, tokens=2,
                                                  reserved_tokens=0)})
    leader.round(100)
    assert m.state.nodes["n9"].tags == {"role": "x"}


def test_expiry_waits_for_the_drift_bound_and_the_retry_goes_elsewhere() -> None:
    m = setup({**EVERY, "retries": 1, "tags": {"role": "web"}, "schedule": "@every 1h"})
    leader = Leader(m, 0, agents={"n1": WEB, "n2": WEB})
    leader.round(3_600_000)  # fires on n1 and n2 ("every matching node")
    key = AttemptKey("tick", 3_600_000, 0, 1)
    deadline = m.state.attempts[key].deadline_ms
    other = AttemptKey("tick", 3_600_000, 1, 1)
    other_node = m.state.attempts[other].node
    assert other_node is not None
    assert m.apply_command(Finish(now_ms=3_600_500, key=other, node=other_node, ok=True)).ok
    bound = POLICY.lease.drift_bound_ms
    assert not _commands(leader.round(deadline + bound), Expire)
    expired = _commands(leader.round(deadline + bound + 1), Expire)
    assert [(e.key, e.drift_bound_ms) for e in expired] == [(key, bound)]
    leader.round(deadline + bound + 1_001)  # backoff of 1 s, then the retry
    retry = m.state.attempts[AttemptKey("tick", 3_600_000, 0, 2)]
    first_node = m.state.executions[key.execution].nodes_tried[0]
    assert retry.node is not None and retry.node != first_node


def test_lease_no_drift_expires_at_the_deadline_itself() -> None:
    policy = PlannerPolicy(lease=LeasePolicy(lease_ms=10_000, renew_every_ms=1_000,
                                             no_drift_margin=True))
    m = setup(EVERY)
    leader = Leader(m, 0, policy)
    leader.round(1_000)
    assert _commands(leader.round(11_001), Expire)[0].drift_bound_ms == 0


def test_a_lost_proposal_is_planned_again_after_the_recheck_delay() -> None:
    m = setup(EVERY)
    leader = Leader(m, 0)
    assert fires(leader.round(1_000, apply=False))  # lost: never applied
    assert fires(leader.round(2_000))[0][1] == 2_000  # rejected: 1000 is still due
    leader.round(3_100)  # recheck: the planner re-reads the cursor
    assert [o.first_ms for o in leader.outcomes()] == [1_000, 2_000, 3_000]


def test_agent_requests_are_stamped_with_the_leader_clock() -> None:
    m = setup(EVERY)
    leader = Leader(m, 0)
    leader.round(1_000)
    key = AttemptKey("tick", 1_000, 0, 1)
    holder = m.state.attempts[key].node
    assert holder is not None
    leader.planner.renew(holder, key)
    leader.round(1_500)
    assert m.state.attempts[key].deadline_ms == 11_500


def test_fires_are_chunked_into_entries() -> None:
    m = setup(*({"name": f"j{i}", "schedule": "@every 1s"} for i in range(25)))
    leader = Leader(m, 0, PlannerPolicy(lease=POLICY.lease, items_per_entry_max=10))
    entries = leader.round(1_000)
    sizes = [len(c.items) for e in entries for c in e.commands if isinstance(c, Fire)]
    assert sizes == [10, 10, 5]
    assert m.state.totals["fired"] == 25


def test_thousands_of_jobs_fire_exactly_once_per_tick() -> None:
    jobs = [{"name": f"j{i}", "schedule": f"@every {1 + i % 7}s"} for i in range(2_000)]
    m = setup(*jobs)
    for node in ("n1", "n2", "n3"):
        m.state.nodes[node].tokens = 10**9
    leader = Leader(m, 0)
    for now in range(100, 30_001, 100):
        leader.round(now)
    expected = sum(30 // (1 + i % 7) for i in range(2_000))
    assert m.state.totals["fired"] == expected
    assert m.state.totals["missed"] == m.state.totals["skipped"] == 0


def _commands(entries: list[Batch], kind: type[Any]) -> list[Any]:
    return [c for e in entries for c in e.commands if isinstance(c, kind)]
