"""The scheduler state machine, one command at a time, then as a whole (determinism, snapshot).

Each test builds a small world by applying commands, so it reads as a log. Times are small
integers of milliseconds; @every anchors are the PutJob's now_ms.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.commands import (
    Assign, AttemptKey, Batch, Beat, Claim, Command, CommandError, DeleteJob, ExecKey, Expire, Finish,
    Fire, FireItem, Heartbeats, NodeDown, PutJob, RecordTicks, RegisterNode, Renew, RunNow,
    ToggleJob, decode_command, encode_command,
)
from scheduler.lifecycle import TABLES, IllegalTransition, step, terminal_states
from scheduler.machine import SchedulerStateMachine
from scheduler.results import AttemptEnd, JobChanged, Lease, Outcome, Result, Waiting

LEASE, QUEUE = 10_000, 5_000


def machine(*jobs: dict[str, Any], nodes: int = 3, bugs: frozenset[str] = frozenset(),
            tags: dict[str, str] | None = None) -> SchedulerStateMachine:
    m = SchedulerStateMachine(bugs)
    for i in range(1, nodes + 1):
        ok(m.apply_command(RegisterNode(now_ms=0, node=f"n{i}", tags=tags or {"role": "web"},
                                        tokens=4, reserved_tokens=1)))
    for job in jobs:
        ok(m.apply_command(PutJob(now_ms=0, job=job)))
    return m


def ok(result: Result) -> Result:
    assert result.ok, (result.reason, result.detail)
    return result


def fire(m: SchedulerStateMachine, job: str, tick: int, now: int | None = None,
         nodes: tuple[str | None, ...] = ("n1",)) -> Result:
    version = m.state.jobs[job].version
    result = m.apply_command(Fire(now_ms=tick if now is None else now, lease_ms=LEASE,
                                  queue_ms=QUEUE,
                                  items=(FireItem(job=job, version=version, tick_ms=tick,
                                                  nodes=nodes),)))
    assert result.ok and len(result.children) == 1
    return result.children[0]


def outcomes(result: Result) -> list[Outcome]:
    return [e for e in result.all_effects() if isinstance(e, Outcome)]


def leases(result: Result) -> list[Lease]:
    return [e for e in result.all_effects() if isinstance(e, Lease)]


EVERY = {"name": "tick", "schedule": "@every 1s"}


# ---- lifecycle tables --------------------------------------------------------------------------


def test_a_lookup_miss_is_an_illegal_transition() -> None:
    assert step("attempt", "queued", "claim") == "leased"
    with pytest.raises(IllegalTransition, match="attempt in state 'expired' cannot 'renew'"):
        step("attempt", "expired", "renew")


def test_the_docs_list_exactly_the_transitions_of_the_tables() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "scheduler.md").read_text()
    documented = set(re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \|$", text, re.MULTILINE))
    coded = {(before, event, after) for table in TABLES.values()
             for (before, event), after in table.items()}
    assert documented - {("from", "event", "to")} == coded


def test_terminal_states_follow_from_the_tables() -> None:
    assert terminal_states("attempt") == {"succeeded", "failed", "expired", "unclaimed"}
    assert terminal_states("execution") == {"succeeded", "failed", "unreachable"}
    assert set(TABLES) == {"job", "execution", "attempt", "node"}


# ---- codec -------------------------------------------------------------------------------------

ALL_COMMANDS = [
    PutJob(now_ms=1, job={"name": "a", "schedule": "@every 1s"}),
    DeleteJob(now_ms=1, name="a"),
    ToggleJob(now_ms=1, name="a", disabled=True),
    Fire(now_ms=5, lease_ms=1, queue_ms=2,
         items=(FireItem(job="a", version=1, tick_ms=3, nodes=("n1", None)),)),
    RecordTicks(now_ms=9, job="a", version=1, first_ms=1, last_ms=2, outcome="missed"),
    Assign(now_ms=1, key=AttemptKey("a", 3, 0, 2), node=None, lease_ms=1, queue_ms=1),
    Claim(now_ms=1, key=AttemptKey("a", 3, 0, 1), node="n1", lease_ms=1),
    Renew(now_ms=1, key=AttemptKey("a", 3, 0, 1), node="n1", lease_ms=1),
    Finish(now_ms=1, key=AttemptKey("a", 3, 0, 1), node="n1", ok=False, detail="exit 3"),
    Expire(now_ms=1, key=AttemptKey("a", 3, 0, 1), deadline_ms=0, drift_bound_ms=0),
    RunNow(now_ms=1, job="a", idempotency_key="k"),
    RegisterNode(now_ms=1, node="n1", tags={"role": "web"}, tokens=3, reserved_tokens=1),
    Heartbeats(now_ms=1, beats=(Beat(node="n1", seen_ms=1, load_permille=10),)),
    NodeDown(now_ms=1, node="n1", reason="silent"),
]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: type(c).TAG)
def test_every_command_round_trips(command: Any) -> None:
    assert decode_command(encode_command(command)) == command
    batch = Batch(commands=(command, command))
    assert decode_command(encode_command(batch)) == batch


@pytest.mark.parametrize("data, message", [
    (b"\xc1", "not msgpack"),
    (msgpack.packb(["launch_missiles", 1]), "unknown command"),
    (msgpack.packb(["renew", 1, ["a", 1, 0, 1], "n1"]), "expected 4 fields"),
    (msgpack.packb(["renew", -5, ["a", 1, 0, 1], "n1", 10]), "now_ms"),
    (msgpack.packb(["renew", 1, ["a", 1, 0], "n1", 10]), "attempt"),
    (msgpack.packb(["finish", 1, ["a", 1, 0, 1], "n1", 1, ""]), "ok: expected true or false"),
    (msgpack.packb(["batch", [["batch", []]]]), "cannot hold a batch"),
    (msgpack.packb(["run_now", 1, "a", ""]), "idempotency_key"),
    (msgpack.packb({"tag": "fire"}), "expected [tag"),
])
def test_malformed_entries_are_rejected_without_a_state_change(data: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("[", r"\[")):
        decode_command(data)
    m = machine(EVERY)
    before = m.snapshot()
    result = m.apply(m.state.applied_index + 1, data)
    assert not result.ok and result.reason == "malformed"
    assert _without_index(m.snapshot()) == _without_index(before)


def _without_index(snapshot: bytes) -> Any:
    value = msgpack.unpackb(snapshot, strict_map_key=False)
    value[1] = None
    value[-1]["rejected"] = None
    return value


# ---- jobs --------------------------------------------------------------------------------------


def test_put_anchors_every_at_creation_and_versions_by_index() -> None:
    m = machine(nodes=0)
    result = ok(m.apply_command(PutJob(now_ms=1_234, job=EVERY), index=7))
    job = m.state.jobs["tick"]
    assert (job.version, job.anchor_ms, job.cursor_ms, job.next_tick_ms) == (7, 1_234, 1_234,
                                                                              2_234)
    assert result.value == {"version": 7, "next_tick_ms": 2_234}


def test_put_of_an_identical_definition_changes_nothing() -> None:
    m = machine(EVERY)
    result = ok(m.apply_command(PutJob(now_ms=500_000, job=EVERY)))
    assert result.value["unchanged"] and m.state.jobs["tick"].anchor_ms == 0


def test_an_update_re_anchors_and_records_the_old_pending_ticks_as_missed() -> None:
    m = machine(EVERY)
    ok(fire(m, "tick", 1_000))
    result = ok(m.apply_command(PutJob(now_ms=3_500, job={**EVERY, "schedule": "@every 2s"})))
    assert outcomes(result) == [Outcome("tick", "missed", 2_000, 3_000, 2, "superseded")]
    job = m.state.jobs["tick"]
    assert (job.anchor_ms, job.next_tick_ms, job.fired, job.missed) == (3_500, 5_500, 1, 2)


def test_an_invalid_job_is_rejected_naming_the_field() -> None:
    result = machine().apply_command(PutJob(now_ms=0, job={"name": "x", "schedule": "61 * * * *"}))
    assert result.reason == "invalid_job" and "minute value 61" in result.detail


def test_a_parent_must_exist_and_chains_cannot_loop() -> None:
    m = machine()
    child = {"name": "child", "parent_job": "parent"}
    assert m.apply_command(PutJob(now_ms=0, job=child)).reason == "bad_parent"
    ok(m.apply_command(PutJob(now_ms=0, job={"name": "parent", "schedule": "@every 1s"})))
    ok(m.apply_command(PutJob(now_ms=0, job=child)))
    loop = m.apply_command(PutJob(now_ms=0, job={"name": "parent", "parent_job": "child"}))
    assert loop.reason == "bad_parent" and "cycle" in loop.detail
    assert m.apply_command(DeleteJob(now_ms=0, name="parent")).reason == "has_children"


def test_a_re_created_job_never_reuses_a_tick_of_its_former_self() -> None:
    m = machine(EVERY)
    ok(fire(m, "tick", 1_000))
    ok(fire(m, "tick", 2_000))
    ok(m.apply_command(DeleteJob(now_ms=2_100, name="tick")))
    assert m.apply_command(DeleteJob(now_ms=2_100, name="tick")).reason == "unknown_job"
    ok(m.apply_command(PutJob(now_ms=500, job=EVERY)))  # a leader whose clock lags
    assert m.state.jobs["tick"].next_tick_ms == 2_500  # after the old cursor, on the new phase


def test_toggle_flips_or_sets_and_a_disabled_job_skips_its_ticks() -> None:
    m = machine(EVERY)
    assert ok(m.apply_command(ToggleJob(now_ms=0, name="tick"))).value == {"disabled": True}
    ok(m.apply_command(ToggleJob(now_ms=0, name="tick", disabled=True)))  # idempotent
    assert outcomes(fire(m, "tick", 1_000)) == [Outcome("tick", "skipped", 1_000, 1_000, 1,
                                                        "disabled")]
    assert m.apply_command(RunNow(now_ms=1_000, job="tick", idempotency_key="k")).reason == \
        "illegal_transition"
    ok(m.apply_command(ToggleJob(now_ms=0, name="tick")))
    assert outcomes(fire(m, "tick", 2_000))[0].kind == "fired"


# ---- fire ----------------------------------------------------------------------------------------


def test_fire_accepts_only_the_next_due_tick() -> None:
    m = machine(EVERY)
    result = ok(fire(m, "tick", 1_000))
    assert outcomes(result) == [Outcome("tick", "fired", 1_000, 1_000, 1, "", "schedule", 1)]
    assert leases(result) == [Lease(AttemptKey("tick", 1_000, 0, 1), "n1", 11_000, "fire")]
    assert fire(m, "tick", 1_000).reason == "not_next_tick"  # a duplicate proposal
    assert fire(m, "tick", 3_000, now=3_000).reason == "not_next_tick"  # skips 2000
    assert fire(m, "tick", 2_000, now=1_999).reason == "future_tick"
    assert m.state.jobs["tick"].fired == 1


def test_a_stale_definition_cannot_fire() -> None:
    m = machine(EVERY)
    ok(m.apply_command(PutJob(now_ms=0, job={**EVERY, "retries": 2})))
    result = m.apply_command(Fire(now_ms=1_000, lease_ms=LEASE, queue_ms=QUEUE, items=(
        FireItem(job="tick", version=2, tick_ms=1_000, nodes=("n1",)),)))
    assert result.children[0].reason == "stale_version"


def test_a_tick_later_than_its_grace_is_missed_not_fired() -> None:
    m = machine({**EVERY, "grace_seconds": 2})
    result = ok(fire(m, "tick", 1_000, now=3_001))
    assert outcomes(result) == [Outcome("tick", "missed", 1_000, 1_000, 1, "late")]
    assert not leases(result) and not m.state.attempts
    assert outcomes(fire(m, "tick", 2_000, now=4_000))[0].kind == "fired"  # exactly at grace


def test_forbid_skips_a_tick_while_an_execution_lives_and_the_lease_frees_it() -> None:
    m = machine({**EVERY, "concurrency": "forbid"})
    ok(fire(m, "tick", 1_000))
    assert outcomes(fire(m, "tick", 2_000))[0] == Outcome("tick", "skipped", 2_000, 2_000, 1,
                                                          "overlap")
    key = AttemptKey("tick", 1_000, 0, 1)
    ok(m.apply_command(Expire(now_ms=11_001, key=key, deadline_ms=11_000, drift_bound_ms=0)))
    assert outcomes(fire(m, "tick", 3_000, now=11_001 - 8_000))[0].kind == "fired"


def test_slots_follow_the_tag_count_on_distinct_eligible_nodes() -> None:
    m = machine({**EVERY, "tags": {"role": "web:2"}})
    assert fire(m, "tick", 1_000, nodes=("n1",)).reason == "wrong_slot_count"
    assert fire(m, "tick", 1_000, nodes=("n1", "n1")).reason == "duplicate_node"
    result = ok(fire(m, "tick", 1_000, nodes=("n1", "ghost")))
    assert [(lease.node, lease.why) for lease in leases(result)] == [("n1", "fire"),
                                                                     (None, "queue")]
    queued = AttemptKey("tick", 1_000, 1, 1)
    claim = m.apply_command(Claim(now_ms=1_010, key=queued, node="n1", lease_ms=LEASE))
    assert claim.reason == "not_eligible"  # n1 already holds slot 0 of this firing
    ok(m.apply_command(Claim(now_ms=1_010, key=queued, node="n2", lease_ms=LEASE)))
    late = m.apply_command(Claim(now_ms=1_020, key=queued, node="n3", lease_ms=LEASE))
    assert late.reason == "illegal_transition"  # the first committed claim won


def test_tokens_fall_with_load_and_priority_one_keeps_its_reserve() -> None:
    m = machine({**EVERY, "weight": 3}, {"name": "vip", "schedule": "@every 1s", "weight": 1,
                                         "priority": 1})
    ok(m.apply_command(Heartbeats(now_ms=0, beats=(Beat(node="n1", seen_ms=0,
                                                        load_permille=0),))))
    assert leases(fire(m, "tick", 1_000))[0].node == "n1"  # 4 tokens - 1 reserved = 3
    assert leases(fire(m, "tick", 2_000))[0].node is None  # n1 is full for priority 2
    assert leases(fire(m, "vip", 1_000))[0].node == "n1"  # the reserved token
    ok(m.apply_command(Heartbeats(now_ms=0, beats=(Beat(node="n2", seen_ms=0,
                                                        load_permille=950),))))
    assert leases(fire(m, "vip", 2_000, nodes=("n2",)))[0].node is None  # loaded: no tokens


def test_one_fire_entry_carries_many_ticks_in_order() -> None:
    m = machine(EVERY)
    items = tuple(FireItem(job="tick", version=m.state.jobs["tick"].version, tick_ms=t,
                           nodes=("n2",)) for t in (1_000, 2_000, 3_000, 3_000))
    result = m.apply_command(Fire(now_ms=3_000, lease_ms=LEASE, queue_ms=QUEUE, items=items))
    assert [child.ok for child in result.children] == [True, True, True, False]
    assert m.state.jobs["tick"].cursor_ms == 3_000


def test_fire_twice_bug_accepts_a_tick_that_already_has_an_outcome() -> None:
    m = machine(EVERY, bugs=frozenset({"fire-twice"}))
    ok(fire(m, "tick", 1_000))
    assert outcomes(ok(fire(m, "tick", 1_000)))[0].kind == "fired"
    assert m.state.jobs["tick"].fired == 2


def test_leader_clock_trust_bug_jumps_over_unrecorded_ticks() -> None:
    m = machine(EVERY, bugs=frozenset({"leader-clock-trust"}))
    ok(fire(m, "tick", 1_000))
    ok(fire(m, "tick", 5_000))
    assert m.state.jobs["tick"].fired == 2  # ticks 2000..4000 have no outcome at all


# ---- record ticks --------------------------------------------------------------------------------


def test_a_long_outage_is_one_missed_range_with_a_count() -> None:
    m = machine({**EVERY, "grace_seconds": 10})
    day = 86_400_000
    result = ok(m.apply_command(RecordTicks(now_ms=day, job="tick", version=4, first_ms=1_000,
                                            last_ms=day - 11_000, outcome="missed")))
    assert outcomes(result) == [Outcome("tick", "missed", 1_000, day - 11_000, 86_389, "late")]
    assert m.state.jobs["tick"].next_tick_ms == day - 10_000


def test_a_cron_range_is_verified_tick_by_tick() -> None:
    m = machine({"name": "cron", "schedule": "*/10 * * * * *", "grace_seconds": 0})
    bad = m.apply_command(RecordTicks(now_ms=100_000, job="cron", version=4, first_ms=10_000,
                                      last_ms=25_000, outcome="missed"))
    assert bad.reason == "bad_range"
    result = ok(m.apply_command(RecordTicks(now_ms=100_000, job="cron", version=4,
                                            first_ms=10_000, last_ms=50_000, outcome="missed")))
    assert outcomes(result)[0].count == 5


def test_record_ticks_checks_lateness_order_and_state() -> None:
    m = machine({**EVERY, "grace_seconds": 10})
    def record(first: int, last: int, now: int, outcome: str = "missed") -> Result:
        return m.apply_command(RecordTicks(now_ms=now, job="tick", version=4, first_ms=first,
                                           last_ms=last, outcome=outcome))
    assert record(1_000, 5_000, 15_000).reason == "not_late"
    assert record(2_000, 5_000, 60_000).reason == "not_next_tick"
    assert record(1_000, 5_000, 60_000, "skipped").reason == "not_disabled"
    ok(m.apply_command(ToggleJob(now_ms=0, name="tick", disabled=True)))
    assert outcomes(ok(record(1_000, 5_000, 5_000, "skipped")))[0].count == 5


# ---- attempts ------------------------------------------------------------------------------------

KEY = AttemptKey("tick", 1_000, 0, 1)


def test_renew_extends_only_the_holders_lease_and_never_shortens_it() -> None:
    m = machine(EVERY)
    ok(fire(m, "tick", 1_000))
    assert m.apply_command(Renew(now_ms=2_000, key=KEY, node="n2", lease_ms=LEASE)).reason == \
        "not_holder"
    ok(m.apply_command(Renew(now_ms=5_000, key=KEY, node="n1", lease_ms=LEASE)))
    ok(m.apply_command(Renew(now_ms=4_000, key=KEY, node="n1", lease_ms=LEASE)))
    assert m.state.attempts[KEY].deadline_ms == 15_000


def test_expire_is_a_compare_and_set_past_the_drift_bound() -> None:
    m = machine({**EVERY, "retries": 1})
    ok(fire(m, "tick", 1_000))
    assert m.apply_command(Expire(now_ms=13_000, key=KEY, deadline_ms=11_000,
                                  drift_bound_ms=2_000)).reason == "not_expired"
    ok(m.apply_command(Renew(now_ms=2_000, key=KEY, node="n1", lease_ms=LEASE)))
    assert m.apply_command(Expire(now_ms=99_000, key=KEY, deadline_ms=11_000,
                                  drift_bound_ms=2_000)).reason == "deadline_changed"
    result = ok(m.apply_command(Expire(now_ms=14_001, key=KEY, deadline_ms=12_000,
                                       drift_bound_ms=2_000)))
    assert AttemptEnd(KEY, "n1", "expired") in result.effects
    assert Waiting(ExecKey("tick", 1_000, 0), 15_001) in result.effects  # retry after 1 s
    assert m.apply_command(Renew(now_ms=14_002, key=KEY, node="n1", lease_ms=LEASE)).reason == \
        "unknown_attempt"
    assert m.state.nodes["n1"].used_tokens == 0


def test_a_failed_attempt_is_retried_elsewhere_after_backoff_then_gives_up() -> None:
    m = machine({**EVERY, "retries": 1})
    ok(fire(m, "tick", 1_000))
    ok(m.apply_command(Finish(now_ms=3_000, key=KEY, node="n1", ok=False, detail="exit 1")))
    assert m.apply_command(Finish(now_ms=3_000, key=KEY, node="n1", ok=False)).reason == \
        "unknown_attempt"  # at most one Finish per attempt
    second = AttemptKey("tick", 1_000, 0, 2)
    assert m.apply_command(Assign(now_ms=3_500, key=second, node="n2", lease_ms=LEASE,
                                  queue_ms=QUEUE)).reason == "not_ready"
    assert m.apply_command(Assign(now_ms=4_000, key=AttemptKey("tick", 1_000, 0, 3), node="n2",
                                  lease_ms=LEASE, queue_ms=QUEUE)).reason == "wrong_attempt"
    ok(m.apply_command(Assign(now_ms=4_000, key=second, node="n2", lease_ms=LEASE,
                              queue_ms=QUEUE)))
    ok(m.apply_command(Finish(now_ms=5_000, key=second, node="n2", ok=False)))
    job = m.state.jobs["tick"]
    assert not m.state.executions and job.live_executions == 0
    assert job.recent_executions == [[1_000, 0, "failed", 2]]


def test_priority_one_is_never_retried_and_a_lost_lease_is_unreachable() -> None:
    m = machine({**EVERY, "priority": 1, "retries": 5})
    ok(fire(m, "tick", 1_000))
    ok(m.apply_command(Expire(now_ms=11_001, key=KEY, deadline_ms=11_000, drift_bound_ms=0)))
    assert m.state.jobs["tick"].recent_executions == [[1_000, 0, "unreachable", 1]]


def test_an_unclaimed_queued_attempt_fails_after_its_claim_deadline() -> None:
    m = machine(EVERY)
    ok(fire(m, "tick", 1_000, nodes=(None,)))
    assert KEY in m.state.queued
    result = ok(m.apply_command(Expire(now_ms=6_001, key=KEY, deadline_ms=6_000,
                                       drift_bound_ms=0)))
    assert AttemptEnd(KEY, None, "unclaimed") in result.effects and not m.state.queued


def test_a_parent_success_runs_its_children_once() -> None:
    m = machine({"name": "parent", "schedule": "@every 1s"})
    ok(m.apply_command(PutJob(now_ms=0, job={"name": "child", "parent_job": "parent"})))
    ok(fire(m, "parent", 1_000))
    result = ok(m.apply_command(Finish(now_ms=1_500, key=AttemptKey("parent", 1_000, 0, 1),
                                       node="n1", ok=True)))
    runs = outcomes(result)
    assert [(o.job, o.kind, o.trigger, o.slots) for o in runs] == [("child", "fired", "parent",
                                                                    1)]
    assert Waiting(ExecKey("child", 1_500, 0), 1_500) in result.effects
    ok(m.apply_command(Assign(now_ms=1_600, key=AttemptKey("child", 1_500, 0, 1), node="n2",
                              lease_ms=LEASE, queue_ms=QUEUE)))
    assert m.state.attempts[AttemptKey("child", 1_500, 0, 1)].node == "n2"


def test_an_ephemeral_job_is_gone_after_its_first_success() -> None:
    m = machine({**EVERY, "ephemeral": True, "retries": 1})
    ok(fire(m, "tick", 1_000))
    ok(m.apply_command(Finish(now_ms=1_500, key=KEY, node="n1", ok=False)))
    assert "tick" in m.state.jobs  # a failure is not a success
    second = AttemptKey("tick", 1_000, 0, 2)
    ok(m.apply_command(Assign(now_ms=2_500, key=second, node="n2", lease_ms=LEASE,
                              queue_ms=QUEUE)))
    result = ok(m.apply_command(Finish(now_ms=2_600, key=second, node="n2", ok=True)))
    assert "tick" not in m.state.jobs and JobChanged("tick") in result.effects
    assert m.state.retired["tick"] == 1_000


# ---- run now, nodes, batches -----------------------------------------------------------------------


def test_run_now_is_idempotent_by_key_and_never_collides_with_a_tick() -> None:
    m = machine(EVERY)
    first = ok(m.apply_command(RunNow(now_ms=2_000, job="tick", idempotency_key="req-1")))
    assert first.value == {"job": "tick", "run_ms": 2_001, "duplicate": False}  # 2000 is a tick
    again = ok(m.apply_command(RunNow(now_ms=9_000, job="tick", idempotency_key="req-1")))
    assert again.value["duplicate"] and again.value["run_ms"] == 2_001 and not again.effects
    other = ok(m.apply_command(RunNow(now_ms=2_000, job="tick", idempotency_key="req-2")))
    assert other.value["run_ms"] == 2_002


def test_run_now_honours_forbid() -> None:
    m = machine({**EVERY, "concurrency": "forbid"})
    ok(fire(m, "tick", 1_000))
    result = ok(m.apply_command(RunNow(now_ms=1_500, job="tick", idempotency_key="k")))
    assert outcomes(result)[0].kind == "skipped" and outcomes(result)[0].reason == "overlap"


def test_nodes_register_beat_and_go_down() -> None:
    m = machine(EVERY)
    ok(m.apply_command(NodeDown(now_ms=5, node="n1", reason="silent")))
    assert m.apply_command(NodeDown(now_ms=5, node="ghost")).reason == "unknown_node"
    assert leases(fire(m, "tick", 1_000, nodes=("n1",)))[0].node is None  # down: queued
    beat = ok(m.apply_command(Heartbeats(now_ms=7, beats=(
        Beat(node="n1", seen_ms=6, load_permille=100), Beat(node="ghost", seen_ms=6,
                                                            load_permille=0)))))
    assert beat.value == {"unknown": ["ghost"]}
    node = m.state.nodes["n1"]
    assert (node.state, node.last_seen_ms, node.load_permille) == ("up", 6, 100)


def test_a_batch_applies_in_order_and_reports_each_command() -> None:
    m = machine(EVERY)
    result = m.apply_command(Batch(commands=(
        ToggleJob(now_ms=0, name="tick", disabled=True), DeleteJob(now_ms=0, name="nope"),
        ToggleJob(now_ms=0, name="tick", disabled=False))))
    assert [child.ok for child in result.children] == [True, False, True]
    assert m.state.jobs["tick"].state == "enabled"


# ---- the whole machine -----------------------------------------------------------------------------


def test_snapshot_restore_is_exact_and_the_copy_behaves_the_same() -> None:
    m = machine({**EVERY, "retries": 2, "tags": {"role": "web:2"}},
                {"name": "child", "parent_job": "tick"})
    ok(fire(m, "tick", 1_000, nodes=("n1", None)))
    ok(m.apply_command(RunNow(now_ms=1_100, job="tick", idempotency_key="k")))
    ok(m.apply_command(DeleteJob(now_ms=1_200, name="child")))
    copy = SchedulerStateMachine()
    copy.restore(m.snapshot())
    assert copy.snapshot() == m.snapshot()
    follow_up: list[Command] = [
        Claim(now_ms=1_300, key=AttemptKey("tick", 1_000, 1, 1), node="n2", lease_ms=LEASE),
        Finish(now_ms=1_400, key=KEY, node="n1", ok=False),
        PutJob(now_ms=1_500, job={"name": "child", "parent_job": "tick"})]
    for command in follow_up:
        assert m.apply_command(command) == copy.apply_command(command)
    assert copy.snapshot() == m.snapshot()
    assert copy.state.nodes["n2"].used_tokens == m.state.nodes["n2"].used_tokens == 1


_commands = st.one_of(
    st.builds(lambda t, n: ("fire", t, n), st.integers(1, 12), st.sampled_from(["n1", "n2", None])),
    st.builds(lambda t: ("miss", t), st.integers(1, 12)),
    st.builds(lambda t: ("toggle", t), st.booleans()),
    st.builds(lambda a, ok_: ("finish", a, ok_), st.integers(1, 12), st.booleans()),
    st.builds(lambda a, n: ("claim", a, n), st.integers(1, 12), st.sampled_from(["n1", "n2"])),
    st.builds(lambda a: ("expire", a), st.integers(1, 12)),
)


def _translate(step_: tuple[Any, ...], now: int) -> Any:
    kind, arg = step_[0], step_[1]
    key = AttemptKey("tick", arg * 1_000, 0, 1)
    if kind == "fire":
        return Fire(now_ms=now, lease_ms=3_000, queue_ms=3_000, items=(
            FireItem(job="tick", version=4, tick_ms=arg * 1_000, nodes=(step_[2],)),))
    if kind == "miss":
        return RecordTicks(now_ms=now, job="tick", version=4, first_ms=arg * 1_000,
                           last_ms=arg * 1_000, outcome="missed")
    if kind == "toggle":
        return ToggleJob(now_ms=now, name="tick", disabled=arg)
    if kind == "finish":
        return Finish(now_ms=now, key=key, node="n1", ok=step_[2])
    if kind == "claim":
        return Claim(now_ms=now, key=key, node=step_[2], lease_ms=3_000)
    return Expire(now_ms=now, key=key, deadline_ms=arg * 1_000 + 3_000, drift_bound_ms=0)


@given(st.lists(_commands, max_size=40), st.integers(0, 40))
def test_any_command_sequence_gives_each_tick_at_most_one_outcome_in_order(
        steps: list[tuple[Any, ...]], cut: int) -> None:
    m = machine({**EVERY, "concurrency": "forbid", "grace_seconds": 2, "retries": 1})
    replica: SchedulerStateMachine | None = None
    seen: list[int] = []
    for position, step_ in enumerate(steps):
        if position == cut:
            replica = SchedulerStateMachine()
            replica.restore(m.snapshot())
        now = 1_000 * (position + 1)
        command = _translate(step_, now)
        result = m.apply_command(command)
        if replica is not None:
            assert replica.apply_command(command) == result
        for outcome in outcomes(result):
            seen.extend(range(outcome.first_ms, outcome.last_ms + 1, 1_000))
    assert seen == sorted(set(seen)), "a tick got two outcomes, or out of order"
    assert seen == list(range(1_000, 1_000 * (len(seen) + 1), 1_000)), "a tick was skipped"
    state = m.state
    assert sum(n.used_tokens for n in state.nodes.values()) == sum(
        a.weight for a in state.attempts.values() if a.state == "leased")
    assert state.jobs["tick"].live_executions == len(state.executions)
